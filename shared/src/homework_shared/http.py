"""The app factory every service uses: middleware, health and metrics routes, and one error body shape.

Errors always answer ``{"error": code, "message": ...}`` (validation errors: ``{"error":
"validation_failed", "detail": [{"field": "body.schedule.timezone", "message": ...}]}``); a
MongoDB that cannot be reached answers 503 ``database_unavailable`` with ``Retry-After``, and a
write that kept conflicting after its transaction's retries (e.g. with the orphaned transaction of
a crashed replica, which the server holds until its lifetime limit) 503 ``database_busy``. Bodies
are bounded before anything parses them or authenticates the caller (``bounded_input``): 413
``payload_too_large``, 415 ``unsupported_media_type``, 400 ``invalid_json``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure
from starlette.exceptions import HTTPException
from starlette.types import Lifespan

from homework_shared.auth.jwt import TokenVerifier
from homework_shared.bounded_input import BoundedBodyMiddleware
from homework_shared.errors import DomainError
from homework_shared.mongo import TRANSIENT_TRANSACTION_ERROR
from homework_shared.observability import (
    HttpMetrics,
    RequestContextMiddleware,
    ServiceMetrics,
    configure_tracing,
    instrument_app,
    new_metrics_registry,
)
from homework_shared.settings import ServiceSettings

ReadinessCheck = Callable[[], Awaitable[bool]]

DATABASE_RETRY_AFTER_S = 2
DATABASE_BUSY_RETRY_AFTER_S = 1
log = logging.getLogger("homework.http")


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    version: str,
    routers: Sequence[APIRouter] = (),
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Lifespan[FastAPI] | None = None,
    token_verifier: TokenVerifier | None = None,
    readiness_timeout_s: float = 2.0,
) -> FastAPI:
    """A FastAPI app with the shared middleware, ``/healthz``, ``/readyz``, ``/metrics`` and error handlers.

    ``app.state`` holds ``settings``, ``token_verifier``, ``metrics_registry``, ``metrics``
    (a ``ServiceMetrics`` for the service's own metrics) and ``readiness_checks`` (a dict the
    lifespan may add to once its resources exist: see ``add_readiness_check``).
    """
    configure_tracing(settings.service_name)  # before any MongoDB client exists: see configure_tracing
    app = FastAPI(title=title, version=version, lifespan=lifespan, docs_url="/docs", openapi_url="/openapi.json")
    registry = new_metrics_registry()
    app.state.settings = settings
    app.state.token_verifier = token_verifier or TokenVerifier.from_settings(settings)
    app.state.metrics_registry = registry
    app.state.metrics = ServiceMetrics(registry)
    app.state.readiness_checks = dict(readiness_checks or {})
    app.state.readiness_timeout_s = readiness_timeout_s
    # Inside the request context (so a refusal is logged and counted), outside everything that reads a body.
    app.add_middleware(BoundedBodyMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry))
    add_error_handlers(app)
    instrument_app(app)
    app.include_router(ops_router)
    for router in routers:
        app.include_router(router)
    return app


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    """Make ``/readyz`` depend on ``check`` too (call it from the lifespan once the resource exists)."""
    app.state.readiness_checks[name] = check


# ---------------------------------------------------------------- health and metrics

ops_router = APIRouter(tags=["operations"])


@ops_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: 200 while the process runs."""
    return {"status": "ok"}


