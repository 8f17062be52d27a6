"""Builds the insights service from settings: HTTP API, consumer, outbox relay. Nothing connects at import."""

from __future__ import annotations

from fastapi import FastAPI

from homework_insights import api
from homework_insights.config import InsightsSettings
from homework_insights.consumers import make_apply
from homework_insights.metrics import InsightsMetrics
from homework_insights.migrate import migrate_tenancy
from homework_insights.store import CLIENT_DATA, ensure_indexes
from homework_shared.clock import Clock
from homework_shared.erasure import ErasureStep
from homework_shared.export import export_part_router
from homework_shared.http import create_app
from homework_shared.read_audit import ReadAudit, audit_part_router, resolve_by
from homework_shared.service import Runtime
from homework_shared.settings import load_settings


def create(settings: InsightsSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The app: ``app.state.runtime`` is the runtime, ``app.state.insights_metrics`` the service's own metrics."""
    settings = settings or load_settings(InsightsSettings)
    app = create_app(
        settings,
        title="Homework insights",
        version="0.1.0",
        routers=[api.router, api.docs_router, export_part_router(CLIENT_DATA), audit_part_router()],
    )
    rt = Runtime.build(settings, app.state.metrics_registry, stream="insights", clock=clock)
    metrics = InsightsMetrics(app.state.metrics)
    # Batches: one offset commit per poll; partitions applied concurrently, one client's events in order,
    # consecutive events of a partition in shared transactions (CONSUMER_* settings, read by rt.consume).
    read_audit = ReadAudit(
        rt.db,
        "insights",
        rt.registry,
        resolve=resolve_by(rt.db, "summary_id", "summaries"),
        enabled=settings.read_audit_enabled,
    )
    erasure = ErasureStep("insights", rt.db, CLIENT_DATA, rt.outbox, rt.registry, rt.clock.now, read_audit=read_audit)
    rt.consume(["assignment", "reminder"], erasure.guard(make_apply(rt, settings, metrics)))

    async def on_start() -> None:
        await migrate_tenancy(rt.db)  # data written with client-id-only keys, before any request reads it
        await ensure_indexes(rt.db)
        await read_audit.ensure_indexes()
        read_audit.start()

    async def on_stop() -> None:
        await read_audit.stop()

    app.router.lifespan_context = rt.lifespan(on_start, on_stop)
    app.state.runtime = rt
    app.state.insights_metrics = metrics
    app.state.read_audit = read_audit
    return app
