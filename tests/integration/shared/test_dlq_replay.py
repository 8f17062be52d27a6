"""The dead-letter replay against the real broker and server: a record parked for a fixable cause is replayed once
the cause is fixed and applied exactly once; a second replay changes nothing; a dry run publishes nothing; a record
that keeps failing stops being replayed after the limit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from homework_shared.after_commit import now_or_after_commit
from homework_shared.consumer import ConsumerMetrics, EventConsumer, RetryPolicy, Subscription
from homework_shared.dlq_replay import ReplaySettings, read_parked, replay
from homework_shared.events import AssignmentPaused, Envelope, Topics, encode, envelope
from homework_shared.kafka import ensure_topics, make_broker
from tests.conftest import unique, wait_for
from tests.infra import ROOT, Infra
from tests.integration.shared.topics import service_topics


class PracticeNotRegistered(LookupError):
    """The fixable cause: the event's practice is not in the ``practices`` collection yet."""


@dataclass
class Rig:
    infra: Infra
    topics: Topics
    group: str
    db: AsyncDatabase[dict[str, Any]]
    consumer: EventConsumer
    producer: AIOKafkaProducer
    applied: list[str] = field(default_factory=list)

    @property
    def settings(self) -> ReplaySettings:
        return ReplaySettings(kafka_bootstrap_servers=self.infra.kafka_bootstrap, topic_prefix=self.topics.prefix)

    async def send(self, practice: str, headers: list[tuple[str, bytes]] | None = None) -> tuple[str, Any]:
        event = AssignmentPaused(
            client_id="client-1", practice_id=practice, assignment_id=unique("asg"), paused_at=datetime.now(UTC)
        )
        rec = encode(envelope(event, source="/homework/assignment"))
        meta = await self.producer.send_and_wait(
            self.topics.assignment, rec.value, key=rec.key, headers=[*rec.headers, *(headers or [])]
        )
        return rec.header_dict()["ce_id"], meta

    async def parked(self) -> list[Any]:
        return await read_parked(self.infra.kafka_bootstrap, self.topics.dead_letter(self.group))

    async def wait_parked(self, count: int) -> list[Any]:
        async def enough() -> list[Any]:
            found = await self.parked()
            return found if len(found) >= count else []

        return await wait_for(enough, timeout=30, interval=0.3, message=f"{count} parked records")

    async def stream_end(self) -> int:
        reader = AIOKafkaConsumer(bootstrap_servers=self.infra.kafka_bootstrap)
        await reader.start()
        try:
            tp = TopicPartition(self.topics.assignment, 0)
            return int((await reader.end_offsets([tp]))[tp])
        finally:
            await reader.stop()

    async def applied_so_far(self) -> None:
        """Send a marker of a registered practice and wait for it: every record before it has been handled."""
        await self.db.practices.update_one({"_id": "marker-practice"}, {"$set": {}}, upsert=True)
        marker, _ = await self.send("marker-practice")
        await wait_for(lambda: _true(marker in self.applied), timeout=30, message="marker applied")


