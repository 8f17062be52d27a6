"""Builds the reminder service from its settings: runtime, consumer, loops and routes. Nothing connects here."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from homework_reminder import api
from homework_reminder.config import ReminderSettings
from homework_reminder.consumers import assignment_events
from homework_reminder.egress import EgressGuard, GuardedTransport
from homework_reminder.firing import Firing
from homework_reminder.held import HeldEvents
from homework_reminder.loops import Workers
from homework_reminder.metrics import ReminderMetrics
from homework_reminder.store import CLIENT_DATA, Store
from homework_reminder.usecases import Scheduler
from homework_reminder.webhook import WebhookDelivery
from homework_reminder.webhook_secrets import SecretBox, reseal
from homework_shared.clock import Clock
from homework_shared.consumer import Apply, EventConsumer
from homework_shared.erasure import ErasureStep
from homework_shared.export import export_part_router
from homework_shared.http import create_app
from homework_shared.read_audit import ReadAudit, audit_part_router
from homework_shared.service import Runtime
from homework_shared.settings import load_settings

TITLE = "Homework reminder service"
VERSION = "1.0.0"


def consume_assignments(rt: Runtime, settings: ReminderSettings, apply: Apply) -> EventConsumer:
    """``rt.consume(["assignment"], apply)`` as this service's group; batching and retries from ``CONSUMER_*``."""
    return rt.consume(["assignment"], apply, group=settings.consumer_group)


def create(settings: ReminderSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The reminder service's FastAPI app; its lifespan starts and stops everything."""
    settings = settings or load_settings(ReminderSettings)
    app = create_app(
        settings,
        title=TITLE,
        version=VERSION,
        routers=[api.router, export_part_router(CLIENT_DATA), audit_part_router()],
    )
    rt = Runtime.build(settings, app.state.metrics_registry, stream="reminder", clock=clock)
    metrics = ReminderMetrics.on(app.state.metrics)
    store = Store(rt.db)
    scheduler = Scheduler(store, rt.outbox, rt.clock, settings, metrics)
    firing = Firing(store, rt.mongo, rt.outbox, scheduler, rt.clock, settings)
    held = HeldEvents(rt.db, settings.held_event_ttl_s, app.state.metrics)
    read_audit = ReadAudit(rt.db, "reminder", rt.registry, enabled=settings.read_audit_enabled)
    erasure = ErasureStep("reminder", rt.db, CLIENT_DATA, rt.outbox, rt.registry, rt.clock.now, read_audit=read_audit)
    consume_assignments(rt, settings, erasure.guard(assignment_events(scheduler, held)))
    egress = EgressGuard(allow_private=settings.webhook_allow_private_networks)
    secrets = SecretBox.from_settings(settings)
    http = _webhook_client(settings, egress)
    workers = Workers(
        store=store,
        mongo=rt.mongo,
        scheduler=scheduler,
        firing=firing,
        delivery=WebhookDelivery(store, settings, http, metrics, secrets),
        clock=rt.clock,
        settings=settings,
        metrics=metrics,
    )

    async def on_start() -> None:
        await store.ensure_indexes()
        await reseal(store, secrets)  # plaintext secrets from before encryption, and any under a rotated-out key
        await held.ensure_indexes()
        await read_audit.ensure_indexes()
        read_audit.start()
        workers.start()

    async def on_stop() -> None:
        await workers.stop()
        await read_audit.stop()
        await http.aclose()

    app.router.lifespan_context = rt.lifespan(on_start, on_stop)
    app.state.runtime = rt
    app.state.workers = workers
    app.state.read_audit = read_audit
    app.state.firing = firing
    app.state.reminder_metrics = metrics
    app.state.services = api.Services(store, scheduler, rt.mongo, rt.clock, settings, egress, secrets)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> dict[str, Any]:
        """The AsyncAPI document: the reminder stream published, the assignment stream consumed."""
        return rt.asyncapi(TITLE, VERSION)

    return app


def _webhook_client(settings: ReminderSettings, egress: EgressGuard) -> httpx.AsyncClient:
    """The HTTP client of webhook deliveries: every connection through the egress guard, no redirects, no proxies."""
    return httpx.AsyncClient(
        transport=GuardedTransport(egress), timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
    )
