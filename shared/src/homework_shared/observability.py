"""Logs, traces and metrics: JSON log lines carrying request and trace ids, OpenTelemetry traces, Prometheus metrics.

Traces are the OpenTelemetry SDK's, configured by the standard ``OTEL_*`` variables only
(``configure_tracing``): ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) turns on the
OTLP/HTTP exporter, ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the service,
``OTEL_TRACES_SAMPLER(_ARG)`` sample, ``OTEL_SDK_DISABLED=true`` turns tracing off. With no endpoint
(and no sampler set) nothing is recorded or exported: spans are non-recording, yet still get trace ids
(log lines and events carry them).

OTLP over HTTP/protobuf, not gRPC: the collector's default receiver either way (port 4318), but no
``grpcio`` (a large native wheel that does not survive ``fork``) and it passes plain HTTP proxies.
FastAPI requests are traced by ``opentelemetry-instrumentation-fastapi``, MongoDB commands by
``opentelemetry-instrumentation-pymongo`` (a global ``pymongo.monitoring`` command listener, which
PyMongo's ``AsyncMongoClient`` calls too, in the awaiting task, so its spans nest under the caller's).
Kafka producer and consumer spans are written here (``producer_span``, ``consumer_span``) by the
messaging semantic conventions: the maintained aiokafka instrumentation patches ``send``/``getone``,
which FastStream's batch subscriber and our outbox relay (one record at a time, confirmed in bulk)
do not map onto, and FastStream's own telemetry middleware would start the producer span in the
relay's loop instead of the request that staged the record.

The request middleware is pure ASGI. For each HTTP request it takes or makes an ``X-Request-ID``,
keeps it in a context variable (log lines carry it), counts the request by route template and logs
one JSON line when it ends, inside the request's server span.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode
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

M = TypeVar("M", Counter, Gauge, Histogram)

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

http_log = logging.getLogger("homework.http")
tracer = trace.get_tracer("homework")
"""The services' own tracer (producer, consumer and internal spans); a proxy until a provider is set."""

_tracing_configured = False


def configure_tracing(service_name: str) -> None:
    """Set up the process's tracer provider from the ``OTEL_*`` variables, once; instrument PyMongo.

    Call before the first MongoDB client is made (the PyMongo listener is registered globally and
    applies to clients made afterwards). A provider someone set already (a test's in-memory
    exporter) is kept. Without an OTLP endpoint no exporter is added: nothing leaves the process.
    """
    global _tracing_configured
    if _tracing_configured:
        return
    _tracing_configured = True
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    preset = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    exporting = _otlp_wanted(os.environ)
    # Nothing exported and no sampler asked for: record nothing. Spans are then non-recording, which still
    # make and propagate trace ids (log lines and events carry them), at next to no cost; recording every
    # span only to drop it cost 40% of completions/s (docs/benchmarks.md, tracing).
    recording = preset or exporting or bool(os.environ.get("OTEL_TRACES_SAMPLER"))
    if not preset:
        named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"homework-{service_name}"}
        sampling: dict[str, Any] = {} if recording else {"sampler": ALWAYS_OFF}  # else OTEL_TRACES_SAMPLER's
        provider = TracerProvider(resource=Resource.create(named), **sampling)
        if exporting:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    if recording:
        PymongoInstrumentor().instrument()


def _otlp_wanted(env: Mapping[str, str]) -> bool:
    """Export only when an endpoint is set and ``OTEL_TRACES_EXPORTER`` does not say ``none``.

    The SDK's own default would be ``http://localhost:4318``: a service without a collector would
    log a failed export every few seconds. No endpoint here means tracing without export.
    """
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return "otlp" in exporters and bool(endpoint and endpoint.strip())


