"""Poison messages on every event stream while the scenario runs: parked with their reasons, the rest exact.

On the assignment, reminder and insights streams, keyed like the scenario's client (so they sit in
its partitions, in the way of its events), go records that are not JSON, have no CloudEvents
headers, name an unknown type or an unsupported major version, lack a required field, and valid
events that cannot be applied (a completion or reminder of this client's assignment claiming
another client; a completion of an assignment that never existed). Some before the first
occurrence, the undecodable ones again in the middle of the week.

Each consumer group parks each record it cannot use on its own dead-letter topic
(``<prefix>.<group>.dead-letter``) with ``dlq_reason`` and the original topic, partition and
offset, and carries on: the figures, reminders and missed reports are exactly the plan's. Who
consumes what: the reminder service reads the assignment stream, the insights service the
assignment and reminder streams; no service of the platform consumes the insights stream, so its
poison is parked by nobody (and read by nobody).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaProducer

from homework_shared.events import (
    AdherenceAlertRaised,
    CompletionRecorded,
    HomeworkEvent,
    ReminderSent,
    encode,
    envelope,
)
from homework_shared.events.examples import EXAMPLES
from tests.conftest import unique
from tests.e2e.quiet import lag_of
from tests.e2e.scenario import (
    SCENARIO_ENV,
    SPEED,
    WINDOW_MINUTES,
    DemoResult,
    Event,
    Plan,
    assert_exact_figures,
    assert_one_missed_per_ignored,
    assert_rebuild_equals_live,
    assert_reminders_fired_once,
    origin_at,
    plan_for,
    play,
    read,
    read_all,
    settled_figures,
)
from tests.e2e.system import Deployment, deploy, wait
from tests.infra import Infra

TZ = "Europe/Berlin"
ORIGIN = datetime(2026, 12, 7, 0, 0)
SAMPLE: dict[str, type[HomeworkEvent]] = {
    "assignment": CompletionRecorded,
    "reminder": ReminderSent,
    "insights": AdherenceAlertRaised,
}
"""A type of each stream, whose headers the poison borrows."""
CONSUMERS = {
    "assignment": ["reminder", "insights", "assignment"],
    "reminder": ["insights", "assignment"],
    "insights": ["assignment"],
}
"""The consumer groups of each stream (the service name is the group), as the services are documented
to subscribe; the test checks it against the groups' committed offsets on the broker. The assignment
service reads every stream for the erasure saga's events (docs/data-rights.md) and ignores the rest, so
it parks undecodable records but never an event it cannot apply."""


@dataclass(frozen=True)
class Poison:
    """One bad record put on a stream, where it landed, and the reason each group should park it for."""

    name: str
    stream: str
    topic: str
    partition: int
    offset: int
    reason: str
    parked_by: tuple[str, ...]


def headers_of(event: HomeworkEvent, **changes: str) -> list[tuple[str, bytes]]:
    record = encode(envelope(event, source="/homework/poison", event_id=unique("poison")))
    values = {k: v.decode() for k, v in record.headers} | changes
    return [(k, v.encode()) for k, v in values.items()]


def undecodable(stream: str) -> list[tuple[str, bytes, list[tuple[str, bytes]], str]]:
    """Records no consumer can decode: (name, value, headers, reason)."""
    sample = EXAMPLES[SAMPLE[stream]]
    base = sample.event_type.rsplit(".v", 1)[0]
    body = json.loads(sample.model_dump_json())
    body.pop("client_id")
    return [
        ("not-json", b"\x00{ this is not json", headers_of(sample), "invalid_json"),
        ("no-headers", b'{"hello": "world"}', [], "missing_header"),
        ("unknown-type", b"{}", headers_of(sample, ce_type=f"homework.{stream}.teleported.v1"), "unknown_type"),
        (
            "major-version-9",
            sample.model_dump_json().encode(),
            headers_of(sample, ce_type=f"{base}.v9"),
            "unsupported_version",
        ),
        ("missing-field", json.dumps(body).encode(), headers_of(sample), "invalid_data"),
    ]


def unappliable(
    stream: str, plan: Plan, mood_id: str, occurrence_id: str
) -> list[tuple[str, HomeworkEvent, tuple[str, ...]]]:
    """Valid events that cannot be applied: (name, event, the groups that park it)."""
    if stream == "assignment":
        sample = EXAMPLES[CompletionRecorded]
        assert isinstance(sample, CompletionRecorded)
        opens = datetime.fromisoformat(occurrence_id.split("@")[1]).replace(tzinfo=ZoneInfo(plan.timezone))
        of_mood = {
            "practice_id": plan.practice_id,
            "assignment_id": mood_id,
            "occurrence_id": occurrence_id,
            "local_start": opens.replace(tzinfo=None),
            "opens_at": opens,
            "closes_at": opens + timedelta(minutes=WINDOW_MINUTES),
        }
        return [
            # Another client's completion of this client's assignment: both consumers refuse it.
            (
                "other-client",
                sample.model_copy(update={**of_mood, "client_id": unique("client")}),
                ("reminder", "insights"),
            ),
            # A completion of an assignment never created: the reminder and the insights hold it, waiting
            # for the assignment (events may come before their assignment), and never count it.
            (
                "unknown-assignment",
                sample.model_copy(
                    update={
                        "client_id": plan.client_id,
                        "assignment_id": "asg-never",
                        "occurrence_id": "asg-never@2026-12-08T20:00",
                    }
                ),
                (),
            ),
        ]
    if stream == "reminder":
        sample = EXAMPLES[ReminderSent]
        update = {"client_id": unique("client"), "practice_id": plan.practice_id, "assignment_id": mood_id}
        return [("other-client", sample.model_copy(update=update), ("insights",))]
    sample = EXAMPLES[AdherenceAlertRaised]
    return [("alert-of-nobody", sample.model_copy(update={"client_id": plan.client_id}), ())]


async def inject(
    d: Deployment, plan: Plan, records: list[tuple[str, str, bytes, list[tuple[str, bytes]], str, tuple[str, ...]]]
) -> list[Poison]:
    producer = AIOKafkaProducer(bootstrap_servers=d.infra.kafka_bootstrap, acks="all")
    await producer.start()
    out = []
    try:
        for stream, name, value, headers, reason, parked_by in records:
            topic = d.system_topics.stream(stream)  # type: ignore[arg-type]
            meta = await producer.send_and_wait(topic, value, key=plan.client_id.encode(), headers=headers)
            out.append(Poison(name, stream, meta.topic, meta.partition, meta.offset, reason, parked_by))
    finally:
        await producer.stop()
    return out


def undecodable_records(streams: list[str]) -> list[Any]:
    return [(s, n, v, h, r, tuple(CONSUMERS[s])) for s in streams for (n, v, h, r) in undecodable(s)]


async def play_with_poison(d: Deployment, out: Path) -> tuple[DemoResult, list[Poison]]:
    plan = plan_for(d.clock, TZ, days=4)
    game = asyncio.create_task(play(d.system, plan, out, console=False, settle_timeout=120))
    from demo import token

    headers = {"Authorization": f"Bearer {token(d.system, 'therapist', plan.therapist_id, plan.practice_id)}"}
    url = f"{d.processes['assignment'].url}/v1/clients/{plan.client_id}/assignments"
    async with httpx.AsyncClient(timeout=10) as http:
        while True:  # the scenario has assigned its homework: poison now, before the first occurrence
            r = await http.get(url, headers=headers)
            items = r.json()["items"] if r.status_code == 200 else []
            if len(items) == 3 or game.done():
                break
            await asyncio.sleep(0.05)
    mood_id = next(a["id"] for a in items if a["kind"] == "mood_log")
    last_mood = f"{mood_id}@{plan.first_day + timedelta(days=plan.days - 1)}T20:00"
    streams = list(CONSUMERS)
    records = undecodable_records(streams)
    for stream in streams:
        for name, event, parked_by in unappliable(stream, plan, mood_id, last_mood):
            record = encode(envelope(event, source="/homework/poison", event_id=unique("poison")))
            records.append((stream, name, record.value, record.headers, "apply_failed", parked_by))
    poison = await inject(d, plan, records)
    # Again in the middle of the week, between two evenings: the undecodable ones.
    midweek = datetime.combine(plan.first_day + timedelta(days=1), time(12, 0), ZoneInfo(TZ))
    while d.clock.now() < midweek and not game.done():
        await asyncio.sleep(0.05)
    poison += await inject(d, plan, undecodable_records(streams))
    result = await game
    return result, poison


def test_poison_on_every_stream_is_parked_with_its_reason_and_the_figures_stay_exact(
    infra: Infra, tmp_path: Path
) -> None:
    with deploy(infra, tmp_path / "logs", speed=SPEED, origin=origin_at(ORIGIN, TZ), **SCENARIO_ENV) as d:
        result, poison = asyncio.run(play_with_poison(d, tmp_path / "out"))
        topics = d.system_topics
        # Every group has consumed (and so parked) everything: its lag is zero, twice, seconds apart.
        result.figures = settled_figures(d, result)
        broker = asyncio.run(lag_of(d))
        consumed = {group: {s for s in CONSUMERS if topics.stream(s) in own} for group, own in broker.consumed.items()}
        documented = {g: {s for s, groups in CONSUMERS.items() if g in groups} for gs in CONSUMERS.values() for g in gs}
        assert consumed == documented, f"the groups consume {consumed}; the poison was planned for {documented}"
        expected = {
            group: {(p.topic, p.partition, p.offset): p for p in poison if group in p.parked_by}
            for group in ("reminder", "insights")
        }

        def parked(group: str) -> list[Event]:
            return asyncio.run(read_all(d.infra.kafka_bootstrap, [topics.dead_letter(group)]))

        for group, want in expected.items():
            wait(
                lambda g=group, w=want: len(parked(g)) >= len(w), 90, interval=1, message=f"{group} parking everything"
            )
            got = parked(group)
            where = {
                (
                    e.headers["dlq_original_topic"],
                    int(e.headers["dlq_original_partition"]),
                    int(e.headers["dlq_original_offset"]),
                ): e
                for e in got
            }
            assert len(where) == len(got), f"{group} parked a record twice"
            assert set(where) == set(want), f"{group} parked {sorted(where)}; expected {sorted(want)}"
            for at, p in want.items():
                e = where[at]
                assert e.headers["dlq_reason"] == p.reason, (
                    f"{group}: {p.stream}/{p.name} parked as {e.headers['dlq_reason']}"
                )
                assert e.headers["dlq_consumer_group"] == group
                assert e.key == result.plan.client_id.encode(), "parked with its key"
        # What nobody should park is on no dead-letter topic of the deployment, whichever group owns it.
        dead_letter_topics = sorted({tp.topic for tp in broker.ends if tp.topic.endswith(".dead-letter")})
        assert set(dead_letter_topics) == {topics.dead_letter(g) for g in documented}, dead_letter_topics
        parked_anywhere = {
            (
                e.headers["dlq_original_topic"],
                int(e.headers["dlq_original_partition"]),
                int(e.headers["dlq_original_offset"]),
            )
            for e in asyncio.run(read_all(d.infra.kafka_bootstrap, dead_letter_topics))
        }
        unparked = {(p.topic, p.partition, p.offset): p.name for p in poison if not p.parked_by}
        assert unparked, "the test puts poison nobody consumes on the insights stream"
        assert not parked_anywhere & set(unparked), f"parked although no group consumes it: {unparked}"

        assert_exact_figures(result)
        reminders = read(d, topics.reminder)
        assert_reminders_fired_once(result, reminders, deduplicate=False)
        assert_one_missed_per_ignored(result, reminders, deduplicate=False)
        assert_rebuild_equals_live(d, result)
        assert all(p.alive() for p in d.processes.values())