@ops_router.get("/readyz", responses={503: {"description": "a readiness check failed"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when every check passes within its timeout, 503 naming the checks that did not."""
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    timeout_s: float = request.app.state.readiness_timeout_s
    outcomes = await asyncio.gather(*(_run_check(check, timeout_s) for check in checks.values()))
    results = dict(zip(checks, outcomes, strict=True))
    ready = all(outcome == "ok" for outcome in outcomes)
    checked = request.app.state.metrics.gauge(
        "readiness_check_up", "1 if the readiness check passed when /readyz last ran it, else 0", ["check"]
    )
    for name, outcome in results.items():
        checked.labels(name).set(1 if outcome == "ok" else 0)
    # Details beside the verdicts, e.g. "consumers": each consumer group's membership and lag (ConsumerLagSampler).
    details = {name: report() for name, report in getattr(request.app.state, "readiness_details", {}).items()}
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": results, **details},
        status_code=200 if ready else 503,
    )


async def _run_check(check: ReadinessCheck, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            return "ok" if await check() else "failed"
    except TimeoutError:
        return "timeout"
    except Exception:
        log.warning("readiness check raised", exc_info=True)
        return "failed"


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this app's registry."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- errors


class ErrorBody(BaseModel):
    """Every error: a stable code and a sentence, or the invalid fields."""

    error: str
    message: str | None = None
    detail: list[dict[str, str]] | None = None


ERROR_DESCRIPTIONS: Mapping[int, str] = {
    400: "The body cannot be read (not UTF-8 JSON)",
    401: "No bearer token, or one that does not verify",
    403: "The caller's role may not do this",
    404: "Nothing with this id visible to the caller",
    409: "The current state does not allow it",
    410: "The client was erased (client_erased): nothing new is written about them",
    422: "Invalid input, naming the field",
    503: "The database cannot be reached",
}
Answers = dict[int | str, dict[str, Any]]


class ErrorAnswers:
    """The documented error answers of a service's routes, all with the one ``ErrorBody`` schema.

    A service makes one, with its own wording where the shared one is too vague (``404: "No
    such assignment visible to the caller"``) and the codes every one of its routes can give;
    each route then names only its extra codes: ``responses=answers(403, 409)``.
    """

    def __init__(self, descriptions: Mapping[int, str] | None = None, always: Iterable[int] = (401, 422, 503)) -> None:
        self.descriptions = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
        self.always = frozenset(always)

    def codes(self, *codes: int) -> list[int]:
        """``codes`` and those every route has, in order."""
        return sorted({*self.always, *codes})

    def __call__(self, *codes: int) -> Answers:
        """The ``responses=`` of a route that answers JSON."""
        return {code: {"model": ErrorBody, "description": self.descriptions[code]} for code in self.codes(*codes)}

    def beside_non_json(self, *codes: int) -> Answers:
        """The same for a route whose success is not JSON: its errors still are (FastAPI would say text/html)."""
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        return {code: {"description": self.descriptions[code], "content": error} for code in self.codes(*codes)}


def from_app_state(name: str) -> Callable[[Request], Any]:
    """A FastAPI dependency answering ``app.state.<name>``: how every service hands what ``app.create`` built to routes.

    Each service declares its aliases once (``HandlersDep = Annotated[AssignmentHandlers,
    Depends(from_app_state("handlers"))]``); a route names the alias and never reads
    ``request.app.state`` or builds a store itself, so a test can swap what the app holds.
    """

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"app_state_{name}"
    return dependency


def add_error_handlers(app: FastAPI) -> None:
    """Map validation errors, ``DomainError``, HTTP errors and an unreachable MongoDB to the shared body shape."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ConnectionFailure, _database_unavailable)
    app.add_exception_handler(ExecutionTimeout, _database_unavailable)
    app.add_exception_handler(OperationFailure, _database_busy)


def field_path(location: Sequence[Any]) -> str:
    """``("body", "schedule", "timezone")`` as ``body.schedule.timezone``."""
    return ".".join(str(part) for part in location)


async def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"field": field_path(error.get("loc", ())), "message": str(error.get("msg", ""))} for error in exc.errors()
    ]
    return JSONResponse({"error": "validation_failed", "detail": detail}, status_code=422)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    try:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = "http_error"
    return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    """A transient transaction error left after the retries: the client may retry; anything else is a 500."""
    assert isinstance(exc, OperationFailure)
    if not exc.has_error_label(TRANSIENT_TRANSACTION_ERROR):
        raise exc
    log.warning("database busy: error %s", exc.code, extra={"error": str(exc)[:500]})
    return JSONResponse(
        {"error": "database_busy", "message": "the write conflicted with another still in progress; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_BUSY_RETRY_AFTER_S)},
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", type(exc).__name__, extra={"error": str(exc)[:500]})
    return JSONResponse(
        {"error": "database_unavailable", "message": "the database cannot be reached; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )
