"""The demo scenario as an end-to-end test: timing that survives a loaded machine, topic reading, exact checks.

Timing: the platform clock runs ``SPEED`` times real time (a day in 10 s). The windows are 14 hours
(about 6 real seconds) and the simulated client acts an hour after an occurrence opens, so a
completion lands with seconds of real time to spare; the reminder service's missed grace is 3
platform hours. Every check reads the deployment's own topics from the beginning, so it sees every
event whatever happened during the run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from homework_shared.clock import Clock
from homework_shared.events import (
    AdherenceAlertRaised,
    EventDecodeError,
    InsightSummaryGenerated,
    OccurrenceMissed,
    ReminderCancelled,
    ReminderScheduled,
    ReminderSent,
    decode,
)
from homework_shared.events.envelope import Envelope
from tests.conftest import unique
from tests.e2e.quiet import figures_when_quiet
from tests.e2e.system import Deployment, wait
from tests.infra import ROOT

SPEED = 8640.0
"""Platform seconds per real second: a day in 10 s."""
WINDOW_MINUTES = 840
ACT_AFTER_MINUTES = 60
MISSED_GRACE_S = 3 * 3600
SCENARIO_ENV = {"MISSED_GRACE_S": str(MISSED_GRACE_S), "END_SWEEP_INTERVAL_S": "1"}
FIGURES = ("due", "done", "partial", "skipped", "missed", "adherence_pct")

import sys  # noqa: E402 - demo.py lives beside the local stack

sys.path.insert(0, str(ROOT / "deploy" / "local"))
from demo import DemoResult, Plan, play  # noqa: E402


def origin_at(local: datetime, tz: str) -> datetime:
    """The platform instant of a local wall time: where a deployment's clock starts."""
    return local.replace(tzinfo=ZoneInfo(tz))


FIRST_OPENING = dt_time(9, 0)
"""The earliest local time an occurrence of the plan opens on its first day (the reading)."""
LEAD = timedelta(hours=12)
"""Platform time between making the plan and its first opening: 5 real seconds to post the assignments."""


def first_day(clock: Clock, tz: str) -> date:
    """The plan's first day: the first whose 09:00 local lies at least ``LEAD`` ahead.

    The clock runs while the services start (a few real seconds, many platform hours), so the plan
    is made from the platform time the services are ready at, not from the origin. The earliest
    occurrence opens at 09:00 on the first day and must still lie ahead once the assignments are
    posted, on a machine whose cores are busy too (with 7 platform hours, ~3 real seconds, a slow
    machine lost the reading).
    """
    now = clock.now().astimezone(ZoneInfo(tz))
    day = now.date()
    while datetime.combine(day, FIRST_OPENING, now.tzinfo) - now < LEAD:
        day += timedelta(days=1)
    return day


def plan_for(
    clock: Clock,
    tz: str = "Europe/Berlin",
    days: int = 7,
    *,
    through: date | None = None,
    start: date | None = None,
) -> Plan:
    """The demo's plan for a fresh client, with windows and acting time fit for the test's clock speed.

    ``through``: make the plan last until that local day (whatever day it starts on) instead of ``days``.
    ``start``: begin on that local day (it must still be far enough ahead, see ``first_day``), not the first
    possible one: a test whose clock starts early enough for the slowest start-up waits for it instead.
    """
    earliest = first_day(clock, tz)
    if start is not None:
        assert earliest <= start, (
            f"the services took too long to start: the plan could begin on {earliest} at the earliest, not {start}"
        )
    else:
        start = earliest
    if through is not None:
        days = (through - start).days + 1
        assert days >= 2, f"the services took too long to start: the plan would begin on {start}"
    return Plan(
        client_id=unique("client"),
        practice_id=unique("practice"),
        therapist_id=unique("therapist"),
        timezone=tz,
        first_day=start,
        days=days,
        mood_window_minutes=WINDOW_MINUTES,
        exposure_window_minutes=WINDOW_MINUTES,
        act_after_minutes=ACT_AFTER_MINUTES,
    )


def run(d: Deployment, plan: Plan, out: Path) -> DemoResult:
    """Play ``plan`` against the deployment (console off) and return what happened."""
    return asyncio.run(play(d.system, plan, out, console=False, settle_timeout=120))


# ----------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Event:
    """One record of a topic: where it was, and its event (None when it does not decode)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    envelope: Envelope[Any] | None


async def read_all(bootstrap: str, topics: Iterable[str], timeout: float = 60) -> list[Event]:
    """Every record of ``topics`` from the beginning up to their current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Event] = []
    try:
        await consumer._client.force_metadata_update()  # aiokafka has no public metadata refresh
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {sorted(set(topics))}")
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    headers = {k: v.decode("utf-8", "replace") for k, v in r.headers}
                    try:
                        env: Envelope[Any] | None = decode(r.headers, r.value)
                    except EventDecodeError:
                        env = None
                    out.append(Event(r.topic, r.partition, r.offset, r.key, headers, env))
    finally:
        await consumer.stop()
    return out