@pytest.fixture
async def rig(infra: Infra) -> AsyncIterator[Rig]:
    topics = Topics(prefix=unique("replay"))
    group = unique("g")
    await ensure_topics(
        infra.kafka_bootstrap,
        service_topics(topics, consumer_group=group),
        partitions=1,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[unique("db")]
    holder: dict[str, Rig] = {}

    async def apply(env: Envelope[Any], session: AsyncClientSession) -> None:
        if await db.practices.find_one({"_id": env.data.practice_id}, session=session) is None:
            raise PracticeNotRegistered(f"practice {env.data.practice_id!r} is not registered")
        await db.applied.insert_one({"_id": env.id}, session=session)
        now_or_after_commit(lambda: holder["rig"].applied.append(env.id))

    broker = make_broker(infra.kafka_bootstrap, client_id="replay-test")
    consumer = EventConsumer(
        broker=broker,
        client=client,
        db=db,
        subscription=Subscription(tuple(topics.all_streams()), group, topics.dead_letter(group)),
        apply=apply,
        metrics=ConsumerMetrics(CollectorRegistry()),
        retry=RetryPolicy(max_attempts=2, base_delay=0.01),
    )
    await consumer.ensure_indexes()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    r = Rig(infra, topics, group, db, consumer, producer)
    holder["rig"] = r
    await broker.start()
    try:
        yield r
    finally:
        await broker.stop()
        await producer.stop()
        await client.drop_database(db.name)
        await client.close()


def run_cli(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": rig.infra.kafka_bootstrap,
        "TOPIC_PREFIX": rig.topics.prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "homework_shared.dlq_replay", "--group", rig.group, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


async def test_a_parked_record_is_replayed_after_its_cause_is_fixed_and_applied_exactly_once(rig: Rig) -> None:
    event_id, original = await rig.send(
        "practice-a", headers=[("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01")]
    )
    [parked] = await rig.wait_parked(1)
    assert parked.header("dlq_reason") == "apply_failed"
    assert "PracticeNotRegistered" in (parked.header("dlq_error") or "")
    await rig.applied_so_far()
    assert event_id not in rig.applied

    # A dry run (the module entry point, as the Job and `make dlq-replay DRY_RUN=1` run it) lists, publishes nothing.
    end_before = await rig.stream_end()
    dry = await asyncio.to_thread(run_cli, rig, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout, dry.stderr
    [line] = [json.loads(x) for x in dry.stdout.splitlines()]
    assert line["action"] == "would_replay"
    assert line["event_id"] == event_id
    assert line["reason"] == "apply_failed"
    assert line["original_topic"] == rig.topics.assignment
    assert "1 would_replay" in dry.stderr
    assert await rig.stream_end() == end_before, "a dry run publishes nothing"

    # Fix the cause, then replay.
    await rig.db.practices.insert_one({"_id": "practice-a"})
    [first] = await replay(rig.settings, rig.group)
    assert first.action == "replayed"
    await wait_for(lambda: _true(event_id in rig.applied), timeout=30, message="the replayed event applied")
    await rig.applied_so_far()
    assert rig.applied.count(event_id) == 1
    assert await rig.db.applied.count_documents({"_id": event_id}) == 1

    # The replayed record is the original one: same key, value and headers, plus the replay count and origin.
    reader = AIOKafkaConsumer(bootstrap_servers=rig.infra.kafka_bootstrap)
    await reader.start()
    try:
        tp = TopicPartition(rig.topics.assignment, 0)
        reader.assign([tp])
        reader.seek(tp, original.offset)
        records = [r for rs in (await reader.getmany(tp, timeout_ms=3000, max_records=500)).values() for r in rs]
    finally:
        await reader.stop()
    sent = next(r for r in records if r.offset == original.offset)
    copy = next(r for r in records if r.offset > original.offset and dict(r.headers).get("ce_id") == event_id.encode())
    assert (copy.key, copy.value) == (sent.key, sent.value)
    extra = [h for h in copy.headers if h not in sent.headers]
    # correlation_id: FastStream gives every record it publishes one (the parked copy got it from park()).
    assert sorted(k for k, _ in extra) == ["correlation_id", "dlq_replay_count", "dlq_replayed_from"]
    assert dict(copy.headers)["dlq_replay_count"] == b"1"
    assert set(sent.headers) <= set(copy.headers), "every original header kept, with its value"

    # A second replay re-publishes it; the consumer recognises the applied event and nothing changes.
    duplicates = rig.consumer.metrics.duplicates._value.get()
    applied = await rig.db.applied.count_documents({})
    [second] = await replay(rig.settings, rig.group)
    assert second.action == "replayed"
    await wait_for(
        lambda: _true(rig.consumer.metrics.duplicates._value.get() == duplicates + 1),
        timeout=30,
        message="the second replay skipped as a duplicate",
    )
    assert await rig.db.applied.count_documents({}) == applied
    assert rig.applied.count(event_id) == 1
    assert len(await rig.parked()) == 1, "nothing parked again"


async def test_a_record_that_keeps_failing_is_replayed_at_most_max_replays_times(rig: Rig) -> None:
    event_id, _ = await rig.send("never-registered")
    await rig.wait_parked(1)
    for n in (1, 2):
        outcomes = await replay(rig.settings, rig.group, max_replays=2)
        assert [o.action for o in outcomes if o.action == "replayed"] == ["replayed"]
        parked = await rig.wait_parked(1 + n)
        assert parked[-1].replays == n
        assert parked[-1].header("ce_id") == event_id
    end = await rig.stream_end()
    outcomes = await replay(rig.settings, rig.group, max_replays=2)
    assert sorted(o.action for o in outcomes) == ["skipped_max_replays", "skipped_superseded", "skipped_superseded"]
    assert await rig.stream_end() == end, "nothing published once the limit is reached"
    assert await replay(rig.settings, rig.group, since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert event_id not in rig.applied


async def test_the_command_refuses_a_bad_since_with_exit_code_2(rig: Rig) -> None:
    result = await asyncio.to_thread(run_cli, rig, "--since", "yesterday-ish")
    assert result.returncode == 2
    assert "SINCE" in result.stderr


async def _true(value: bool) -> bool:
    return value
