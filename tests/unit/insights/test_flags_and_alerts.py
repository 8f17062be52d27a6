"""Flags with the figures they rest on; one alert per episode, never one per event."""

from __future__ import annotations

from datetime import datetime, timedelta

from homework_shared.events import AdherenceAlertRaised
from homework_shared.events.values import Barrier
from tests.unit.insights.builders import CLIENT, PRACTICE, Assignment, Harness, daily, utc

CREATED = utc(2026, 3, 20, 9)


def day(n: int) -> datetime:
    return datetime(2026, 3, n, 20, 0)


def codes(h: Harness) -> list[str]:
    return [e.code for _, e in h.store.staged if isinstance(e, AdherenceAlertRaised)]


async def test_low_adherence_is_flagged_with_its_figures_and_alerted_once_per_episode() -> None:
    a = Assignment("asg-1", daily(day(21), 28, window=120))
    h = Harness(now=utc(2026, 4, 20))
    await h.apply(a.created(CREATED), a.done(day(21)))
    for n in range(22, 26):
        await h.apply(a.missed(day(n)))  # 1 of 5 due in the end
    await h.apply(a.missed(day(26)))  # still low: no second alert
    assert codes(h).count("low_adherence") == 1
    flag = next(f for f in (await h.figures())["flags"] if f["code"] == "low_adherence")
    assert flag["figures"]["due"] >= 4
    assert flag["figures"]["adherence_pct"] < 50
    alert = next(e for _, e in h.store.staged if isinstance(e, AdherenceAlertRaised) and e.code == "low_adherence")
    assert alert.figures == {"adherence_pct": 25.0, "due": 4, "done": 1}  # raised as soon as 4 were due
    assert alert.alert_id == "alr-low_adherence-asg-1-1"


async def test_a_new_episode_after_the_condition_cleared_raises_a_second_alert() -> None:
    a = Assignment("asg-1", daily(day(21), 28, window=600))
    h = Harness(now=utc(2026, 4, 20))
    await h.apply(a.created(CREATED), *(a.missed(day(n)) for n in range(21, 25)))  # 0 of 4
    for n in range(25, 31):
        await h.apply(a.done(day(n), after=timedelta(minutes=5)))  # 6 of 10: 60%
    for n in range(1, 8):
        await h.apply(a.missed(datetime(2026, 3 + 1, n, 20, 0)))  # 6 of 17: 35%
    ids = [e.alert_id for _, e in h.store.staged if isinstance(e, AdherenceAlertRaised) and e.code == "low_adherence"]
    assert ids == ["alr-low_adherence-asg-1-1", "alr-low_adherence-asg-1-2"]


async def test_low_adherence_needs_a_minimum_of_due_occurrences() -> None:
    a = Assignment("asg-1", daily(day(21), 28))
    h = Harness(now=utc(2026, 3, 24, 12))
    await h.apply(a.created(CREATED), a.missed(day(21)), a.missed(day(22)), a.missed(day(23)))
    assert "low_adherence" not in codes(h)


async def test_early_low_adherence_looks_at_the_first_two_weeks() -> None:
    a = Assignment("asg-1", daily(day(21), 28))
    h = Harness(now=utc(2026, 3, 25, 12))
    await h.apply(a.created(CREATED), a.done(day(21)), a.missed(day(22)), a.missed(day(23)))
    assert codes(h) == ["early_low_adherence"]  # 1 of 3 in the first two weeks; too few for low_adherence


async def test_skipped_as_too_hard_twice_suggests_smaller_steps_until_a_revision() -> None:
    a = Assignment("asg-1", daily(day(21), 28, window=600))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(
        a.created(CREATED),
        a.done(day(21)),
        a.skipped(day(22), Barrier.TOO_HARD),
        a.done(day(23)),
        a.skipped(day(24), Barrier.TOO_HARD),
    )
    flag = next(f for f in (await h.figures())["flags"] if f["code"] == "repeatedly_too_hard")
    assert "smaller steps" in flag["reason"]
    assert flag["figures"] == {"too_hard_skips": 2}
    await h.apply(a.revised(utc(2026, 3, 25, 12), daily(datetime(2026, 3, 26, 20, 0), 10, window=600)))
    assert all(f["code"] != "repeatedly_too_hard" for f in (await h.figures())["flags"])
    assert codes(h).count("repeatedly_too_hard") == 1


async def test_a_rating_crossing_a_therapist_threshold_is_flagged() -> None:
    a = Assignment("asg-1", daily(day(21), 28, window=600))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.store.put_thresholds(PRACTICE, CLIENT, {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]})
    await h.apply(a.created(CREATED), a.mood(day(21), 6), a.mood(day(22), 2), a.mood(day(23), 1))
    assert codes(h) == ["rating_threshold_crossed"]
    flag = next(f for f in (await h.figures())["flags"] if f["code"] == "rating_threshold_crossed")
    assert flag["figures"] == {"metric": "mood", "value": 1.0, "threshold": 3.0, "direction": "at_most"}
    await h.apply(a.missed(day(24)))  # not a rating: the threshold episode goes on
    assert h.store.collections["assignments"]["asg-1"]["flags"]["rating_threshold_crossed:mood"]["active"]
    await h.apply(a.mood(day(25), 5))
    assert not (await h.figures())["flags"]


async def test_a_client_view_has_no_flags() -> None:
    a = Assignment("asg-1", daily(day(21), 28))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(a.created(CREATED))
    f = await h.figures(flags=False)
    assert "flags" not in f
    assert all("flags" not in x for x in f["assignments"])
