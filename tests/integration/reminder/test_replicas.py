"""Replicas on one database: each reminder fires exactly once; a dead replica's leases are taken over when they
expire; a replica that shuts down gracefully gives its leases back at once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from homework_reminder.firing import Firing
from homework_reminder.store import Store
from homework_shared.clock import ManualClock
from homework_shared.events import ReminderSent, ReminderWish, decode
from tests.conftest import unique, wait_for
from tests.integration.reminder.conftest import (
    OPENS,
    T0,
    Deployment,
    assert_pending_gauge_exact,
    at,
    daily_at_20_berlin,
)

FIRST_EVENING = T0 + at(10)  # 2026-05-01 18:00 UTC, 20:00 in Berlin


async def schedule(d: Deployment, store: Store, assignments: int, wishes: list[ReminderWish] | None = None) -> None:
    """Assign ``assignments`` mood logs for one evening (a reminder at opening) and wait until all are stored."""
    wishes = wishes or [OPENS]
    events = [
        d.created(client_id=unique("client"), schedule=daily_at_20_berlin(count=1), reminders=wishes)
        for _ in range(assignments)
    ]
    await d.publish(*events)
    expected = assignments * len(wishes)
    await wait_for(
        lambda: _at_least(store.reminders.count_documents({}), expected), timeout=60, message="reminders stored"
    )


def fired_by(app: FastAPI) -> float:
    return float(app.state.reminder_metrics.fired._value.get())


def taken_over_by(app: FastAPI) -> float:
    return float(app.state.reminder_metrics.leases_taken_over._value.get())


def stranger(app: FastAPI, owner: str, clock: ManualClock, **settings: Any) -> Firing:
    """Another replica's firing component on the same database (it claims, but never fires)."""
    rt = app.state.runtime
    config = app.state.services.settings.model_copy(update={"replica_id": owner, **settings})
    return Firing(Store(rt.db), rt.mongo, rt.outbox, app.state.services.scheduler, clock, config)


async def test_two_replicas_fire_each_reminder_exactly_once(deployment: Deployment) -> None:
    d = deployment
    a = await d.start(replica_id="replica-a", fire_batch_size=10)
    b = await d.start(replica_id="replica-b", fire_batch_size=10)
    store = d.store(a)
    await schedule(d, store, assignments=100, wishes=[OPENS, ReminderWish(anchor="opens", offset_minutes=5)])

    d.clock.set(FIRST_EVENING + at(0.1))  # both reminders of every assignment due at once: 200
    await wait_for(
        lambda: _eq(store.reminders.count_documents({"state": "fired"}), 200), timeout=60, message="all fired"
    )

    assert fired_by(a) + fired_by(b) == 200
    assert fired_by(a) > 0
    assert fired_by(b) > 0
    assert await store.reminders.count_documents({"fires": {"$ne": 1}}) == 0
    records = await d.read(d.topics.reminder, until=lambda rs: _sent_count(rs) >= 200)
    sent = [e for e in (decode(r.headers, r.value) for r in records) if isinstance(e.data, ReminderSent)]
    assert len(sent) == 200
    assert len({e.data.reminder_id for e in sent}) == 200
    await assert_pending_gauge_exact(store)


async def test_a_dead_replicas_reminders_are_fired_by_another_after_its_lease_expires(deployment: Deployment) -> None:
    d = deployment
    live = await d.start(replica_id="live", lease_ttl_s=60)
    store = d.store(live)
    await schedule(d, store, assignments=40)

    # A replica whose clock runs ahead claims 15 reminders and dies holding them (it never fires them).
    dead = stranger(live, "dead", ManualClock(FIRST_EVENING), fire_batch_size=15, lease_ttl_s=60)
    claim = await dead.claim_due()
    assert len(claim.ids) == 15

    d.clock.set(FIRST_EVENING)
    await wait_for(lambda: _eq(store.reminders.count_documents({"state": "fired"}), 25), message="the others fired")
    assert await store.reminders.count_documents({"state": "claimed", "lease_owner": "dead"}) == 15
    assert taken_over_by(live) == 0

    d.clock.set(FIRST_EVENING + at(61 / 3600))  # the dead replica's lease has expired
    await wait_for(lambda: _eq(store.reminders.count_documents({"state": "fired"}), 40), message="taken over")
    assert taken_over_by(live) == 15
    assert fired_by(live) == 40
    taken = await store.reminders.find({"_id": {"$in": claim.ids}}).to_list()
    assert {doc["fired_by"] for doc in taken} == {"live"}
    assert all(doc["fires"] == 1 for doc in taken)
    await assert_pending_gauge_exact(store)


async def test_a_replica_shutting_down_gives_back_its_leases_at_once(deployment: Deployment) -> None:
    d = deployment
    leaving = await d.start(replica_id="leaving", lease_ttl_s=3600)
    staying = await d.start(replica_id="staying", lease_ttl_s=3600)
    store = d.store(staying)
    await schedule(d, store, assignments=20)
    held = await stranger(leaving, "leaving", ManualClock(FIRST_EVENING), fire_batch_size=8).claim_due()
    assert len(held.ids) == 8

    await d.stop(leaving)  # graceful: releases every lease "leaving" holds
    d.clock.set(FIRST_EVENING)
    await wait_for(lambda: _eq(store.reminders.count_documents({"state": "fired"}), 20), message="all fired")
    assert taken_over_by(staying) == 0
    assert {doc["fired_by"] for doc in await store.reminders.find({"_id": {"$in": held.ids}}).to_list()} == {"staying"}


def _sent_count(records: list[Any]) -> int:
    return sum(1 for r in records if dict(r.headers).get("ce_type") == ReminderSent.event_type.encode())


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, expected: int) -> bool:
    return bool(await value >= expected)
