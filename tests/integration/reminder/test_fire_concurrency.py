"""One replica's fire loops (``FIRE_CONCURRENCY``): batches fire in transactions at once, each reminder exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from homework_reminder.firing import Claim, Fired
from homework_shared.events import ReminderSent, decode
from tests.conftest import wait_for
from tests.integration.reminder.conftest import Deployment, assert_pending_gauge_exact, at
from tests.integration.reminder.test_replicas import FIRST_EVENING, fired_by, schedule

HOLD_S = 10.0
"""How long a batch waits for a second one to be in flight before it fires anyway (then the test fails)."""


async def test_fire_loops_of_one_replica_fire_batches_at_once_and_each_reminder_exactly_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = deployment
    app = await d.start(replica_id="solo", fire_batch_size=10, fire_concurrency=3)
    store = d.store(app)
    await schedule(d, store, assignments=60)

    firing = app.state.firing
    fire = firing.fire
    in_flight = most = 0
    overlapped = asyncio.Event()

    async def fire_when_another_is_in_flight(claim: Claim) -> Fired:
        """Hold each batch until a second one is being fired (or ``HOLD_S`` passed), then fire it."""
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight >= 2:
            overlapped.set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOLD_S):
                    await overlapped.wait()
            return await fire(claim)
        finally:
            in_flight -= 1

    monkeypatch.setattr(firing, "fire", fire_when_another_is_in_flight)
    d.clock.set(FIRST_EVENING + at(0.1))  # 60 due at once: six batches of 10
    await wait_for(
        lambda: _eq(store.reminders.count_documents({"state": "fired"}), 60), timeout=60, message="all fired"
    )

    assert most >= 2, "no second batch was claimed while the first was being fired"
    assert fired_by(app) == 60
    assert await store.reminders.count_documents({"fires": {"$ne": 1}}) == 0
    records = await d.read(d.topics.reminder, until=lambda rs: _sent_count(rs) >= 60)
    sent = [e for e in (decode(r.headers, r.value) for r in records) if isinstance(e.data, ReminderSent)]
    assert len({e.data.reminder_id for e in sent}) == len(sent) == 60
    await assert_pending_gauge_exact(store)


def _sent_count(records: list[Any]) -> int:
    return sum(1 for r in records if dict(r.headers).get("ce_type") == ReminderSent.event_type.encode())


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
