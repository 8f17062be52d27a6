"""Due occurrences come from the schedule in the client's zone, with the void rules; adherence counts partials."""

from __future__ import annotations

from datetime import datetime

from homework_shared.events.values import OnceSchedule
from tests.unit.insights.builders import BERLIN, Assignment, Harness, daily, utc

START = datetime(2026, 3, 21, 20, 0)  # 20:00 Berlin = 19:00 UTC until the DST change on 29 March
CREATED = utc(2026, 3, 20, 9)


def mood_assignment(count: int = 14, **kw: object) -> Assignment:
    return Assignment("asg-1", daily(START, count, **kw))  # type: ignore[arg-type]


async def test_due_counts_each_closed_occurrence_and_unresolved_ones_are_missed() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 24, 12))
    await h.apply(a.created(CREATED), a.done(datetime(2026, 3, 22, 20, 0)))
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"], f["missed"], f["adherence_pct"]) == (3, 1, 2, 33.3)


async def test_nothing_is_due_before_the_first_window_closes_and_adherence_is_then_none() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 21, 20, 59))
    await h.apply(a.created(CREATED))
    f = await h.figures()
    assert f["overall"]["due"] == 0
    assert f["overall"]["adherence_pct"] is None


async def test_an_occurrence_resolved_while_open_is_due_at_once_and_not_counted_again_when_it_closes() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 21, 19, 30))
    await h.apply(a.created(CREATED), a.done(START))
    assert (await h.assignment("asg-1"))["due"] == 1
    h.now = utc(2026, 3, 22, 12)
    await h.apply(a.reminder(datetime(2026, 3, 22, 20, 0)))  # moves nothing: the next one has not closed
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"], f["missed"]) == (1, 1, 0)


async def test_adherence_counts_a_partial_by_its_percent() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 25, 12))
    await h.apply(
        a.created(CREATED),
        a.done(datetime(2026, 3, 21, 20, 0)),
        a.done(datetime(2026, 3, 22, 20, 0), percent=50),
        a.skipped(datetime(2026, 3, 23, 20, 0)),
    )
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"], f["partial"], f["skipped"], f["missed"]) == (4, 1, 1, 1, 1)
    assert f["adherence_pct"] == 37.5  # (1 + 0.5) / 4


async def test_the_schedule_follows_local_time_across_the_dst_change() -> None:
    a = mood_assignment()
    # On 29 March Berlin moves to CEST: 20:00 local is 18:00 UTC from then on.
    h = Harness(now=utc(2026, 3, 29, 20, 0))
    await h.apply(a.created(CREATED))
    assert (await h.assignment("asg-1"))["due"] == 9  # 21..29 March, the 29th closed at 20:00 UTC
    h.now = utc(2026, 3, 29, 19, 59)
    assert (await h.assignment("asg-1"))["due"] == 8


async def test_a_local_time_that_does_not_exist_is_still_one_occurrence_on_that_day() -> None:
    a = Assignment("asg-ny", daily(datetime(2026, 3, 7, 2, 30), 3, window=60, tz="America/New_York"))
    h = Harness(now=utc(2026, 3, 10))
    await h.apply(a.created(utc(2026, 3, 6)), a.done(datetime(2026, 3, 8, 2, 30)))
    f = await h.assignment("asg-ny")
    assert (f["due"], f["done"]) == (3, 1)
    assert h.store.collections["days"]["asg-ny|2026-03-08"]["done"] == 1


async def test_a_repeated_local_time_at_fall_back_is_one_occurrence() -> None:
    a = Assignment("asg-fb", daily(datetime(2026, 10, 31, 1, 30), 3, window=30, tz="America/New_York"))
    h = Harness(now=utc(2026, 11, 3))
    await h.apply(a.created(utc(2026, 10, 30)))
    assert (await h.assignment("asg-fb"))["due"] == 3


async def test_an_occurrence_that_closed_before_the_assignment_was_created_does_not_exist() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(utc(2026, 3, 22, 12)))  # after the 21st's window
    assert (await h.assignment("asg-1"))["due"] == 1  # only the 22nd


async def test_pausing_voids_the_open_occurrence_and_those_until_resumed() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(
        a.created(CREATED),
        a.paused(utc(2026, 3, 22, 19, 30)),  # during the 22nd's window: it becomes void
        a.resumed(utc(2026, 3, 24, 12)),  # the 23rd opened while paused: void
    )
    f = await h.assignment("asg-1")
    assert f["due"] == 4  # 21st, 24th, 25th, 26th: the 22nd and 23rd are void
    assert f["state"] == "active"


