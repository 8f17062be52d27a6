"""A client whose time zone changes its UTC offset during the scenario: "every day at 20:00" stays 20:00 local.

The platform clock starts eight days before a DST change (New York falling back on 1 November 2026,
Berlin springing forward on 28 March 2027) and the plan runs from the day before it to the day after.
The clock runs while the services start: a day is 10 real seconds, and on a machine whose cores are
busy the three services took 45 s to be ready (4.5 platform days; a clock started two days before
the change left too little). Starting the clock early and the plan on a fixed day gives them about
69 real seconds, more than ``deploy`` itself waits for a service (60 s); the test then waits for the
plan's first occurrence (idle, on the platform clock) instead of racing it. The mood log's reminders fall
due at 20:00 local wall time on both sides, their UTC offsets differ by the hour, consecutive
occurrences open 25 (or 23) hours apart, and the figures are exactly the plan's.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from homework_shared.events import ReminderSent
from tests.e2e.scenario import (
    SCENARIO_ENV,
    SPEED,
    assert_exact_figures,
    assert_one_missed_per_ignored,
    assert_rebuild_equals_live,
    assert_reminders_fired_once,
    of_client,
    origin_at,
    plan_for,
    read,
    run,
    settled_figures,
)
from tests.e2e.system import deploy
from tests.infra import Infra


@pytest.mark.parametrize(
    ("tz", "change", "offsets", "gap"),
    [
        ("America/New_York", date(2026, 11, 1), {timedelta(hours=-4), timedelta(hours=-5)}, timedelta(hours=25)),
        ("Europe/Berlin", date(2027, 3, 28), {timedelta(hours=1), timedelta(hours=2)}, timedelta(hours=23)),
    ],
    ids=["new-york-falls-back", "berlin-springs-forward"],
)
def test_a_daily_20_00_stays_20_00_local_across_a_dst_change(
    infra: Infra, tmp_path: Path, tz: str, change: date, offsets: set[timedelta], gap: timedelta
) -> None:
    origin = origin_at(datetime.combine(change - timedelta(days=8), datetime.min.time()), tz)
    with deploy(infra, tmp_path / "logs", speed=SPEED, origin=origin, **SCENARIO_ENV) as d:
        plan = plan_for(d.clock, tz, start=change - timedelta(days=1), through=change + timedelta(days=1))
        assert plan.first_day < change, "the plan must start before the change"
        result = run(d, plan, tmp_path / "out")
        result.figures = settled_figures(d, result)

        assert_exact_figures(result)
        mood = result.occurrences["mood"]
        local_starts = [datetime.fromisoformat(o["local_start"]) for o in mood]
        assert {s.time().isoformat() for s in local_starts} == {"20:00:00"}
        opens = [datetime.fromisoformat(o["opens_at"]) for o in mood]
        gaps = {b - a for a, b in pairwise(opens)}
        assert gaps == {timedelta(hours=24), gap}, f"20:00 local opens {gap} after the evening before the change"

        reminders = read(d, d.system_topics.reminder)
        sent = [
            e.data
            for e in of_client(reminders, plan.client_id, ReminderSent)
            if e.data.assignment_id == result.assignment_ids["mood"] and e.data.reminder_id.endswith("#opens+0")
        ]
        assert len(sent) == len(mood), "every mood occurrence's opening reminder fired"
        local_due = [s.due_at.astimezone(ZoneInfo(tz)) for s in sent]
        assert {t.strftime("%H:%M") for t in local_due} == {"20:00"}, f"reminders due at {local_due}"
        assert {t.utcoffset() for t in local_due} == offsets, "the reminders fall on both sides of the change"
        assert_reminders_fired_once(result, reminders, deduplicate=False)
        assert_one_missed_per_ignored(result, reminders, deduplicate=False)
        assert_rebuild_equals_live(d, result)
