"""The pure rules: adherence, trend labels, streaks, the reminder window, MongoDB update semantics of the twin store."""

from __future__ import annotations

from datetime import datetime, timedelta

from homework_insights.domain import DayPoint, Streak, ThresholdRule, adherence_pct, after_reminder, trend_label
from homework_insights.store import apply_update
from tests.unit.insights.builders import utc


def points(values: list[float], per_day: int = 1) -> list[DayPoint]:
    return [DayPoint(f"2026-03-{10 + i:02d}", per_day, v * per_day, v, v) for i, v in enumerate(values)]


def test_adherence_is_done_plus_partial_percents_over_due() -> None:
    assert adherence_pct(0, 0, 0) is None
    assert adherence_pct(4, 1, 150) == 62.5
    assert adherence_pct(3, 1, 0) == 33.3


def test_trend_needs_five_values_over_three_days() -> None:
    assert trend_label(points([1, 9]), "mood") is None
    assert trend_label(points([1, 5], per_day=3), "mood") is None  # 6 values, 2 days
    assert trend_label(points([1, 3, 5]), "mood") is None  # 3 values
    assert trend_label(points([1, 3, 5], per_day=2), "mood") == "improving"


def test_trend_direction_depends_on_the_series() -> None:
    rising = points([20, 30, 40, 50, 60])
    assert trend_label(rising, "suds_peak") == "declining"
    assert trend_label(list(reversed([DayPoint(p.day, p.n, 100 - p.total, 0, 0) for p in rising])), "suds_peak")


def test_a_change_under_ten_percent_of_the_scale_is_stable() -> None:
    assert trend_label(points([5, 5.2, 5.4, 5.6, 5.9]), "mood") == "stable"  # +0.9 on 0-10
    assert trend_label(points([5, 5.3, 5.5, 5.8, 6.1]), "mood") == "improving"  # +1.1


def test_series_without_a_better_direction_get_no_label() -> None:
    assert trend_label(points([1, 10, 20, 30, 40]), "pages") is None
    assert trend_label(points([1, 10, 20, 30, 40]), "unknown") is None


def test_streak_folds_in_order_and_asks_for_a_rebuild_on_an_older_outcome() -> None:
    t = utc(2026, 3, 1)
    s = Streak()
    for i, ok in enumerate([True, True, False, True]):
        assert s.record(t + timedelta(days=i), ok)
    assert (s.current, s.longest) == (1, 2)
    assert s.record(t + timedelta(days=3), True)  # same occurrence again: no change
    assert (s.current, s.longest) == (1, 2)
    assert not s.record(t + timedelta(days=2), True)
    rebuilt = Streak.rebuilt([(t + timedelta(days=i), True) for i in range(4)])
    assert (rebuilt.current, rebuilt.longest) == (4, 4)


def test_the_reminder_window_is_inclusive_and_only_after_the_reminder() -> None:
    sent = utc(2026, 3, 1, 10)
    assert after_reminder(sent + timedelta(hours=2), [sent], 2)
    assert not after_reminder(sent + timedelta(hours=2, seconds=1), [sent], 2)
    assert not after_reminder(sent - timedelta(seconds=1), [sent], 2)


def test_threshold_rules() -> None:
    assert ThresholdRule("mood", "at_most", 3).crossed_by(3)
    assert not ThresholdRule("suds_peak", "at_least", 90).crossed_by(89)


def test_the_twin_store_applies_updates_as_mongodb_does() -> None:
    doc: dict[str, object] = {"_id": "x"}
    apply_update(doc, {"$setOnInsert": {"a": 1}, "$inc": {"n.c": 2}}, inserting=True)
    apply_update(doc, {"$setOnInsert": {"a": 9}, "$inc": {"n.c": 1}, "$min": {"lo": 4}, "$max": {"hi": 4}})
    apply_update(doc, {"$min": {"lo": 2}, "$max": {"hi": 7}, "$push": {"l": {"$each": [1, 2, 3], "$slice": -2}}})
    apply_update(doc, {"$push": {"l": {"$each": [4], "$slice": -2}}, "$set": {"n.d": datetime(2026, 1, 1)}})
    assert doc == {"_id": "x", "a": 1, "n": {"c": 3, "d": datetime(2026, 1, 1)}, "lo": 2, "hi": 7, "l": [3, 4]}
