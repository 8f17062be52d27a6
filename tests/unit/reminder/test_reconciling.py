"""The pure reconcile step: which occurrences and reminders change when a plan is created, paused, resumed,
revised or given quiet hours, decided over an in-memory schedule (``memory.MemorySchedule``)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from homework_reminder.domain import (
    OccurrenceState,
    Plan,
    Preferences,
    QuietHours,
    ReminderState,
    Segment,
)
from homework_shared.events import (
    Channel,
    HomeworkKind,
    RecurringSchedule,
    ReminderCancelled,
    ReminderScheduled,
    ReminderWish,
)
from tests.unit.reminder.memory import MemorySchedule

OPENS = ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.PUSH])
CREATED = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)  # 10:00 in Berlin
DAYS = 5


def plan_of(wishes: tuple[ReminderWish, ...] = (OPENS,), count: int = DAYS) -> Plan:
    """A mood log every evening at 20:00 Berlin time for ``count`` days, open for two hours."""
    evening = datetime(2026, 5, 1, 20, 0)
    schedule = RecurringSchedule(
        timezone="Europe/Berlin", rrule="FREQ=DAILY", starts_at=evening, count=count, window_minutes=120
    )
    return Plan(
        assignment_id="asg1",
        client_id="client-1",
        practice_id="practice-1",
        title="Mood log",
        kind=HomeworkKind.MOOD_LOG,
        version=1,
        created_at=CREATED,
        segments=(Segment(None, schedule, wishes),),
        reminders_from=CREATED,
    )


def created() -> tuple[MemorySchedule, Plan]:
    store = MemorySchedule()
    plan = plan_of()
    store.reconcile(plan, since=CREATED, now=CREATED)
    return store, plan


def states(store: MemorySchedule) -> dict[str, str]:
    return {rid: d["state"] for rid, d in sorted(store.reminders.items())}


def test_a_new_plan_stores_each_occurrence_with_its_reminder_and_counts_them_pending() -> None:
    store = MemorySchedule()
    changes = store.reconcile(plan_of(), since=CREATED, now=CREATED)

    assert len(changes.occurrence_inserts) == DAYS
    assert len(changes.writes.inserts) == DAYS
    assert [type(e) for e in changes.events] == [ReminderScheduled] * DAYS
    assert store.pending == DAYS == len(store.waiting())


def test_reconciling_an_unchanged_plan_again_decides_nothing() -> None:
    store, plan = created()

    again = store.decide(plan, since=CREATED, now=CREATED + timedelta(hours=1))

    assert not again.occurrence_inserts
    assert not again.occurrence_changes
    assert not again.writes
    assert not again.cancels
    assert not again.events


def test_a_pause_voids_the_later_occurrences_and_cancels_their_reminders_as_paused() -> None:
    store, plan = created()
    at = CREATED + timedelta(days=2)  # 2026-05-03 08:00 UTC: the evenings of the 3rd to the 5th are later

    changes = store.reconcile(plan.paused(at), since=at, now=at)

    voided = [c.occurrence_id for c in changes.occurrence_changes if c.state == OccurrenceState.VOID]
    assert len(voided) == 3
    assert list(changes.cancels) == ["assignment_paused"]
    assert len(changes.cancels["assignment_paused"]) == 3
    assert store.pending == 2 == len(store.waiting())
    assert sum(isinstance(e, ReminderCancelled) for e in store.events) == 3


def test_a_resume_revives_the_paused_reminders_instead_of_inserting_new_ones() -> None:
    store, plan = created()
    paused_at, resumed_at = CREATED + timedelta(days=2), CREATED + timedelta(days=2, hours=1)
    paused = plan.paused(paused_at)
    store.reconcile(paused, since=paused_at, now=paused_at)

    changes = store.reconcile(paused.resumed(resumed_at), since=resumed_at, now=resumed_at)

    assert not changes.writes.inserts
    assert len(changes.writes.revivals) == 3
    assert store.pending == DAYS == len(store.waiting())
    assert all(d.get("cancel_reason") is None for d in store.waiting())


def test_resolved_occurrences_and_fired_reminders_are_never_touched() -> None:
    store, plan = created()
    first, second = sorted(store.occurrences)[:2]
    store.resolve(first, OccurrenceState.COMPLETED)
    store.fire(next(r for r, d in store.reminders.items() if d["occurrence_id"] == second))
    at = CREATED + timedelta(hours=1)

    changes = store.reconcile(plan.paused(at), since=at, now=at)

    touched = {c.occurrence_id for c in changes.occurrence_changes} | set(changes.wanted)
    assert first not in touched
    assert all(d["occurrence_id"] not in (first, second) for docs in changes.cancels.values() for d in docs)
    assert store.occurrences[first]["state"] == OccurrenceState.COMPLETED
    assert states(store)[f"{second}#opens+0"] == ReminderState.FIRED
    assert store.pending == 0 == len(store.waiting())


def test_quiet_hours_over_the_whole_window_cancel_the_waiting_reminders_as_quiet_hours() -> None:
    store, plan = created()
    quiet = Preferences(quiet_hours=QuietHours(time(19, 0), time(23, 0)))  # the 20:00-22:00 window is inside

    changes = store.reconcile(plan, since=CREATED, now=CREATED, prefs=quiet)

    assert list(changes.cancels) == ["quiet_hours"]
    assert len(changes.cancels["quiet_hours"]) == DAYS
    assert store.pending == 0 == len(store.waiting())


def test_a_new_plan_inside_quiet_hours_stores_its_reminders_cancelled_and_uncounted() -> None:
    store = MemorySchedule()
    quiet = Preferences(quiet_hours=QuietHours(time(19, 0), time(23, 0)))

    changes = store.reconcile(plan_of(), since=CREATED, now=CREATED, prefs=quiet)

    assert {d["state"] for d in changes.writes.inserts} == {ReminderState.CANCELLED}
    assert {d["cancel_reason"] for d in changes.writes.inserts} == {"quiet_hours"}
    assert [type(e) for e in changes.events] == [ReminderCancelled] * DAYS
    assert store.pending == 0


def test_quiet_hours_ending_inside_the_window_move_the_reminders_and_keep_the_count() -> None:
    store, plan = created()
    quiet = Preferences(quiet_hours=QuietHours(time(19, 0), time(21, 0)))  # 20:00 moves to 21:00 local

    changes = store.reconcile(plan, since=CREATED, now=CREATED, prefs=quiet)

    assert len(changes.writes.moves) == DAYS
    assert all(rescheduled for _, _, rescheduled in changes.writes.moves)
    moved = [d["due_at"] - d["planned_at"] for d in store.waiting()]
    assert moved == [timedelta(hours=1)] * DAYS
    assert store.pending == DAYS


def test_a_revision_to_fewer_days_voids_the_dropped_occurrences_as_revised() -> None:
    store, plan = created()
    at = CREATED + timedelta(hours=1)
    shorter = plan_of(count=2).segments[0].schedule
    revised = plan.revised(at, shorter, (OPENS,), "Mood log", HomeworkKind.MOOD_LOG, 2)

    changes = store.reconcile(revised, since=at, now=at)

    assert list(changes.cancels) == ["assignment_revised"]
    assert len(changes.cancels["assignment_revised"]) == DAYS - 2
    assert store.pending == 2 == len(store.waiting())
