"""The reminder rules: expansion over a horizon, reminder times for offsets, quiet hours, snooze, void rules, DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from homework_reminder.domain import (
    Plan,
    Preferences,
    QuietHours,
    Segment,
    accepted_channels,
    due_after_quiet_hours,
    expected_occurrences,
    planned_reminders,
    reminder_id,
    snoozed_until,
    void_reason,
)
from homework_shared.errors import Conflict
from homework_shared.events import Channel, HomeworkKind, OnceSchedule, RecurringSchedule, ReminderWish
from homework_shared.schedule import Occurrence, to_local

OPENS = ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.PUSH])
HOUR_BEFORE_CLOSE = ReminderWish(anchor="closes", offset_minutes=-60, channels=[Channel.PUSH, Channel.SMS])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def daily(zone: str, start: datetime, *, window: int = 120, count: int = 10_000) -> RecurringSchedule:
    return RecurringSchedule(timezone=zone, rrule="FREQ=DAILY", starts_at=start, count=count, window_minutes=window)


def plan_of(schedule: RecurringSchedule | OnceSchedule, created_at: datetime, *wishes: ReminderWish) -> Plan:
    return Plan(
        assignment_id="asg1",
        client_id="c1",
        practice_id="p1",
        title="Mood log",
        kind=HomeworkKind.MOOD_LOG,
        version=1,
        created_at=created_at,
        segments=(Segment(None, schedule, wishes or (OPENS,)),),
        reminders_from=created_at,
    )


# ---------------------------------------------------------------------- expansion over a horizon


def test_an_open_ended_daily_assignment_expands_only_to_the_horizon() -> None:
    plan = plan_of(daily("Europe/Berlin", datetime(2026, 5, 1, 20, 0)), utc(2026, 5, 1, 8, 0))
    now = utc(2026, 5, 1, 8, 0)
    found = [occ for occ, _ in expected_occurrences(plan, since=now, until=now + timedelta(days=14))]
    assert len(found) == 14
    assert found[0].occurrence_id == "asg1@2026-05-01T20:00"
    assert found[-1].occurrence_id == "asg1@2026-05-14T20:00"


def test_extending_continues_where_the_last_expansion_stopped_without_repeats() -> None:
    plan = plan_of(daily("Europe/Berlin", datetime(2026, 5, 1, 20, 0)), utc(2026, 5, 1, 8, 0))
    first_until = utc(2026, 5, 8, 8, 0)
    first = [o.occurrence_id for o, _ in expected_occurrences(plan, since=plan.created_at, until=first_until)]
    second = [o.occurrence_id for o, _ in expected_occurrences(plan, since=first_until, until=utc(2026, 5, 15, 8, 0))]
    assert not set(first) & set(second)
    assert len(first) + len(second) == 14


def test_the_occurrence_open_when_the_assignment_is_created_exists_but_earlier_ones_do_not() -> None:
    plan = plan_of(daily("UTC", datetime(2026, 5, 1, 20, 0), window=120), utc(2026, 5, 3, 21, 0))
    found = [o.occurrence_id for o, _ in expected_occurrences(plan, since=plan.created_at, until=utc(2026, 5, 5))]
    assert found == ["asg1@2026-05-03T20:00", "asg1@2026-05-04T20:00"]


def test_reminders_due_before_the_assignment_existed_fall_before_not_before() -> None:
    plan = plan_of(daily("UTC", datetime(2026, 5, 1, 20, 0)), utc(2026, 5, 3, 20, 30), OPENS, HOUR_BEFORE_CLOSE)
    occ, seg = next(expected_occurrences(plan, since=plan.created_at, until=utc(2026, 5, 4)))
    planned = {p.reminder_id: p for p in planned_reminders(occ, seg, Preferences())}
    assert planned["asg1@2026-05-03T20:00#opens+0"].planned_at < plan.not_before
    assert planned["asg1@2026-05-03T20:00#closes-60"].planned_at >= plan.not_before


# ---------------------------------------------------------------------- reminder times for offsets


def test_reminders_fall_due_at_their_offsets_from_opening_and_closing() -> None:
    occ = Occurrence("asg1", datetime(2026, 5, 1, 20, 0), utc(2026, 5, 1, 18, 0), utc(2026, 5, 1, 20, 0))
    seg = Segment(None, daily("Europe/Berlin", datetime(2026, 5, 1, 20, 0)), (OPENS, HOUR_BEFORE_CLOSE))
    planned = {p.reminder_id: p for p in planned_reminders(occ, seg, Preferences())}
    assert planned["asg1@2026-05-01T20:00#opens+0"].due_at == utc(2026, 5, 1, 18, 0)
    assert planned["asg1@2026-05-01T20:00#closes-60"].due_at == utc(2026, 5, 1, 19, 0)
    assert planned["asg1@2026-05-01T20:00#closes-60"].channels == (Channel.PUSH, Channel.SMS)


def test_reminder_ids_name_the_occurrence_the_anchor_and_the_signed_offset() -> None:
    assert (
        reminder_id("a@2026-03-29T20:00", ReminderWish(anchor="opens", offset_minutes=0))
        == "a@2026-03-29T20:00#opens+0"
    )
    assert reminder_id("a@2026-03-29T20:00", ReminderWish(anchor="closes", offset_minutes=-60)).endswith("#closes-60")
    assert reminder_id("a@2026-03-29T20:00", ReminderWish(anchor="opens", offset_minutes=15)).endswith("#opens+15")


def test_two_wishes_for_the_same_instant_are_one_reminder_with_both_channels() -> None:
    occ = Occurrence("asg1", datetime(2026, 5, 1, 20, 0), utc(2026, 5, 1, 18, 0), utc(2026, 5, 1, 20, 0))
    wishes = (OPENS, ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.EMAIL]))
    [only] = planned_reminders(occ, Segment(None, daily("UTC", datetime(2026, 5, 1, 20, 0)), wishes), Preferences())
    assert only.channels == (Channel.PUSH, Channel.EMAIL)


def test_channel_preferences_keep_the_accepted_channels_or_fall_back_to_the_clients_own() -> None:
    assert accepted_channels((Channel.PUSH, Channel.SMS), None) == (Channel.PUSH, Channel.SMS)
    assert accepted_channels((Channel.PUSH, Channel.SMS), (Channel.SMS, Channel.EMAIL)) == (Channel.SMS,)
    assert accepted_channels((Channel.PUSH,), (Channel.EMAIL,)) == (Channel.EMAIL,)


# ---------------------------------------------------------------------- DST, on real transition dates


def _local_due(zone: str, start: datetime, days: int, wish: ReminderWish = OPENS) -> list[tuple[datetime, datetime]]:
    plan = plan_of(daily(zone, start, window=180), utc(2020, 1, 1), wish)
    since = datetime(start.year, start.month, start.day, tzinfo=UTC) - timedelta(days=1)
    out = []
    for occ, seg in expected_occurrences(plan, since=since, until=since + timedelta(days=days + 2)):
        for p in planned_reminders(occ, seg, Preferences()):
            assert p.due_at is not None
            out.append((to_local(p.due_at, zone), p.due_at))
    return out[:days]


@pytest.mark.parametrize(
    ("zone", "first_day", "utc_before", "utc_after"),
    [
        # Europe/Berlin springs forward on 2026-03-29 (CET -> CEST) and falls back on 2026-10-25.
        ("Europe/Berlin", datetime(2026, 3, 27, 20, 0), utc(2026, 3, 27, 19, 0), utc(2026, 3, 30, 18, 0)),
        ("Europe/Berlin", datetime(2026, 10, 23, 20, 0), utc(2026, 10, 23, 18, 0), utc(2026, 10, 26, 19, 0)),
        # America/New_York: 2026-03-08 and 2026-11-01.
        ("America/New_York", datetime(2026, 3, 6, 20, 0), utc(2026, 3, 7, 1, 0), utc(2026, 3, 10, 0, 0)),
        ("America/New_York", datetime(2026, 10, 30, 20, 0), utc(2026, 10, 31, 0, 0), utc(2026, 11, 3, 1, 0)),
        # Australia/Sydney: forward on 2026-10-04, back on 2026-04-05.
        ("Australia/Sydney", datetime(2026, 10, 2, 20, 0), utc(2026, 10, 2, 10, 0), utc(2026, 10, 5, 9, 0)),
        ("Australia/Sydney", datetime(2026, 4, 3, 20, 0), utc(2026, 4, 3, 9, 0), utc(2026, 4, 6, 10, 0)),
        # Asia/Kolkata: a half-hour offset, no DST at all.
        ("Asia/Kolkata", datetime(2026, 3, 27, 20, 0), utc(2026, 3, 27, 14, 30), utc(2026, 3, 30, 14, 30)),
    ],
)
def test_a_twenty_hundred_reminder_stays_at_twenty_hundred_local_across_dst(
    zone: str, first_day: datetime, utc_before: datetime, utc_after: datetime
) -> None:
    dues = _local_due(zone, first_day, days=4)
    assert [local.time() for local, _ in dues] == [time(20, 0)] * 4
    assert dues[0][1] == utc_before
    assert dues[3][1] == utc_after


@pytest.mark.parametrize(
    ("zone", "start", "expected_local", "expected_utc"),
    [
        # 02:30 does not exist on spring-forward night: read with the offset before the gap.
        ("Europe/Berlin", datetime(2026, 3, 28, 2, 30), datetime(2026, 3, 29, 3, 30), utc(2026, 3, 29, 1, 30)),
        ("America/New_York", datetime(2026, 3, 7, 2, 30), datetime(2026, 3, 8, 3, 30), utc(2026, 3, 8, 7, 30)),
        ("Australia/Sydney", datetime(2026, 10, 3, 2, 30), datetime(2026, 10, 4, 3, 30), utc(2026, 10, 3, 16, 30)),
        # 01:30 / 02:30 happen twice on fall-back night: the first of the two.
        ("America/New_York", datetime(2026, 10, 31, 1, 30), datetime(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)),
        ("Europe/Berlin", datetime(2026, 10, 24, 2, 30), datetime(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)),
        ("Australia/Sydney", datetime(2026, 4, 4, 2, 30), datetime(2026, 4, 5, 2, 30), utc(2026, 4, 4, 15, 30)),
    ],
)
def test_reminders_at_local_times_that_do_not_exist_or_exist_twice_follow_the_rfc5545_policy(
    zone: str, start: datetime, expected_local: datetime, expected_utc: datetime
) -> None:
    dues = _local_due(zone, start, days=2)
    assert (expected_local, expected_utc) in dues
    # One reminder per day on the transition day too: never doubled, never dropped.
    assert len([d for d in dues if d[0].date() == expected_local.date()]) == 1


def test_an_hour_before_close_is_elapsed_time_even_when_the_window_spans_a_dst_change() -> None:
    # Opens 01:00 local on Berlin's spring-forward night with a 3 h window: closes 05:00 CEST (03:00 UTC).
    dues = _local_due("Europe/Berlin", datetime(2026, 3, 29, 1, 0), days=1, wish=HOUR_BEFORE_CLOSE)
    assert dues[0] == (datetime(2026, 3, 29, 4, 0), utc(2026, 3, 29, 2, 0))


# ---------------------------------------------------------------------- quiet hours

NIGHT = QuietHours(time(22, 0), time(7, 0))


def test_quiet_hours_that_wrap_past_midnight_contain_late_evening_and_early_morning() -> None:
    assert NIGHT.contains(time(23, 30))
    assert NIGHT.contains(time(6, 59))
    assert not NIGHT.contains(time(7, 0))
    assert not NIGHT.contains(time(21, 59))
    assert QuietHours(time(13, 0), time(14, 0)).contains(time(13, 30))


def test_a_reminder_due_in_quiet_hours_moves_to_their_end_in_the_clients_zone() -> None:
    due = utc(2026, 5, 1, 21, 30)  # 23:30 in Berlin (CEST)
    assert due_after_quiet_hours(due, utc(2026, 5, 2, 12, 0), NIGHT, "Europe/Berlin") == utc(2026, 5, 2, 5, 0)
    early = utc(2026, 5, 2, 3, 0)  # 05:00 in Berlin, same night's end
    assert due_after_quiet_hours(early, utc(2026, 5, 2, 12, 0), NIGHT, "Europe/Berlin") == utc(2026, 5, 2, 5, 0)


def test_a_reminder_in_quiet_hours_is_dropped_when_the_window_closes_before_they_end() -> None:
    due = utc(2026, 5, 1, 21, 30)
    assert due_after_quiet_hours(due, utc(2026, 5, 2, 5, 0), NIGHT, "Europe/Berlin") is None
    assert due_after_quiet_hours(due, utc(2026, 5, 2, 4, 0), NIGHT, "Europe/Berlin") is None


def test_a_reminder_outside_quiet_hours_or_without_them_is_left_alone() -> None:
    due = utc(2026, 5, 1, 10, 0)
    assert due_after_quiet_hours(due, utc(2026, 5, 2), NIGHT, "Europe/Berlin") == due
    assert due_after_quiet_hours(due, utc(2026, 5, 2), None, "Europe/Berlin") == due


def test_quiet_hours_ending_inside_the_spring_forward_gap_end_as_far_after_the_gap_start() -> None:
    quiet = QuietHours(time(1, 0), time(2, 30))
    due = utc(2026, 3, 29, 0, 15)  # 01:15 CET, inside the quiet hours
    assert due_after_quiet_hours(due, utc(2026, 3, 29, 12, 0), quiet, "Europe/Berlin") == utc(2026, 3, 29, 1, 30)


def test_quiet_hours_of_zero_length_are_refused() -> None:
    with pytest.raises(ValueError, match="same time"):
        QuietHours(time(7, 0), time(7, 0))


def test_planned_reminders_read_quiet_hours_in_the_preferred_zone() -> None:
    occ = Occurrence("asg1", datetime(2026, 5, 1, 20, 0), utc(2026, 5, 1, 18, 0), utc(2026, 5, 2, 18, 0))
    seg = Segment(None, daily("UTC", datetime(2026, 5, 1, 18, 0), window=1440), (OPENS,))
    # 18:00 UTC is 23:30 in Kolkata: inside 22:00-07:00 there, though not in UTC.
    [p] = planned_reminders(occ, seg, Preferences(timezone="Asia/Kolkata", quiet_hours=NIGHT))
    assert p.timezone == "Asia/Kolkata"
    assert p.due_at == utc(2026, 5, 2, 1, 30)  # 07:00 in Kolkata


# ---------------------------------------------------------------------- snooze bounds


def test_a_snooze_inside_the_window_is_kept() -> None:
    until, clamped = snoozed_until(utc(2026, 5, 1, 18, 0), 30, utc(2026, 5, 1, 20, 0))
    assert (until, clamped) == (utc(2026, 5, 1, 18, 30), False)


def test_a_snooze_past_the_window_is_clamped_to_a_minute_before_it_closes() -> None:
    until, clamped = snoozed_until(utc(2026, 5, 1, 19, 30), 60, utc(2026, 5, 1, 20, 0))
    assert (until, clamped) == (utc(2026, 5, 1, 19, 59), True)


def test_a_snooze_when_the_window_is_about_to_close_or_closed_is_refused() -> None:
    with pytest.raises(Conflict) as refused:
        snoozed_until(utc(2026, 5, 1, 19, 59, 30), 10, utc(2026, 5, 1, 20, 0))
    assert refused.value.code == "window_closing"
    with pytest.raises(Conflict):
        snoozed_until(utc(2026, 5, 1, 21, 0), 10, utc(2026, 5, 1, 20, 0))


# ---------------------------------------------------------------------- void rules and revisions


def _occ(day: int) -> Occurrence:
    return Occurrence("asg1", datetime(2026, 5, day, 20, 0), utc(2026, 5, day, 18, 0), utc(2026, 5, day, 20, 0))


def test_a_pause_voids_the_occurrence_open_at_it_and_those_opening_before_the_resume() -> None:
    plan = plan_of(daily("UTC", datetime(2026, 5, 1, 18, 0)), utc(2026, 5, 1)).paused(utc(2026, 5, 2, 19, 0))
    assert void_reason(plan, _occ(1)) is None
    assert void_reason(plan, _occ(2)) == "assignment_paused"
    assert void_reason(plan, _occ(9)) == "assignment_paused"
    resumed = plan.resumed(utc(2026, 5, 4, 18, 30))
    assert void_reason(resumed, _occ(3)) == "assignment_paused"
    assert void_reason(resumed, _occ(4)) == "assignment_paused"  # open at the resume: still void
    assert void_reason(resumed, _occ(5)) is None
    assert resumed.not_before == utc(2026, 5, 4, 18, 30)


def test_a_cancel_voids_the_open_occurrence_and_every_later_one_but_not_earlier_ones() -> None:
    plan = plan_of(daily("UTC", datetime(2026, 5, 1, 18, 0)), utc(2026, 5, 1))
    cancelled = plan.stopped(utc(2026, 5, 3, 19, 0), "assignment_cancelled")
    assert void_reason(cancelled, _occ(2)) is None
    assert void_reason(cancelled, _occ(3)) == "assignment_cancelled"
    assert void_reason(cancelled, _occ(4)) == "assignment_cancelled"
    assert cancelled.stopped(utc(2026, 5, 5), "assignment_ended").stop_reason == "assignment_cancelled"


def test_a_revision_lets_the_new_schedule_govern_occurrences_opening_at_or_after_it() -> None:
    plan = plan_of(daily("UTC", datetime(2026, 5, 1, 18, 0)), utc(2026, 5, 1))
    revised = plan.revised(
        utc(2026, 5, 3, 12, 0), daily("UTC", datetime(2026, 5, 1, 9, 0)), (OPENS,), "New title", HomeworkKind.READING, 2
    )
    found = [o.occurrence_id for o, _ in expected_occurrences(revised, since=utc(2026, 5, 2), until=utc(2026, 5, 5))]
    # The old 18:00 schedule up to the revision (May 3, 12:00), the new 09:00 one from it on.
    assert found == ["asg1@2026-05-02T18:00", "asg1@2026-05-04T09:00"]
    assert revised.title == "New title"
    assert revised.revised(utc(2026, 5, 4), plan.segments[0].schedule, (), "x", HomeworkKind.READING, 2) is revised


def test_once_schedules_have_one_occurrence_from_opening_to_due() -> None:
    once = OnceSchedule(
        timezone="Europe/Berlin", opens_at=datetime(2026, 5, 1, 9, 0), due_at=datetime(2026, 5, 3, 9, 0)
    )
    plan = plan_of(once, utc(2026, 4, 30), HOUR_BEFORE_CLOSE)
    [(occ, seg)] = list(expected_occurrences(plan, since=plan.created_at, until=utc(2026, 5, 14)))
    assert (occ.opens_at, occ.closes_at) == (utc(2026, 5, 1, 7, 0), utc(2026, 5, 3, 7, 0))
    [p] = planned_reminders(occ, seg, Preferences())
    assert p.due_at == utc(2026, 5, 3, 6, 0)
