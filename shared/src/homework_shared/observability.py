"""Logs, traces and metrics: JSON log lines carrying request and trace ids, W3C trace context, Prometheus metrics.

The request middleware is pure ASGI. For each HTTP request it takes or makes an ``X-Request-ID``,
continues the caller's W3C ``traceparent`` (or starts a trace), keeps both in context variables
(so log lines and outgoing events carry them: see ``current_traceparent``), counts the request by
route template and logs one JSON line when it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homework_shared.settings import ServiceSettings

REQUEST_ID_HEADER = "x-request-id"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT_PATTERN = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

M = TypeVar("M", Counter, Gauge, Histogram)

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_trace: ContextVar[TraceContext | None] = ContextVar("trace", default=None)

http_log = logging.getLogger("homework.http")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context: the trace this work belongs to and the id of this service's span in it."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header value that makes this span the parent of the next hop."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The trace context in a W3C ``traceparent`` header, or None when it is absent or malformed."""
    match = _TRACEPARENT_PATTERN.match(value.strip().lower()) if value else None
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return TraceContext(trace_id=trace_id, span_id=parent_id, flags=flags)


def child_span(parent: TraceContext | None) -> TraceContext:
    """A new span under ``parent``, or the root span of a new sampled trace."""
    if parent is None:
        return TraceContext(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))
    return TraceContext(trace_id=parent.trace_id, span_id=secrets.token_hex(8), flags=parent.flags)


def current_traceparent() -> str | None:
    """The ``traceparent`` to put on messages sent from the current request or event, if any."""
    trace = _trace.get()
    return trace.traceparent if trace else None


def current_trace_id() -> str | None:
    """The trace id of the current request or event, if any."""
    trace = _trace.get()
    return trace.trace_id if trace else None


def current_request_id() -> str | None:
    """The ``X-Request-ID`` of the current request, if any."""
    return _request_id.get()


@contextlib.contextmanager
def trace_context(traceparent: str | None = None, request_id: str | None = None) -> Iterator[TraceContext]:
    """Run a block (an event handler, say) as a child span of ``traceparent``, with log lines carrying its ids."""
    trace = child_span(parse_traceparent(traceparent))
    trace_token = _trace.set(trace)
    request_token = _request_id.set(request_id)
    try:
        yield trace
    finally:
        _request_id.reset(request_token)
        _trace.reset(trace_token)


# ---------------------------------------------------------------- logging

_STANDARD_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, service, request and trace ids, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        if (request_id := _request_id.get()) is not None:
            line["request_id"] = request_id
        if (trace_id := current_trace_id()) is not None:
            line["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Readable lines for a developer's terminal, with the request id when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as a short line, extras appended as key=value."""
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_RECORD_FIELDS and k[:1] != "_"}
        if (request_id := _request_id.get()) is not None:
            extras = {"request_id": request_id, **extras}
        return line + "".join(f" {key}={value}" for key, value in extras.items())


def configure_logging(settings: ServiceSettings) -> None:
    """Send every log record, uvicorn's included, to stdout in the format and level the settings ask for."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter if settings.log_format == "json" else ConsoleFormatter
    handler.setFormatter(formatter(settings.service_name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # the root's level (LOG_LEVEL) decides, whoever configured it before
        uvicorn_logger.disabled = False
    # The request middleware logs each request as JSON; uvicorn's access lines would say it twice.
    logging.getLogger("uvicorn.access").disabled = True


# ---------------------------------------------------------------- metrics


def new_metrics_registry() -> CollectorRegistry:
    """A registry of one app's metrics, with the process, platform and GC collectors on it."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ServiceMetrics:
    """Creates a service's own metrics on its app's registry; asking twice for a name returns the same metric."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._made: dict[str, Any] = {}

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter, e.g. ``assignments_created_total``."""
        return self._once(name, lambda: Counter(name, documentation, labels, registry=self.registry))

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge, e.g. ``outbox_pending``."""
        return self._once(name, lambda: Gauge(name, documentation, labels, registry=self.registry))

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] | None = None
    ) -> Histogram:
        """A histogram, e.g. ``event_handling_seconds``."""
        kwargs: dict[str, Any] = {"buckets": buckets} if buckets is not None else {}
        return self._once(name, lambda: Histogram(name, documentation, labels, registry=self.registry, **kwargs))

    def _once(self, name: str, make: Callable[[], M]) -> M:
        if name not in self._made:
            self._made[name] = make()
        return cast(M, self._made[name])


class HttpMetrics:
    """The two HTTP metrics: requests by method, route template and status; duration by method and route."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total", "HTTP requests handled", ("method", "route", "status"), registry=registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "HTTP request duration", ("method", "route"), registry=registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


# ---------------------------------------------------------------- middleware


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/assignments/{assignment_id}``), or ``unmatched``: never the raw path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else "unmatched"


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            candidate = str(value.decode("latin-1"))
            if _REQUEST_ID_PATTERN.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _incoming_traceparent(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"traceparent":
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Pure ASGI middleware: request id, trace context, Prometheus metrics and one log line per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection; only HTTP requests are instrumented."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        request_token = _request_id.set(request_id)
        trace_token = _trace.set(child_span(parse_traceparent(_incoming_traceparent(scope))))
        status: int | None = None
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            http_log.exception("unhandled error", extra={"method": scope["method"], "path": scope["path"]})
            if status is not None:
                raise
            # Answered here so the error is logged once, with the request's ids, and the body is JSON.
            internal_error = JSONResponse({"error": "internal_error", "message": "unexpected error"}, 500)
            await internal_error(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            status = status or 500
            self.metrics.observe(scope["method"], route, status, elapsed)
            http_log.log(
                logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO,
                "%s %s %s",
                scope["method"],
                route,
                status,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            _trace.reset(trace_token)
            _request_id.reset(request_token)
