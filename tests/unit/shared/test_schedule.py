"""Occurrence expansion and the DST policy (RFC 5545), on real transition dates in several zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from homework_shared.events import OnceSchedule, RecurringSchedule
from homework_shared.schedule import (
    ScheduleError,
    ScheduleT,
    last_close,
    occurrence_at,
    occurrence_id,
    occurrences,
    parse_occurrence_id,
    to_utc,
    validate_schedule,
)


def daily(zone: str, start: datetime, count: int = 5, window: int = 60, rule: str = "FREQ=DAILY") -> RecurringSchedule:
    return RecurringSchedule(timezone=zone, rrule=rule, starts_at=start, count=count, window_minutes=window)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("zone", "local", "expected_utc"),
    [
        # Spring forward: 02:30 does not exist; read with the offset before the gap -> 03:30 local.
        ("Europe/Berlin", datetime(2026, 3, 29, 2, 30), utc(2026, 3, 29, 1, 30)),
        ("America/New_York", datetime(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7, 30)),
        ("Australia/Sydney", datetime(2026, 10, 4, 2, 30), utc(2026, 10, 3, 16, 30)),
        # Fall back: 02:30 / 01:30 happen twice; the first one counts.
        ("Europe/Berlin", datetime(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", datetime(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)),
        ("Australia/Sydney", datetime(2026, 4, 5, 2, 30), utc(2026, 4, 4, 15, 30)),
        # A half-hour offset without DST.
        ("Asia/Kolkata", datetime(2026, 3, 29, 20, 0), utc(2026, 3, 29, 14, 30)),
    ],
)
def test_local_times_become_instants_by_the_rfc5545_rule(zone: str, local: datetime, expected_utc: datetime) -> None:
    assert to_utc(local, zone) == expected_utc


@pytest.mark.parametrize(
    ("zone", "first_day", "before_offset", "after_offset"),
    [
        ("Europe/Berlin", datetime(2026, 3, 27, 20, 0), 1, 2),
        ("America/New_York", datetime(2026, 3, 6, 20, 0), -5, -4),
        ("Australia/Sydney", datetime(2026, 10, 2, 20, 0), 10, 11),
        ("Europe/Berlin", datetime(2026, 10, 23, 20, 0), 2, 1),
    ],
)
def test_twenty_hundred_every_day_stays_twenty_hundred_local_across_dst(
    zone: str, first_day: datetime, before_offset: int, after_offset: int
) -> None:
    occs = list(occurrences("a1", daily(zone, first_day, count=5)))
    assert [o.local_start.hour for o in occs] == [20] * 5
    offsets = [round((o.local_start - o.opens_at.replace(tzinfo=None)) / timedelta(hours=1)) for o in occs]
    assert offsets[0] == before_offset
    assert offsets[-1] == after_offset
    assert occs[0].occurrence_id == f"a1@{first_day:%Y-%m-%dT%H:%M}"


def test_a_daily_time_inside_the_spring_gap_still_happens_that_day_one_gap_later() -> None:
    occs = list(occurrences("a1", daily("Europe/Berlin", datetime(2026, 3, 28, 2, 30), count=3)))
    assert [o.occurrence_id for o in occs] == ["a1@2026-03-28T02:30", "a1@2026-03-29T02:30", "a1@2026-03-30T02:30"]
    assert [o.opens_at for o in occs] == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]


def test_a_daily_time_inside_the_repeated_hour_happens_once() -> None:
    occs = list(occurrences("a1", daily("America/New_York", datetime(2026, 10, 31, 1, 30), count=3)))
    assert len({o.occurrence_id for o in occs}) == 3
    assert occs[1].opens_at == utc(2026, 11, 1, 5, 30)


def test_the_window_is_elapsed_time_even_across_a_transition() -> None:
    occ = next(iter(occurrences("a1", daily("Europe/Berlin", datetime(2026, 3, 29, 1, 30), count=1, window=120))))
    assert occ.closes_at - occ.opens_at == timedelta(hours=2)


def test_expansion_is_bounded_to_the_asked_range() -> None:
    s = RecurringSchedule(
        timezone="Europe/Berlin",
        rrule="FREQ=DAILY",
        starts_at=datetime(2026, 1, 1, 8, 0),
        until=datetime(2026, 12, 31, 8, 0),
        window_minutes=60,
    )
    got = list(occurrences("a1", s, start=utc(2026, 6, 1), end=utc(2026, 6, 15)))
    assert len(got) == 14
    assert got[0].local_start == datetime(2026, 6, 1, 8, 0)


def test_weekly_rule_with_days() -> None:
    s = daily("Asia/Kolkata", datetime(2026, 3, 2, 19, 0), count=6, rule="FREQ=WEEKLY;BYDAY=MO,WE,FR")
    assert [o.local_start.strftime("%a") for o in occurrences("a", s)] == ["Mon", "Wed", "Fri"] * 2


def test_occurrence_identity_round_trips_and_is_checked_against_the_schedule() -> None:
    s = daily("Europe/Berlin", datetime(2026, 3, 27, 20, 0), count=5)
    oid = occurrence_id("asg-1", datetime(2026, 3, 29, 20, 0))
    assert parse_occurrence_id(oid) == ("asg-1", datetime(2026, 3, 29, 20, 0))
    assert occurrence_at("asg-1", s, datetime(2026, 3, 29, 20, 0)) is not None
    assert occurrence_at("asg-1", s, datetime(2026, 3, 29, 21, 0)) is None
    assert occurrence_at("asg-1", s, datetime(2026, 4, 1, 20, 0)) is None
    with pytest.raises(ValueError, match="not an occurrence id"):
        parse_occurrence_id("no-separator")


def test_a_once_schedule_has_one_occurrence_from_opening_to_due() -> None:
    s = OnceSchedule(
        timezone="America/New_York", opens_at=datetime(2026, 3, 2, 9, 0), due_at=datetime(2026, 3, 6, 18, 0)
    )
    [occ] = list(occurrences("r1", s))
    assert occ.occurrence_id == "r1@2026-03-02T09:00"
    assert occ.closes_at == utc(2026, 3, 6, 23, 0)
    assert last_close(s) == occ.closes_at


def count_closed(assignment_id: str, s: ScheduleT, *, start: datetime | None, end: datetime) -> int:
    """How many occurrences opened in ``[start, end)`` and closed by ``end``: what was due by then."""
    return sum(1 for occ in occurrences(assignment_id, s, start=start, end=end) if occ.closes_at <= end)


def test_due_so_far_counts_closed_windows_only() -> None:
    s = daily("Europe/Berlin", datetime(2026, 3, 1, 20, 0), count=10, window=120)
    assert count_closed("a", s, start=None, end=utc(2026, 3, 3, 20, 30)) == 2
    assert count_closed("a", s, start=None, end=utc(2026, 3, 3, 21, 0)) == 3


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (daily("Europe/Berlin", datetime(2026, 3, 1, 20, 0), window=25 * 60), "longer than the gap"),
        (daily("Europe/Berlin", datetime(2026, 3, 1, 20, 0), rule="FREQ=DAILY;COUNT=3"), "must not contain"),
        (daily("Europe/Berlin", datetime(2026, 3, 1, 20, 0), rule="FREQ=MINUTELY"), "must not contain"),
        (daily("Europe/Berlin", datetime(2026, 3, 1, 20, 0), rule="FREQ=SOMETIMES"), "not valid RFC 5545"),
        (
            RecurringSchedule(
                timezone="UTC",
                rrule="FREQ=HOURLY",
                starts_at=datetime(2026, 1, 1),
                until=datetime(2028, 1, 1),
                window_minutes=30,
            ),
            "more than 10000",
        ),
    ],
)
def test_invalid_schedules_are_refused_with_a_reason(schedule: RecurringSchedule, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate_schedule(schedule)


def test_unknown_zones_and_missing_ends_are_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        daily("Mars/Olympus", datetime(2026, 3, 1, 20, 0))
    with pytest.raises(ValueError, match="exactly one of until or count"):
        RecurringSchedule(timezone="UTC", rrule="FREQ=DAILY", starts_at=datetime(2026, 1, 1), window_minutes=30)
