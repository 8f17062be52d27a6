"""The demo's week of homework against the three services as separate processes, with exact expected figures.

A therapist assigns a daily mood log, an exposure hierarchy and a reading; the client completes
some occurrences, skips some ("too hard" twice on the exposure) and ignores one. Then: the figures
per assignment and overall are exactly the plan's; the exposure carries its flags and each flag
raised one alert; every reminder not cancelled by a completion or skip fired exactly once; the
ignored occurrence was reported missed once; the summary was stored, published and rendered; and
recomputing everything from the topics gives the live figures.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.e2e.scenario import (
    SCENARIO_ENV,
    SPEED,
    assert_exact_figures,
    assert_flags_and_one_alert_per_episode,
    assert_one_missed_per_ignored,
    assert_rebuild_equals_live,
    assert_reminders_fired_once,
    assert_summary_published,
    origin_at,
    plan_for,
    read,
    run,
    settled_figures,
)
from tests.e2e.system import deploy
from tests.infra import Infra

TZ = "Europe/Berlin"
ORIGIN = datetime(2026, 12, 7, 0, 0)
"""Monday 7 December 2026, local midnight: the week after it has no DST change."""


def test_a_week_of_homework_gives_exactly_the_planned_figures_reminders_alerts_and_summary(
    infra: Infra, tmp_path: Path
) -> None:
    with deploy(infra, tmp_path / "logs", speed=SPEED, origin=origin_at(ORIGIN, TZ), **SCENARIO_ENV) as d:
        plan = plan_for(d.clock, TZ, days=7)
        result = run(d, plan, tmp_path / "out")
        result.figures = settled_figures(d, result)
        assert result.expected["overall"]["missed"] == 1, "the plan ignores one occurrence"
        assert result.expected["exposure"]["skipped"] == 2, "the plan skips the exposure twice"

        assert_exact_figures(result)
        reminders = read(d, d.system_topics.reminder)
        insights = read(d, d.system_topics.insights)
        assert_reminders_fired_once(result, reminders, deduplicate=False)
        assert_one_missed_per_ignored(result, reminders, deduplicate=False)
        assert_flags_and_one_alert_per_episode(result, insights, deduplicate=False)
        assert_summary_published(result, insights)
        assert_rebuild_equals_live(d, result)
        assert all(p.alive() for p in d.processes.values())