async def test_an_occurrence_resolved_before_the_pause_stays_due_and_done() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(
        a.created(CREATED),
        a.done(datetime(2026, 3, 22, 20, 0)),  # 19:10 UTC
        a.paused(utc(2026, 3, 22, 19, 30)),
    )
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"], f["missed"]) == (2, 1, 1)


async def test_cancelling_voids_the_open_occurrence_and_everything_after() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 4, 10))
    await h.apply(a.created(CREATED), a.cancelled(utc(2026, 3, 23, 19, 15)))
    f = await h.assignment("asg-1")
    assert (f["due"], f["state"]) == (2, "cancelled")


async def test_ending_stops_the_tally_like_cancelling() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 4, 10))
    await h.apply(a.created(CREATED), a.ended(utc(2026, 3, 24, 12)))
    assert (await h.assignment("asg-1"))["due"] == 3


async def test_a_revision_governs_occurrences_opening_from_its_instant() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 28, 12))
    await h.apply(a.created(CREATED))
    # From the 24th noon on: every other day at 09:00 local (08:00 UTC), 60-minute windows.
    revised = a.revised(
        utc(2026, 3, 24, 12), daily(datetime(2026, 3, 25, 9, 0), 5, window=60, rrule="FREQ=DAILY;INTERVAL=2")
    )
    await h.apply(revised)
    f = await h.assignment("asg-1")
    assert f["due"] == 3 + 2  # 21, 22, 23 (old schedule) + 25, 27 09:00 (new)


async def test_a_pause_that_arrives_after_the_tally_passed_it_is_recounted() -> None:
    a = mood_assignment()
    h = Harness(now=utc(2026, 3, 26, 12))
    await h.apply(a.created(CREATED), a.reminder(datetime(2026, 3, 25, 20, 0)))  # tally moved to the 25th
    assert (await h.assignment("asg-1"))["due"] == 5
    await h.apply(a.paused(utc(2026, 3, 22, 12)))  # processed late
    assert (await h.assignment("asg-1"))["due"] == 1  # only the 21st
    assert h.store.collections["assignments"]["asg-1"]["totals"]["due"] == 1  # the stored tally was recounted


async def test_a_once_schedule_is_due_after_its_due_time() -> None:
    a = Assignment(
        "asg-once", OnceSchedule(timezone=BERLIN, opens_at=datetime(2026, 3, 21, 9), due_at=datetime(2026, 3, 23, 18))
    )
    h = Harness(now=utc(2026, 3, 23, 16, 59))
    await h.apply(a.created(CREATED))
    assert (await h.assignment("asg-once"))["due"] == 0
    h.now = utc(2026, 3, 23, 17, 0)
    assert (await h.assignment("asg-once"))["due"] == 1


async def test_last_7_and_28_days_count_occurrences_by_their_local_date() -> None:
    a = mood_assignment(count=40)
    h = Harness(now=utc(2026, 4, 25, 12))
    await h.apply(a.created(CREATED))
    for day in range(21, 31):
        await h.apply(a.done(datetime(2026, 3, day, 20, 0)))
    f = await h.assignment("asg-1")
    assert f["last_7_days"]["due"] == 6  # 19..24 April closed; the 25th has not
    assert f["last_7_days"]["done"] == 0
    assert f["last_28_days"]["due"] == 28 - 1  # 29 March .. 24 April
    assert f["last_28_days"]["done"] == 2  # 29 and 30 March
    assert f["due"] == 35
    assert f["done"] == 10


async def test_per_kind_and_overall_sum_the_assignments() -> None:
    mood = mood_assignment()
    expo = Assignment("asg-2", daily(datetime(2026, 3, 21, 18, 0), 5), kind="exposure")  # type: ignore[arg-type]
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(mood.created(CREATED), expo.created(CREATED), expo.exposure(datetime(2026, 3, 21, 18), 1, 40, 70, 30))
    f = await h.figures()
    assert f["overall"]["due"] == 4
    assert f["overall"]["done"] == 1
    assert f["by_kind"]["exposure"]["adherence_pct"] == 50.0
    assert f["by_kind"]["mood_log"]["adherence_pct"] == 0.0