def instrument_app(app: Any) -> None:
    """Trace the app's HTTP requests (server spans named by route template); probes and scrapes are left out."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="/healthz,/readyz,/metrics", exclude_spans=["receive", "send"]
    )


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to put on messages sent from the current request or event."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    """The trace id of the current span (32 hex digits), if any."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def current_span_id() -> str | None:
    """The span id of the current span (16 hex digits), if any."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else None


def current_request_id() -> str | None:
    """The ``X-Request-ID`` of the current request, if any."""
    return _request_id.get()


def _remote(traceparent: str | None) -> tuple[otel_context.Context, list[Link]]:
    """The context ``traceparent`` names (as a parent) and a link to it, or the current context and no link."""
    if not traceparent:
        return otel_context.get_current(), []
    ctx = extract({"traceparent": traceparent})
    span_context = trace.get_current_span(ctx).get_span_context()
    if not span_context.is_valid:
        return otel_context.get_current(), []
    return ctx, [Link(span_context)]


@contextlib.contextmanager
def trace_context(
    traceparent: str | None = None, request_id: str | None = None, name: str = "handle event"
) -> Iterator[Span]:
    """Run a block as a span whose parent is ``traceparent`` (the current span when it is absent or malformed)."""
    ctx, _ = _remote(traceparent)
    request_token = _request_id.set(request_id) if request_id is not None else None
    try:
        with tracer.start_as_current_span(name, context=ctx) as span:
            if span.get_span_context().is_valid:
                yield span
                return
        # Tracing off (OTEL_SDK_DISABLED, or not configured in this process): pass the caller's context on as it is.
        token = otel_context.attach(ctx)
        try:
            yield trace.get_current_span()
        finally:
            otel_context.detach(token)
    finally:
        if request_token is not None:
            _request_id.reset(request_token)


def span_context_in(ctx: contextvars.Context) -> SpanContext:
    """The span that was current in a copied context (a request queued for a shared transaction, say)."""
    return ctx.run(lambda: trace.get_current_span().get_span_context())


@contextlib.contextmanager
def batch_span(
    name: str, parents: Sequence[SpanContext], attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """A span for work done once for several requests (a group commit): the child of the one request's span
    when there is one, else the root of a new trace linked to each request's span (as a batch consumer's)."""
    valid = [p for p in parents if p.is_valid]
    if len(valid) == 1:
        ctx, links = trace.set_span_in_context(NonRecordingSpan(valid[0])), []
    else:
        ctx, links = otel_context.Context(), [Link(p) for p in valid]
    with tracer.start_as_current_span(name, context=ctx, links=links, attributes=attributes) as span:
        yield span


def _messaging(operation: str, operation_type: str, topic: str, **extra: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.name": operation,
        "messaging.operation.type": operation_type,
        "messaging.destination.name": topic,
    }
    attributes.update({k: v for k, v in extra.items() if v is not None})
    return attributes


def producer_span(topic: str, headers: Mapping[str, str], *, message_id: str, key: str | None) -> Span:
    """A started PRODUCER span ``send <topic>`` for one record, child of the context in its ``traceparent``.

    The caller ends it once Kafka acknowledged the record (or failed to), and puts its
    ``traceparent`` (``traceparent_of``) on the record instead of the stored one.
    """
    ctx, _ = _remote(headers.get("traceparent"))
    return tracer.start_span(
        f"send {topic}",
        context=ctx,
        kind=SpanKind.PRODUCER,
        attributes=_messaging(
            "send",
            "send",
            topic,
            **{"messaging.message.id": message_id, "messaging.kafka.message.key": key},
        ),
    )


def traceparent_of(span: Span) -> str | None:
    """The ``traceparent`` that makes ``span`` the parent of the next hop."""
    carrier: dict[str, str] = {}
    inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def end_span(span: Span, error: BaseException | None = None) -> None:
    """End ``span``, marked failed with ``error.type`` when there is an error."""
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.set_attribute("error.type", type(error).__qualname__)
    span.end()


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


@contextlib.contextmanager
def consumer_span(record: Any, group: str) -> Iterator[Span]:
    """The CONSUMER span ``process <topic>`` of one Kafka record: child of, and linked to, its producer span."""
    ctx, links = _remote(_header(record.headers, "traceparent"))
    attributes = _messaging(
        "process",
        "process",
        record.topic,
        **{
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.message.id": _header(record.headers, "ce_id"),
        },
    )
    with tracer.start_as_current_span(
        f"process {record.topic}", context=ctx, kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def batch_consumer_span(records: Sequence[Any], group: str) -> Iterator[Span]:
    """One CONSUMER span for records applied in one transaction: a new trace linked to each record's producer."""
    links = [link for record in records for link in _remote(_header(record.headers, "traceparent"))[1]]
    topic = records[0].topic
    attributes = _messaging(
        "process",
        "process",
        topic,
        **{"messaging.consumer.group.name": group, "messaging.batch.message_count": len(records)},
    )
    with tracer.start_as_current_span(
        f"process {topic}",
        context=otel_context.Context(),
        kind=SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
    ) as span:
        yield span


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
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line["trace_id"] = format(span_context.trace_id, "032x")
            line["span_id"] = format(span_context.span_id, "016x")
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


class RequestContextMiddleware:
    """Pure ASGI middleware: request id, Prometheus metrics and one log line per HTTP request.

    It runs inside the OpenTelemetry server span (``instrument_app`` wraps the whole app), so the
    log line and everything the request does carry that span's trace id.
    """

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
            _request_id.reset(request_token)