def read(d: Deployment, *topics: str) -> list[Event]:
    return asyncio.run(read_all(d.infra.kafka_bootstrap, topics))


def of_client(events: list[Event], client_id: str, kind: type[Any]) -> list[Envelope[Any]]:
    """The decoded events of one type about one client, in topic order (duplicates kept)."""
    return [
        e.envelope
        for e in events
        if e.envelope is not None and isinstance(e.envelope.data, kind) and e.envelope.data.client_id == client_id
    ]


def unique_by_id(envelopes: list[Envelope[Any]]) -> list[Envelope[Any]]:
    """One envelope per event id (what an idempotent consumer applies), first seen kept."""
    seen: dict[str, Envelope[Any]] = {}
    for env in envelopes:
        seen.setdefault(env.id, env)
    return list(seen.values())


# ----------------------------------------------------------------------------- checks


def figures_by_name(result: DemoResult) -> dict[str, dict[str, Any]]:
    """The live figures per plan assignment name, plus ``overall``."""
    by_id = {a["assignment_id"]: a for a in result.figures.get("assignments", [])}
    out = {name: by_id.get(aid, {}) for name, aid in result.assignment_ids.items()}
    out["overall"] = result.figures.get("overall", {})
    return out


def assert_exact_figures(result: DemoResult) -> None:
    """Per assignment and overall: due, done, partial, skipped, missed and adherence as the plan says."""
    live = figures_by_name(result)
    for name, expected in result.expected.items():
        got = {k: live[name].get(k) for k in FIGURES}
        want = {k: expected[k] for k in FIGURES}
        assert got == want, f"{name}: live {got} != expected {want}"


def ignored_occurrences(result: DemoResult) -> list[str]:
    return sorted(oid for _, oid, what in result.actions if what == "ignored")


def assert_reminders_fired_once(result: DemoResult, reminder_events: list[Event], *, deduplicate: bool) -> None:
    """Every reminder scheduled and not cancelled has exactly one ``ReminderSent`` (one id, one record).

    Those of ignored occurrences all fired; the others fired or were cancelled by the completion or skip.
    ``deduplicate``: the topic holds every record twice (the duplicator), so count distinct event ids.
    """
    client = result.plan.client_id
    scheduled = {e.data.reminder_id for e in of_client(reminder_events, client, ReminderScheduled)}
    cancelled = {e.data.reminder_id: e.data.reason for e in of_client(reminder_events, client, ReminderCancelled)}
    sent_records = of_client(reminder_events, client, ReminderSent)
    sent = unique_by_id(sent_records) if deduplicate else sent_records
    per_reminder = Counter(e.data.reminder_id for e in sent)
    ids_per_reminder: dict[str, set[str]] = defaultdict(set)
    for e in sent_records:
        ids_per_reminder[e.data.reminder_id].add(e.id)
    assert scheduled, "no reminder was scheduled"
    for rid in sorted(scheduled):
        if rid in cancelled:
            assert per_reminder[rid] == 0, f"{rid} was cancelled ({cancelled[rid]}) yet sent"
            assert cancelled[rid] in ("completed", "skipped"), f"{rid} cancelled: {cancelled[rid]}"
        else:
            assert per_reminder[rid] == 1, f"{rid}: sent {per_reminder[rid]} times"
            assert len(ids_per_reminder[rid]) == 1, f"{rid}: several event ids {ids_per_reminder[rid]}"
    assert set(per_reminder) <= scheduled, "a reminder was sent that was never scheduled"
    for oid in ignored_occurrences(result):
        own = [rid for rid in scheduled if rid.startswith(f"{oid}#")]
        assert own, f"no reminder scheduled for the ignored {oid}"
        assert all(per_reminder[rid] == 1 for rid in own), f"ignored {oid}: not every reminder fired"
    opening = [rid for rid in scheduled if rid.endswith("#opens+0")]
    assert len(opening) == sum(len(o) for o in result.occurrences.values()), "one opening reminder per occurrence"


def assert_one_missed_per_ignored(result: DemoResult, reminder_events: list[Event], *, deduplicate: bool) -> None:
    records = of_client(reminder_events, result.plan.client_id, OccurrenceMissed)
    missed = unique_by_id(records) if deduplicate else records
    got = sorted(e.data.occurrence_id for e in missed)
    assert got == ignored_occurrences(result), f"missed reported {got}, ignored {ignored_occurrences(result)}"
    assert all(e.id == f"missed:{e.data.occurrence_id}" for e in missed)


def expected_flags(result: DemoResult) -> set[tuple[str, str]]:
    """The flags the plan raises, as (code, assignment name): derived from the plan's own figures."""
    flags: set[tuple[str, str]] = set()
    for name, f in result.expected.items():
        if name == "overall":
            continue
        if f["due"] >= 4 and f["adherence_pct"] < 50:
            flags.add(("low_adherence", name))
        if f["due"] >= 3 and f["adherence_pct"] < 50:
            flags.add(("early_low_adherence", name))  # every plan fits in its first 14 days
        too_hard = sum(
            1
            for i in range(int(f["due"]))
            if result.plan.action(name, i).body.get("barrier") == "too_hard"  # the plan's own skips
        )
        if too_hard >= 2:
            flags.add(("repeatedly_too_hard", name))
    return flags


