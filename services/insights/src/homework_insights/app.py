"""Builds the insights service from settings: HTTP API, consumer, outbox relay. Nothing connects at import."""

from __future__ import annotations

from fastapi import FastAPI

from homework_insights import api
from homework_insights.config import Settings
from homework_insights.messaging import InsightsMetrics, make_apply
from homework_insights.migrate import migrate_tenancy
from homework_insights.store import CLIENT_DATA, ensure_indexes
from homework_shared.clock import Clock
from homework_shared.export import export_part_router
from homework_shared.http import create_app
from homework_shared.service import Runtime
from homework_shared.settings import load_settings


def create(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    """The app: ``app.state.runtime`` is the runtime, ``app.state.insights_metrics`` the service's own metrics."""
    settings = settings or load_settings(Settings)
    app = create_app(
        settings,
        title="Homework insights",
        version="0.1.0",
        routers=[api.router, api.docs_router, export_part_router(CLIENT_DATA, api.ErrorBody)],
    )
    rt = Runtime.build(settings, app.state.metrics_registry, stream="insights", clock=clock)
    metrics = InsightsMetrics(app.state.metrics)
    # Batches: one offset commit per poll; partitions applied concurrently, one client's events in order,
    # consecutive events of a partition in shared transactions (CONSUMER_* settings, read by rt.consume).
    rt.consume(["assignment", "reminder"], make_apply(rt, settings, metrics))

    async def on_start() -> None:
        await migrate_tenancy(rt.db)  # data written with client-id-only keys, before any request reads it
        await ensure_indexes(rt.db)

    app.router.lifespan_context = rt.lifespan(on_start)
    app.state.runtime = rt
    app.state.insights_metrics = metrics
    return app
