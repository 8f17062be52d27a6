"""Builds the insights service from settings: HTTP API, consumer, outbox relay. Nothing connects at import."""

from __future__ import annotations

from fastapi import FastAPI

from homework_insights import api
from homework_insights.config import Settings
from homework_insights.messaging import InsightsMetrics, make_apply
from homework_insights.store import ensure_indexes
from homework_shared.clock import Clock
from homework_shared.consumer import Apply, ConsumerMetrics, EventConsumer
from homework_shared.http import create_app
from homework_shared.service import Runtime
from homework_shared.settings import load_settings


def consume(rt: Runtime, settings: Settings, apply: Apply) -> EventConsumer:
    """``rt.consume(["assignment", "reminder"], apply)``, in batches of ``CONSUMER_BATCH_SIZE`` records per poll.

    Each record is still applied once, in its own transaction; only the offset commit is per batch.
    Records of ``CONSUMER_CONCURRENCY`` partition numbers are applied at once; one client's events
    (one partition number) always in order.
    """
    group = settings.service_name
    consumer = EventConsumer(
        broker=rt.broker,
        client=rt.mongo,
        db=rt.db,
        topics=[rt.topics.assignment, rt.topics.reminder],
        group=group,
        dead_letter_topic=rt.topics.dead_letter(group),
        apply=apply,
        metrics=ConsumerMetrics(rt.registry),
        batch_size=settings.consumer_batch_size,
        concurrency=settings.consumer_concurrency,
    )
    rt.consumers.append(consumer)
    return consumer


def create(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    """The app: ``app.state.rt`` is the runtime, ``app.state.insights_metrics`` the service's own metrics."""
    settings = settings or load_settings(Settings)
    app = create_app(settings, title="Homework insights", version="0.1.0", routers=[api.router, api.docs_router])
    rt = Runtime.build(settings, app.state.metrics_registry, stream="insights", clock=clock)
    metrics = InsightsMetrics(app.state.metrics)
    consume(rt, settings, make_apply(rt, settings, metrics))

    async def on_start() -> None:
        await ensure_indexes(rt.db)

    app.router.lifespan_context = rt.lifespan(on_start)
    app.state.rt = rt
    app.state.insights_metrics = metrics
    return app
