"""Stopping and changing: pause/resume, cancel, revise and skip cancel or reschedule what is pending, by the
platform's void rules; void occurrences are never missed."""

from __future__ import annotations

from datetime import datetime

from homework_shared.events import (
    AssignmentCancelled,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    Barrier,
    OccurrenceMissed,
    OccurrenceSkipped,
    RecurringSchedule,
    ReminderCancelled,
    ReminderScheduled,
    ReminderSent,
)
from tests.conftest import wait_for
from tests.integration.reminder.conftest import (
    HOUR_BEFORE_CLOSE,
    T0,
    Deployment,
    assert_pending_gauge_exact,
    at,
    counts,
    of_type,
    state_is,
)


async def test_a_pause_voids_what_is_open_and_a_resume_schedules_again_what_opens_after_it(
    deployment: Deployment,
) -> None:
    d = deployment
    store = d.store(await d.start())
    asg = d.created()
    aid = asg.assignment_id
    await d.publish(asg)
    await wait_for(counts(store.reminders, {"state": "pending"}, 5), message="scheduled")

    d.clock.set(T0 + at(10.5))  # May 1, 20:30 Berlin: the first reminder fired, the window is open
    await wait_for(lambda: state_is(store.reminders, f"{aid}@2026-05-01T20:00#opens+0", "fired"), message="fired")
    await d.publish(
        AssignmentPaused(client_id=d.client_id, practice_id=d.practice, assignment_id=aid, paused_at=d.clock.now())
    )
    await wait_for(counts(store.reminders, {"state": "cancelled"}, 4), message="pending reminders cancelled")
    assert await store.occurrences.count_documents({"state": "void"}) == 5

    d.clock.set(T0 + at(52))  # resumed on May 3 at 14:00 Berlin
    await d.publish(
        AssignmentResumed(client_id=d.client_id, practice_id=d.practice, assignment_id=aid, resumed_at=d.clock.now())
    )
    await wait_for(counts(store.reminders, {"state": "pending"}, 3), message="May 3-5 scheduled again")
    assert await state_is(store.occurrences, f"{aid}@2026-05-02T20:00", "void")

    d.clock.set(T0 + at(58))  # May 3, 20:00 Berlin
    await wait_for(lambda: state_is(store.reminders, f"{aid}@2026-05-03T20:00#opens+0", "fired"), message="fired")
    d.clock.set(T0 + at(64))  # May 4, 00:00 Berlin: May 3's window closed unresolved
    await wait_for(lambda: state_is(store.occurrences, f"{aid}@2026-05-03T20:00", "missed"), message="May 3 missed")
    events = await d.reminder_events(until=lambda evs: len(of_type(evs, OccurrenceMissed)) >= 1)
    assert [e.data.occurrence_id for e in of_type(events, OccurrenceMissed)] == [f"{aid}@2026-05-03T20:00"]
    paused = [e for e in of_type(events, ReminderCancelled) if e.data.reason == "assignment_paused"]
    assert len(paused) == 4
    rescheduled = of_type(events, ReminderScheduled)[5:]
    assert sorted(e.data.occurrence_id[-16:] for e in rescheduled) == [
        "2026-05-03T20:00",
        "2026-05-04T20:00",
        "2026-05-05T20:00",
    ]
    assert [e.data.reminder_id for e in of_type(events, ReminderSent)] == [
        f"{aid}@2026-05-01T20:00#opens+0",
        f"{aid}@2026-05-03T20:00#opens+0",
    ]
    await assert_pending_gauge_exact(store)


async def test_a_cancelled_assignment_fires_nothing_more_and_misses_nothing(deployment: Deployment) -> None:
    d = deployment
    store = d.store(await d.start())
    asg, control = d.created(), d.created()
    await d.publish(asg, control)
    await wait_for(counts(store.reminders, {"state": "pending"}, 10), message="scheduled")
    await d.publish(
        AssignmentCancelled(
            client_id=d.client_id, practice_id=d.practice, assignment_id=asg.assignment_id, cancelled_at=d.clock.now()
        )
    )
    await wait_for(counts(store.reminders, {"state": "cancelled"}, 5), message="cancelled ones")
    assert await store.occurrences.count_documents({"assignment_id": asg.assignment_id, "state": "void"}) == 5

    d.clock.set(T0 + at(24 * 6))  # every window has closed: the control assignment's occurrences are missed
    await wait_for(
        counts(store.occurrences, {"assignment_id": control.assignment_id, "state": "missed"}, 5), message="control"
    )
    assert await store.occurrences.count_documents({"assignment_id": asg.assignment_id, "state": "void"}) == 5
    assert await store.reminders.count_documents({"assignment_id": asg.assignment_id, "state": "fired"}) == 0
    events = await d.reminder_events(until=lambda evs: len(of_type(evs, OccurrenceMissed)) >= 5)
    assert {e.data.assignment_id for e in of_type(events, OccurrenceMissed)} == {control.assignment_id}
    reasons = {e.data.reason for e in of_type(events, ReminderCancelled) if e.data.assignment_id == asg.assignment_id}
    assert reasons == {"assignment_cancelled"}


