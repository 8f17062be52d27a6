"""Streaks follow each schedule; the reminder effect; series per day with trends; SUDS per exposure step."""

from __future__ import annotations

from datetime import datetime, timedelta

from homework_shared.events import HomeworkKind
from homework_shared.events.values import Barrier
from tests.unit.insights.builders import Assignment, Harness, daily, utc

CREATED = utc(2026, 3, 20, 9)


def day(n: int, hour: int = 20) -> datetime:
    return datetime(2026, 3, n, hour, 0)


async def test_a_streak_follows_the_schedule_not_the_calendar() -> None:
    # Mondays, Wednesdays and Fridays: three done in a row is a streak of 3 although days lie between.
    a = Assignment("asg-w", daily(datetime(2026, 3, 23, 18, 0), 12, rrule="FREQ=WEEKLY;BYDAY=MO,WE,FR"))
    h = Harness(now=utc(2026, 3, 28, 12))
    await h.apply(a.created(CREATED), a.done(day(23, 18)), a.done(day(25, 18)), a.done(day(27, 18)))
    assert (await h.assignment("asg-w"))["streak"] == {"current": 3, "longest": 3}


async def test_a_skip_or_a_miss_breaks_the_streak_and_the_longest_is_kept() -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(
        a.created(CREATED),
        a.done(day(21)),
        a.done(day(22)),
        a.skipped(day(23), Barrier.NO_TIME),
        a.done(day(24)),
        a.missed(day(25)),
    )
    assert (await h.assignment("asg-1"))["streak"] == {"current": 0, "longest": 2}


async def test_a_partial_completion_extends_the_streak() -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(CREATED), a.done(day(21)), a.done(day(22), percent=30))
    assert (await h.assignment("asg-1"))["streak"]["current"] == 2


async def test_a_closed_occurrence_not_yet_reported_missed_ends_the_current_streak_on_reading() -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(CREATED), a.done(day(21)))
    assert (await h.assignment("asg-1"))["streak"] == {"current": 0, "longest": 1}


async def test_an_older_outcome_arriving_late_rebuilds_the_streak() -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    h = Harness(now=utc(2026, 3, 24, 12))
    await h.apply(a.created(CREATED), a.done(day(21)), a.missed(day(22)), a.done(day(23)))
    assert (await h.assignment("asg-1"))["streak"] == {"current": 1, "longest": 1}
    await h.apply(a.done(day(22), after=timedelta(hours=3), late=True))
    assert (await h.assignment("asg-1"))["streak"] == {"current": 3, "longest": 3}


async def test_completions_within_the_window_after_a_reminder_are_told_apart_from_the_others() -> None:
    a = Assignment("asg-1", daily(day(21), 14, window=300))
    h = Harness(now=utc(2026, 3, 25, 12))
    await h.apply(
        a.created(CREATED),
        a.reminder(day(21)),
        a.done(day(21), after=timedelta(minutes=30)),  # within 2 h of the reminder
        a.reminder(day(22)),
        a.done(day(22), after=timedelta(hours=3)),  # reminded, but more than 2 h later
        a.done(day(23), after=timedelta(minutes=5)),  # no reminder
    )
    r = (await h.assignment("asg-1"))["reminders"]
    assert r == {
        "occurrences_reminded": 2,
        "completions_after_reminder": 1,
        "completions_without_reminder": 2,
        "missed_reported": 0,
    }


async def test_a_reminder_event_arriving_after_its_completion_reclassifies_it() -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    h = Harness(now=utc(2026, 3, 22, 12))
    await h.apply(a.created(CREATED), a.done(day(21), after=timedelta(minutes=30)))
    await h.apply(a.reminder(day(21), after=timedelta(minutes=10)))
    r = (await h.assignment("asg-1"))["reminders"]
    assert (r["completions_after_reminder"], r["completions_without_reminder"]) == (1, 0)


async def test_mood_series_keeps_daily_count_mean_min_max_and_labels_the_trend() -> None:
    a = Assignment("asg-1", daily(day(21), 14, window=600))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(a.created(CREATED))
    for n, mood in zip(range(21, 27), [2, 3, 3, 5, 6, 7], strict=True):
        await h.apply(a.mood(day(n), mood, quality=5))
    f = await h.assignment("asg-1")
    mood = next(s for s in f["series"] if s["metric"] == "mood")
    assert mood["trend"] == "improving"
    assert [p["mean"] for p in mood["points"]] == [2, 3, 3, 5, 6, 7]
    quality = next(s for s in f["series"] if s["metric"] == "quality")
    assert quality["trend"] == "stable"
    assert f["quality_mean"] == 5


async def test_no_trend_label_on_too_little_data() -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(a.created(CREATED), a.mood(day(21), 2), a.mood(day(22), 8))
    mood = next(s for s in (await h.assignment("asg-1"))["series"] if s["metric"] == "mood")
    assert mood["trend"] is None


async def test_suds_per_exposure_step_show_habituation_within_and_across_attempts() -> None:
    a = Assignment("asg-x", daily(day(21, 18), 14), kind=HomeworkKind.EXPOSURE)
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(
        a.created(CREATED),
        a.exposure(day(21, 18), 1, 50, 80, 40),
        a.exposure(day(22, 18), 1, 45, 70, 30),
        a.exposure(day(23, 18), 1, 40, 55, 20),
        a.exposure(day(24, 18), 2, 60, 85, 50),
    )
    f = await h.assignment("asg-x")
    step1 = next(s for s in f["exposure_steps"] if s["step"] == 1)
    assert [x["peak"] for x in step1["attempts"]] == [80, 70, 55]
    assert step1["within_attempt_drop_last"] == 35
    assert step1["peak_change_across_attempts"] == -25
    peak = next(s for s in f["series"] if s["metric"] == "suds_peak")
    assert peak["points"][0] == {"date": "2026-03-21", "n": 1, "mean": 80, "min": 80, "max": 80}
