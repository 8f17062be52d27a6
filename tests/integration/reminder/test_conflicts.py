"""Two replicas firing and scheduling at once over one database, on a server that reports write conflicts as
a replica set does: every reminder fires once, the pending count ends exact, and conflicts (each one a
transaction retried) stay few."""

from __future__ import annotations

from typing import Any

from homework_shared.events import ReminderSent, ReminderWish
from tests.conftest import unique, wait_for
from tests.integration.conflicts import CONFLICTS
from tests.integration.reminder.conftest import (
    Deployment,
    assert_pending_gauge_exact,
    at,
    daily_at_20_berlin,
)
from tests.integration.reminder.test_replicas import FIRST_EVENING, fired_by, schedule

WAVE = 150
TEN_PAST = ReminderWish(anchor="opens", offset_minutes=10)


async def test_two_replicas_scheduling_and_firing_at_once_fire_each_once_with_few_retries(
    deployment: Deployment,
) -> None:
    d = deployment
    a = await d.start(replica_id="replica-a", fire_batch_size=10)
    b = await d.start(replica_id="replica-b", fire_batch_size=10)
    store = d.store(a)
    await schedule(d, store, assignments=WAVE)  # the first wave: due at 20:00 Berlin

    with CONFLICTS.watching() as seen:
        d.clock.set(FIRST_EVENING + at(0.1))  # the first wave falls due: both replicas fire it
        second = [
            d.created(client_id=unique("client"), schedule=daily_at_20_berlin(count=1), reminders=[TEN_PAST])
            for _ in range(WAVE)
        ]
        await d.publish(*second[: WAVE // 3])
        d.clock.set(FIRST_EVENING + at(11 / 60))  # the second wave is due as soon as it is scheduled
        await d.publish(*second[WAVE // 3 :])
        await wait_for(
            lambda: _eq(store.reminders.count_documents({"state": "fired"}), 2 * WAVE),
            timeout=120,
            message="both waves fired",
        )

    print(f"two replicas, {2 * WAVE} reminders scheduled and fired: {seen}")
    assert fired_by(a) + fired_by(b) == 2 * WAVE
    assert await store.reminders.count_documents({"fires": {"$ne": 1}}) == 0
    sent = await d.reminder_events(lambda es: _sent(es) >= 2 * WAVE, timeout=60)
    assert len({e.data.reminder_id for e in sent if isinstance(e.data, ReminderSent)}) == 2 * WAVE
    await assert_pending_gauge_exact(store)
    assert await store.count_waiting() == 0
    await store.fold_pending(a.state.runtime.mongo)  # what the gauge loop does: the deltas become one total
    assert await store.counters.count_documents({"_id": {"$gt": "pending+", "$lt": "pending+~"}}) == 0
    await assert_pending_gauge_exact(store)
    assert seen.commits >= 2 * WAVE // 10  # the watch saw the work: at least one commit per fired batch
    assert seen.conflicts_outside_transactions == 0  # claims are single writes: the server resolves their races
    assert seen.aborts <= max(10, seen.commits // 20), f"too many transactions retried: {seen}"


def _sent(events: list[Any]) -> int:
    return sum(isinstance(e.data, ReminderSent) for e in events)


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
