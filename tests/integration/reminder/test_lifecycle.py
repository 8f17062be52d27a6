"""Assign -> reminders scheduled -> each fired once -> a completion cancels the rest -> missed exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homework_reminder.store import Store
from homework_shared.events import (
    CompletionRecorded,
    CompletionStatus,
    Envelope,
    HomeworkKind,
    OccurrenceMissed,
    ReminderCancelled,
    ReminderScheduled,
    ReminderSent,
)
from tests.conftest import wait_for
from tests.integration.reminder.conftest import HOUR_BEFORE_CLOSE, OPENS, T0, Deployment, assert_pending_gauge_exact, at


def of_type(events: list[Envelope[Any]], cls: type) -> list[Envelope[Any]]:
    return [e for e in events if isinstance(e.data, cls)]


async def test_assigned_reminders_are_scheduled_fired_once_each_and_a_completion_cancels_the_rest(
    deployment: Deployment,
) -> None:
    d = deployment
    app = await d.start()
    store = Store(app.state.runtime.db)
    asg = d.created(reminders=[OPENS, HOUR_BEFORE_CLOSE])
    await d.publish(asg)

    # 5 daily occurrences at 20:00 Berlin (18:00 UTC), two reminders each: 10 scheduled.
    await wait_for(lambda: store.reminders.count_documents({"state": "pending"}), message="reminders stored")
    await wait_for(lambda: _eq(store.reminders.count_documents({}), 10), message="10 reminders")
    assert await store.occurrences.count_documents({"state": "pending"}) == 5
    first = f"{asg.assignment_id}@2026-05-01T20:00"
    doc = await store.reminders.find_one({"_id": f"{first}#opens+0"})
    assert doc is not None
    assert doc["due_at"] == datetime.fromisoformat("2026-05-01T18:00:00+00:00")
    assert doc["timezone"] == "Europe/Berlin"

    # The first evening: both reminders fire, once each.
    d.clock.set(T0 + at(10))  # 18:00 UTC
    await wait_for(lambda: _state(store, f"{first}#opens+0", "fired"), message="opening reminder fired")
    d.clock.set(T0 + at(11))  # 19:00 UTC, an hour before close
    await wait_for(lambda: _state(store, f"{first}#closes-60", "fired"), message="closing reminder fired")

    # The second occurrence is completed during its window, after its opening reminder fired.
    second = f"{asg.assignment_id}@2026-05-02T20:00"
    d.clock.set(T0 + at(24 + 10))  # 2026-05-02 18:00 UTC: the opening reminder fires
    await wait_for(lambda: _state(store, f"{second}#opens+0", "fired"), message="second opening fired")
    await d.publish(
        CompletionRecorded(
            client_id=d.client_id,
            practice_id=d.practice,
            assignment_id=asg.assignment_id,
            occurrence_id=second,
            local_start=datetime(2026, 5, 2, 20, 0),
            opens_at=datetime.fromisoformat("2026-05-02T18:00:00+00:00"),
            closes_at=datetime.fromisoformat("2026-05-02T20:00:00+00:00"),
            completion_id="cmp-1",
            kind=HomeworkKind.MOOD_LOG,
            status=CompletionStatus.DONE,
            percent=100,
            completed_at=d.clock.now(),
        )
    )
    await wait_for(lambda: _state(store, f"{second}#closes-60", "cancelled"), message="rest cancelled")
    d.clock.set(T0 + at(24 + 13))  # past the second window: nothing more fires for it, and it is not missed
    await wait_for(lambda: _state_occ(store, first, "missed"), message="first occurrence missed")

    events = await d.reminder_events(
        until=lambda evs: len(of_type(evs, ReminderSent)) >= 3 and len(of_type(evs, OccurrenceMissed)) >= 1
    )
    sent = of_type(events, ReminderSent)
    assert sorted(e.data.reminder_id for e in sent) == sorted(
        [f"{first}#opens+0", f"{first}#closes-60", f"{second}#opens+0"]
    )
    assert len({e.id for e in sent}) == len(sent)
    assert {e.id for e in sent} >= {f"sent:{first}#opens+0@2026-05-01T18:00:00Z"}
    assert len(of_type(events, ReminderScheduled)) == 10
    cancelled = of_type(events, ReminderCancelled)
    assert [(e.data.reminder_id, e.data.reason) for e in cancelled] == [(f"{second}#closes-60", "completed")]
    [missed] = of_type(events, OccurrenceMissed)
    assert missed.id == f"missed:{first}"
    assert missed.data.local_start == datetime(2026, 5, 1, 20, 0)
    assert await _state_occ(store, second, "completed")
    await assert_pending_gauge_exact(store)


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _state(store: Store, reminder_id: str, state: str) -> bool:
    doc = await store.reminders.find_one({"_id": reminder_id})
    return doc is not None and doc["state"] == state


async def _state_occ(store: Store, occurrence_id: str, state: str) -> bool:
    doc = await store.occurrences.find_one({"_id": occurrence_id})
    return doc is not None and doc["state"] == state
