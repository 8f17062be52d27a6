"""Builds the assignment service from its settings: HTTP app, runtime (MongoDB, Kafka, outbox relay), handlers,
and the sweep that ends assignments whose schedule is over. Nothing connects until the lifespan starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from homework_assignment import audit, erasure, export, retention
from homework_assignment.api import router
from homework_assignment.config import AssignmentSettings
from homework_assignment.domain import InvalidInput
from homework_assignment.metrics import AssignmentMetrics
from homework_assignment.models import describe_local_times
from homework_assignment.resolutions import ResolutionWriter
from homework_assignment.store import CLIENT_DATA, AssignmentStore
from homework_assignment.usecases import AssignmentHandlers
from homework_shared.clock import Clock
from homework_shared.consumer import Batching
from homework_shared.erasure import ErasureStep
from homework_shared.export import export_part_router
from homework_shared.http import create_app
from homework_shared.read_audit import ReadAudit, resolve_by
from homework_shared.service import Runtime
from homework_shared.settings import load_settings
from homework_shared.tasks import Periodic

TITLE = "Homework assignment service"
VERSION = "1.0.0"

log = logging.getLogger(__name__)


class EndSweeper:
    """Every ``interval_s`` real seconds, ends the assignments whose last occurrence has closed."""

    def __init__(self, handlers: AssignmentHandlers, interval_s: float, metrics: AssignmentMetrics) -> None:
        self.handlers = handlers
        self.ended = metrics.ended_by_schedule
        self.loop = Periodic(
            "end-sweeper", interval_s, self.sweep, "ending finished assignments failed; next sweep retries"
        )

    async def sweep(self) -> None:
        self.ended.inc(await self.handlers.end_finished_assignments())

    def start(self) -> None:
        """Start sweeping in the background."""
        self.loop.start()

    async def stop(self) -> None:
        """Stop sweeping (a sweep in progress is cancelled; its transaction rolls back)."""
        await self.loop.stop()


async def _invalid_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    return JSONResponse({"error": "validation_failed", "detail": exc.fields}, status_code=422)


def _openapi_with_local_times(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``, with local wall times described as sent (see ``models.describe_local_times``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            describe_local_times(generate())
        return app.openapi_schema or generate()

    return openapi


def create(settings: AssignmentSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The assignment service's app; its lifespan connects MongoDB and Kafka and starts the relay and sweeper."""
    settings = settings or load_settings(AssignmentSettings)
    routers = [router, export.router, erasure.router, audit.router, retention.router, export_part_router(CLIENT_DATA)]
    app = create_app(settings, title=TITLE, version=VERSION, routers=routers)
    rt = Runtime.build(settings, app.state.metrics_registry, stream="assignment", clock=clock)
    store = AssignmentStore(rt.db)
    handlers = AssignmentHandlers(store, rt.outbox, rt.mongo, rt.clock)
    metrics = AssignmentMetrics(app.state.metrics)
    sweeper = EndSweeper(handlers, settings.end_sweep_interval_s, metrics)
    read_audit, erasures, keeper = _data_rights(app, rt, settings)
    resolutions = ResolutionWriter(
        store,
        rt.outbox,
        rt.mongo,
        clock=rt.clock,
        batch_sizes=metrics.resolution_batch_sizes,
        recorded=metrics.resolutions,
        erasures=erasures if settings.include_free_text else None,  # free text sealed with the client's key
    )
    app.state.runtime = rt
    app.state.handlers = handlers
    app.state.sweeper = sweeper
    app.state.resolutions = resolutions
    app.state.assignment_metrics = metrics
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.openapi = _openapi_with_local_times(app)  # type: ignore[method-assign]

    async def on_start() -> None:
        await store.ensure_indexes()
        await erasures.ensure_indexes()
        await read_audit.ensure_indexes()
        await keeper.ensure_indexes()
        read_audit.start()
        keeper.start()
        sweeper.start()

    async def on_stop() -> None:
        await sweeper.stop()
        await keeper.stop()
        await resolutions.close()
        await read_audit.stop()

    app.router.lifespan_context = rt.lifespan(on_start, on_stop)

    @app.get("/asyncapi.json", tags=["operations"], include_in_schema=False)
    async def asyncapi() -> dict[str, Any]:
        """The AsyncAPI document of the events this service publishes."""
        return rt.asyncapi(TITLE, VERSION)

    return app


def _data_rights(
    app: FastAPI, rt: Runtime, settings: AssignmentSettings
) -> tuple[ReadAudit, erasure.Erasures, retention.Retention]:
    """The read audit, the erasure saga (requests, this service's step, the others' completions) and retention."""
    read_audit = ReadAudit(
        rt.db,
        "assignment",
        rt.registry,
        resolve=resolve_by(rt.db, "assignment_id", "assignments"),
        enabled=settings.read_audit_enabled,
    )
    erasures = erasure.Erasures(rt.db, rt.mongo, rt.outbox, rt.clock)
    erasure_step = ErasureStep(
        "assignment", rt.db, CLIENT_DATA, rt.outbox, rt.registry, rt.clock.now, erasures.shred, read_audit
    )
    # The saga's events only: this service's own erasure step, and the other services' completions.
    rt.consume(
        ["assignment", "reminder", "insights"],
        erasure_step.guard(None, erasures.on_completed),
        batching=Batching(batch_size=100),
    )
    keeper = retention.Retention(
        erasures, rt.clock, settings.client_retention_days, settings.retention_sweep_interval_s, app.state.metrics
    )
    app.state.erasures = erasures
    app.state.retention = keeper
    app.state.read_audit = read_audit
    return read_audit, erasures, keeper
