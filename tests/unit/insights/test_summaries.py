"""Pre-session summaries over a period of local days, what changed since the last one, and the HTML page."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from homework_insights.report import render_summary
from homework_insights.summaries import PeriodError, build_summary, summary_event
from homework_shared.events import HomeworkKind
from homework_shared.events.values import Barrier
from tests.unit.insights.builders import CLIENT, PRACTICE, Assignment, Harness, daily, utc

CREATED = utc(2026, 3, 20, 9)


def day(n: int, hour: int = 20) -> datetime:
    return datetime(2026, 3, n, hour, 0)


async def scenario() -> tuple[Harness, Assignment, Assignment]:
    mood = Assignment("asg-m", daily(day(21), 28, window=600))
    expo = Assignment("asg-x", daily(day(21, 9), 28, window=600), kind=HomeworkKind.EXPOSURE)
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(mood.created(CREATED), expo.created(CREATED))
    for n, m in zip(range(21, 27), [3, 4, 4, 5, 6, 7], strict=True):
        await h.apply(mood.mood(day(n), m, quality=6))
    await h.apply(
        expo.exposure(day(21, 9), 1, 50, 80, 40),
        expo.skipped(day(22, 9), Barrier.TOO_HARD),
        expo.skipped(day(23, 9), Barrier.TOO_HARD),
        expo.skipped(day(24, 9), Barrier.FORGOT),
        expo.exposure(day(25, 9), 1, 45, 65, 30),
    )
    return h, mood, expo


async def test_a_summary_covers_the_period_with_headline_series_barriers_and_flags() -> None:
    h, _, _ = await scenario()
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    s = await build_summary(h.store, client, h.now, generated_by="therapist-1")
    hl = s["headline"]
    assert (hl["due"], hl["done"], hl["skipped"], hl["missed"]) == (12, 8, 3, 1)  # the exposure on the 26th
    assert s["first_day"] == "2026-03-20"
    assert s["last_day"] == "2026-03-27"
    assert [b["barrier"] for b in s["barriers"]] == ["too_hard", "forgot"]
    codes = ["early_low_adherence", "low_adherence", "repeatedly_too_hard"]  # the exposure: 2 of 6 done
    assert sorted(f["code"] for f in s["flags"]) == codes
    assert all(f["assignment_id"] == "asg-x" for f in s["flags"])
    mood = next(x for x in s["series"] if x["metric"] == "mood")
    assert mood["trend"] == "improving"
    assert len(mood["points"]) == 6
    assert s["exposure"][0]["step"] == 1
    assert len(s["exposure"][0]["attempts"]) == 2
    assert s["changes"] is None
    event = summary_event(s)
    assert (event.occurrences_due, event.done, event.flags) == (12, 8, codes)


async def test_the_next_summary_starts_where_the_last_ended_and_says_what_changed() -> None:
    h, mood, _ = await scenario()
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    first = await build_summary(h.store, client, h.now)
    await h.store.insert_summary(first)
    h.now += timedelta(days=3)
    for n in (27, 28, 29):
        await h.apply(mood.mood(day(n), 8))
    second = await build_summary(h.store, client, h.now)
    assert second["period_start"] == first["period_end"]
    assert second["first_day"] == "2026-03-27"
    changes = second["changes"]
    assert changes["previous_summary_id"] == first["_id"]
    assert changes["figures"]["adherence_pct"]["before"] == first["headline"]["adherence_pct"]
    assert changes["figures"]["done"]["change"] == second["headline"]["done"] - first["headline"]["done"]


async def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    h, _, _ = await scenario()
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    with pytest.raises(PeriodError):
        await build_summary(h.store, client, h.now, start=utc(2026, 3, 26), end=utc(2026, 3, 25))


async def test_the_html_page_is_self_contained_with_a_chart_per_series_and_the_flags_reasons() -> None:
    h, _, _ = await scenario()
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    s = await build_summary(h.store, client, h.now)
    page = render_summary(s)
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == len(s["series"]) >= 3
    assert "consider smaller steps" in page
    assert "too_hard_skips = 2" in page
    assert "too hard" in page
    assert "Since the last summary" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page), "no external assets"
    assert "<script" not in page


async def test_a_therapists_threshold_is_drawn_on_its_series_chart() -> None:
    h, _, _ = await scenario()
    await h.store.put_thresholds(PRACTICE, CLIENT, {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]})
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    page = render_summary(await build_summary(h.store, client, h.now))
    assert page.count("stroke-dasharray") == 1
    assert "threshold: at most 3" in page


async def test_the_html_escapes_titles() -> None:
    a = Assignment("asg-h", daily(day(21), 5))
    h = Harness(now=utc(2026, 3, 27, 12))
    await h.apply(a.created(CREATED, title="<b>Mood</b> & more"))
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    page = render_summary(await build_summary(h.store, client, h.now))
    assert "&lt;b&gt;Mood&lt;/b&gt; &amp; more" in page
    assert "<b>Mood</b>" not in page