async def test_a_revision_reschedules_occurrences_opening_after_it_by_the_new_schedule(deployment: Deployment) -> None:
    d = deployment
    store = d.store(await d.start())
    asg = d.created()
    aid = asg.assignment_id
    await d.publish(asg)
    await wait_for(counts(store.reminders, {"state": "pending"}, 5), message="scheduled")

    mornings = RecurringSchedule(
        timezone="Europe/Berlin", rrule="FREQ=DAILY", starts_at=datetime(2026, 5, 1, 9, 0), count=5, window_minutes=120
    )
    revised = AssignmentRevised(
        **asg.model_dump(exclude={"created_at", "schedule", "reminders", "title", "version"}),
        schedule=mornings,
        reminders=[HOUR_BEFORE_CLOSE],
        title="Morning mood rating",
        version=2,
        changed=["schedule", "reminders", "title"],
        revised_at=d.clock.now(),
    )
    await d.publish(revised)
    # Evenings were all to open after the revision: void. Mornings from May 2 on (May 1 09:00 is before it).
    await wait_for(counts(store.occurrences, {"state": "void"}, 5), message="old occurrences void")
    await wait_for(counts(store.reminders, {"state": "pending"}, 4), message="new reminders")
    doc = await store.reminders.find_one({"_id": f"{aid}@2026-05-02T09:00#closes-60"})
    assert doc is not None
    assert doc["title"] == "Morning mood rating"
    assert doc["due_at"] == datetime.fromisoformat("2026-05-02T08:00:00+00:00")  # 10:00 Berlin
    events = await d.reminder_events(until=lambda evs: len(of_type(evs, ReminderCancelled)) >= 5)
    assert {e.data.reason for e in of_type(events, ReminderCancelled)} == {"assignment_revised"}
    await assert_pending_gauge_exact(store)

    # A revision with an old version number changes nothing.
    await d.publish(revised.model_copy(update={"version": 1, "schedule": asg.schedule}))
    await d.applied_so_far(store)
    assert await store.reminders.count_documents({"assignment_id": aid, "state": "pending"}) == 4


async def test_a_skip_cancels_the_occurrences_reminders_and_it_is_not_missed(deployment: Deployment) -> None:
    d = deployment
    store = d.store(await d.start())
    asg, control = d.created(reminders=[HOUR_BEFORE_CLOSE]), d.created()
    aid = asg.assignment_id
    await d.publish(asg, control)
    await wait_for(counts(store.reminders, {"state": "pending"}, 10), message="scheduled")
    d.clock.set(T0 + at(10.25))
    occ = f"{aid}@2026-05-01T20:00"
    await d.publish(
        OccurrenceSkipped(
            client_id=d.client_id,
            practice_id=d.practice,
            assignment_id=aid,
            occurrence_id=occ,
            local_start=datetime(2026, 5, 1, 20, 0),
            opens_at=datetime.fromisoformat("2026-05-01T18:00:00+00:00"),
            closes_at=datetime.fromisoformat("2026-05-01T20:00:00+00:00"),
            skip_id="skp-1",
            barrier=Barrier.TOO_HARD,
            recorded_at=d.clock.now(),
        )
    )
    await wait_for(lambda: state_is(store.reminders, f"{occ}#closes-60", "cancelled"), message="cancelled")
    d.clock.set(T0 + at(13))  # the window closed: the control assignment's first occurrence is missed, not this
    await wait_for(lambda: state_is(store.occurrences, f"{control.assignment_id}@2026-05-01T20:00", "missed"))
    assert await state_is(store.occurrences, occ, "skipped")
    doc = await store.reminders.find_one({"_id": f"{occ}#closes-60"})
    assert doc is not None
    assert doc["cancel_reason"] == "skipped"
