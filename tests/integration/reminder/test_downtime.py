"""After downtime (the misfire policy): reminders that fell due while no replica ran fire late if their
occurrence's window is still open; otherwise they are cancelled (window_closed) and the occurrence is missed."""

from __future__ import annotations

from homework_shared.events import OccurrenceMissed, ReminderCancelled, ReminderSent
from tests.conftest import wait_for
from tests.integration.reminder.conftest import (
    HOUR_BEFORE_CLOSE,
    OPENS,
    T0,
    Deployment,
    at,
    counts,
    daily_at_20_berlin,
    of_type,
    state_is,
)


async def test_a_restart_after_downtime_fires_what_is_still_open_and_marks_the_rest_missed(
    deployment: Deployment,
) -> None:
    d = deployment
    first = await d.start(replica_id="before")
    store = d.store(first)
    asg = d.created(schedule=daily_at_20_berlin(count=3), reminders=[OPENS, HOUR_BEFORE_CLOSE])
    await d.publish(asg)
    await wait_for(counts(store.reminders, {"state": "pending"}, 6), message="6 reminders scheduled")
    await d.stop(first)

    # Down from 10:00 on May 1 until 21:30 on May 2 (Berlin): May 1's window (20:00-22:00) closed
    # meanwhile; May 2's is open, and both its reminders (20:00, 21:00) fell due during the downtime.
    d.clock.set(T0 + at(24 + 11.5))
    second = await d.start(replica_id="after")
    store = d.store(second)
    may1, may2 = f"{asg.assignment_id}@2026-05-01T20:00", f"{asg.assignment_id}@2026-05-02T20:00"
    await wait_for(lambda: state_is(store.occurrences, may1, "missed"), message="May 1 missed")
    await wait_for(counts(store.reminders, {"state": "fired"}, 2), message="May 2's reminders fired late")

    assert await state_is(store.reminders, f"{may1}#opens+0", "cancelled")
    assert await state_is(store.reminders, f"{may1}#closes-60", "cancelled")
    assert await state_is(store.occurrences, may2, "pending")
    assert await store.reminders.count_documents({"occurrence_id": f"{asg.assignment_id}@2026-05-03T20:00"}) == 2
    lateness = second.state.reminder_metrics.lateness
    assert lateness._sum.get() == (1.5 + 0.5) * 3600

    events = await d.reminder_events(
        until=lambda evs: len(of_type(evs, ReminderSent)) >= 2 and len(of_type(evs, OccurrenceMissed)) >= 1
    )
    assert sorted(e.data.reminder_id for e in of_type(events, ReminderSent)) == [
        f"{may2}#closes-60",
        f"{may2}#opens+0",
    ]
    assert [e.id for e in of_type(events, OccurrenceMissed)] == [f"missed:{may1}"]
    closed = {e.data.reminder_id: e.data.reason for e in of_type(events, ReminderCancelled)}
    assert closed == {f"{may1}#opens+0": "window_closed", f"{may1}#closes-60": "window_closed"}