def assert_flags_and_one_alert_per_episode(
    result: DemoResult, insights_events: list[Event], *, deduplicate: bool
) -> None:
    names = {aid: name for name, aid in result.assignment_ids.items()}
    live = {(f["code"], names.get(f.get("assignment_id", ""), "?")) for f in result.figures.get("flags", [])}
    want = expected_flags(result)
    assert live == want, f"flags {sorted(live)} != expected {sorted(want)}"
    records = of_client(insights_events, result.plan.client_id, AdherenceAlertRaised)
    alerts = unique_by_id(records) if deduplicate else records
    raised = Counter((str(e.data.code), names.get(e.data.assignment_id or "", "?")) for e in alerts)
    assert set(raised) == want, f"alerts {sorted(raised)} != flags {sorted(want)}"
    assert all(n == 1 for n in raised.values()), f"more than one alert for an episode: {raised}"
    assert all(e.id == e.data.alert_id for e in alerts)


def assert_summary_published(result: DemoResult, insights_events: list[Event]) -> None:
    summary = result.summary
    assert result.html_path.exists(), "the summary page was not saved"
    assert result.html_path.stat().st_size > 1000, "the summary page is empty"
    assert "<html" in result.html_path.read_text().lower()
    overall = result.expected["overall"]
    published = unique_by_id(of_client(insights_events, result.plan.client_id, InsightSummaryGenerated))
    assert [e.data.summary_id for e in published] == [summary["summary_id"]]
    event = published[0].data
    got = (event.occurrences_due, event.done, event.partial, event.skipped, event.missed, event.adherence_pct)
    want = (overall["due"], overall["done"], overall["partial"], overall["skipped"], overall["missed"])
    assert got == (*want, overall["adherence_pct"]), f"summary event {got} != expected {want}"


def wait_until_ended(d: Deployment, result: DemoResult, timeout: float = 60) -> None:
    """Wait until the insights show every assignment ended (``schedule_finished``): no event is on its way."""
    from demo import token

    headers = {
        "Authorization": f"Bearer {token(d.system, 'therapist', result.plan.therapist_id, result.plan.practice_id)}"
    }
    url = f"{d.processes['insights'].url}/v1/clients/{result.plan.client_id}/figures"

    def all_ended() -> bool:
        r = httpx.get(url, headers=headers, timeout=10)
        states = [a.get("state") for a in r.json().get("assignments", [])] if r.status_code == 200 else []
        return len(states) == len(result.assignment_ids) and all(s == "ended" for s in states)

    wait(all_ended, timeout, interval=0.5, message="every assignment ended")


def settled_figures(d: Deployment, result: DemoResult) -> dict[str, Any]:
    """The client's figures once every assignment has ended and the platform is quiet (``tests.e2e.quiet``).

    Read when every consumer group's lag is zero and no outbox holds a record, and again after the
    lag stayed zero for a few seconds; the two reads must agree. Only what does not move with the
    clock is kept: per assignment and overall ``FIGURES`` (and state), and the flags (the rolling
    7- and 28-day windows slide by hours of platform time between two reads).
    """
    from demo import token

    wait_until_ended(d, result)
    headers = {
        "Authorization": f"Bearer {token(d.system, 'therapist', result.plan.therapist_id, result.plan.practice_id)}"
    }
    url = f"{d.processes['insights'].url}/v1/clients/{result.plan.client_id}/figures"

    async def figures() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(url, headers=headers)
        r.raise_for_status()
        f = r.json()
        return {
            "overall": {k: f["overall"].get(k) for k in FIGURES},
            "assignments": [
                {"assignment_id": a["assignment_id"], "state": a.get("state"), **{k: a.get(k) for k in FIGURES}}
                for a in f.get("assignments", [])
            ],
            "flags": sorted(
                ({"code": x.get("code"), "assignment_id": x.get("assignment_id")} for x in f.get("flags", [])),
                key=lambda x: (str(x["code"]), str(x["assignment_id"])),
            ),
        }

    return figures_when_quiet(d, figures)


def assert_rebuild_equals_live(d: Deployment, result: DemoResult) -> None:
    """``homework_insights.rebuild`` over the deployment's topics gives exactly the live figures.

    Once every assignment has ended nothing more is published, so both read the same events.
    """
    wait_until_ended(d, result)
    from homework_insights.config import InsightsSettings
    from homework_insights.rebuild import rebuild

    clock = {k.lower(): v for k, v in d.env.items() if k.startswith("CLOCK_")}
    settings = InsightsSettings(
        kafka_bootstrap_servers=d.infra.kafka_bootstrap,
        mongodb_uri=d.infra.mongodb_uri,
        topic_prefix=d.prefix,
        mongodb_database=d.database("insights"),
        **clock,
    )
    report = asyncio.run(rebuild(settings, f"{d.database('insights')}_rebuild", drop=True))
    assert report.applied > 0
    assert report.exact, "rebuild differs from live:\n" + "\n".join(report.differences[:20])
