"""The demo week with every event delivered twice: the figures, reminders and summary are exactly the same.

A duplicator republishes every record of the three event streams once more while the scenario
runs, so each consumer group receives every event twice, the copy arriving out of order with what
came in between. The idempotent consumers apply each event once: the figures are exactly the plan's,
each reminder fired once per deterministic id (its ``ReminderSent`` is on the topic twice, the copy
included, but with one id), one alert per flag episode, one missed report per ignored occurrence.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path

from homework_shared.events import ReminderSent
from tests.e2e.duplicator import Duplicator
from tests.e2e.scenario import (
    SCENARIO_ENV,
    SPEED,
    DemoResult,
    assert_exact_figures,
    assert_flags_and_one_alert_per_episode,
    assert_one_missed_per_ignored,
    assert_rebuild_equals_live,
    assert_reminders_fired_once,
    assert_summary_published,
    of_client,
    origin_at,
    plan_for,
    play,
    read,
    settled_figures,
    wait_until_ended,
)
from tests.e2e.system import Deployment, deploy
from tests.infra import Infra

TZ = "Europe/Berlin"
ORIGIN = datetime(2026, 12, 7, 0, 0)


async def play_with_duplicates(d: Deployment, out: Path) -> tuple[DemoResult, Duplicator]:
    topics = d.system_topics
    duplicator = Duplicator(d.infra.kafka_bootstrap, [topics.assignment, topics.reminder, topics.insights])
    await duplicator.start()
    try:
        plan = plan_for(d.clock, TZ, days=7)
        result = await play(d.system, plan, out, console=False, settle_timeout=120)
        await asyncio.to_thread(wait_until_ended, d, result)
        await duplicator.caught_up()
    finally:
        await duplicator.stop()
    return result, duplicator


def test_every_event_delivered_twice_changes_nothing(infra: Infra, tmp_path: Path) -> None:
    with deploy(infra, tmp_path / "logs", speed=SPEED, origin=origin_at(ORIGIN, TZ), **SCENARIO_ENV) as d:
        result, duplicator = asyncio.run(play_with_duplicates(d, tmp_path / "out"))
        topics = d.system_topics
        assert duplicator.copied[topics.assignment] > 0
        assert duplicator.copied[topics.reminder] > 0
        assert duplicator.copied[topics.insights] > 0

        # Every copy consumed by every group (lag zero), the figures read twice seconds apart, the same.
        result.figures = settled_figures(d, result)
        assert_exact_figures(result)
        reminders = read(d, topics.reminder)
        insights = read(d, topics.insights)
        sent_ids = Counter(e.id for e in of_client(reminders, result.plan.client_id, ReminderSent))
        assert sent_ids, "no reminder was sent"
        assert set(sent_ids.values()) == {2}, f"each ReminderSent should be there twice (with its copy): {sent_ids}"
        assert_reminders_fired_once(result, reminders, deduplicate=True)
        assert_one_missed_per_ignored(result, reminders, deduplicate=True)
        assert_flags_and_one_alert_per_episode(result, insights, deduplicate=True)
        assert_summary_published(result, insights)
        assert_rebuild_equals_live(d, result)
