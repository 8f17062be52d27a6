"""Outbox -> real Kafka -> idempotent consumer: every event arrives typed, in order, once; bad records are parked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import OutOfOrderSequenceNumber
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_shared.consumer import ConsumerMetrics, EventConsumer, RetryPolicy, Subscription
from homework_shared.events import EVENT_CLASSES, Envelope, HomeworkEvent, Topics, encode, envelope
from homework_shared.events.examples import EXAMPLES
from homework_shared.kafka import ensure_topics, make_broker, producer_failed
from homework_shared.outbox import Outbox, OutboxMetrics, OutboxRelay
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.shared.topics import service_topics


@dataclass
class Pipeline:
    topics: Topics
    outbox: Outbox
    relay: OutboxRelay
    consumer: EventConsumer
    client: AsyncMongoClient[dict[str, Any]]
    infra: Infra
    applied: list[Envelope[Any]] = field(default_factory=list)
    fail_types: set[str] = field(default_factory=set)

    async def stage(self, *events: HomeworkEvent) -> list[str]:
        ids = []
        async with self.client.start_session() as s, await s.start_transaction():
            for e in events:
                ids.append(await self.outbox.stage(s, e))
        self.outbox.notify()
        return ids

    async def dead_letters(self, count: int) -> list[Any]:
        reader = AIOKafkaConsumer(
            self.topics.dead_letter("test-group"),
            bootstrap_servers=self.infra.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await reader.start()
        out: list[Any] = []
        try:
            async with asyncio.timeout(20):
                while len(out) < count:
                    batch = await reader.getmany(timeout_ms=500)
                    for records in batch.values():
                        out.extend(records)
        finally:
            await reader.stop()
        return out


@pytest.fixture
async def pipeline(infra: Infra) -> AsyncIterator[Pipeline]:
    topics = Topics(prefix=unique("pipe"))
    await ensure_topics(
        infra.kafka_bootstrap,
        service_topics(topics, consumer_group="test-group"),
        partitions=3,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[unique("db")]
    registry = CollectorRegistry()
    broker = make_broker(infra.kafka_bootstrap, client_id="pipeline-test")
    outbox = Outbox(db, topics, source="/homework/test")
    await outbox.ensure_indexes()
    relay = OutboxRelay(outbox, broker, OutboxMetrics(registry))
    holder: dict[str, Pipeline] = {}

    async def apply(env: Envelope[Any], session: AsyncClientSession) -> None:
        p = holder["p"]
        if env.type in p.fail_types:
            raise RuntimeError(f"cannot apply {env.type}")
        await db.applied.insert_one({"_id": env.id, "type": env.type}, session=session)
        p.applied.append(env)

    consumer = EventConsumer(
        broker=broker,
        client=client,
        db=db,
        subscription=Subscription(tuple(topics.all_streams()), "test-group", topics.dead_letter("test-group")),
        apply=apply,
        metrics=ConsumerMetrics(registry),
        retry=RetryPolicy(base_delay=0.01, max_attempts=3),
    )
    await consumer.ensure_indexes()
    p = Pipeline(topics, outbox, relay, consumer, client, infra)
    holder["p"] = p
    await broker.start()
    relay.start()
    try:
        yield p
    finally:
        await relay.stop()
        await broker.stop()
        await client.close()


async def test_every_event_type_travels_from_outbox_to_consumer_typed_and_marked_sent(pipeline: Pipeline) -> None:
    events = [EXAMPLES[cls] for cls in EVENT_CLASSES]
    ids = await pipeline.stage(*events)
    await wait_for(lambda: _true(len(pipeline.applied) >= len(events)), message="all events applied")
    by_id = {env.id: env for env in pipeline.applied}
    assert set(by_id) == set(ids)
    for event_id, event in zip(ids, events, strict=True):
        got = by_id[event_id].data
        expected = event.model_copy(
            update={k: None for k in ("note", "barrier_text") if getattr(event, k, None) is not None}
        )
        assert got == expected, "free text is left out of events by default"
        assert type(got) is type(event)
    assert await pipeline.outbox.collection.count_documents({"state": "pending"}) == 0
    # Events of one client keep, within each stream (topic), the order they were staged in.
    for stream in ("assignment", "reminder", "insights"):
        staged = [i for i, e in zip(ids, events, strict=True) if e.stream == stream]
        assert [env.id for env in pipeline.applied if env.data.stream == stream] == staged


async def test_a_redelivered_event_is_applied_once(pipeline: Pipeline) -> None:
    event = EXAMPLES[EVENT_CLASSES[0]]
    [event_id] = await pipeline.stage(event)
    await wait_for(lambda: _true(len(pipeline.applied) == 1))
    rec = encode(envelope(event, source="/homework/test", event_id=event_id))
    await pipeline.consumer.broker.publish(
        rec.value, pipeline.topics.assignment, key=rec.key, headers=rec.header_dict()
    )
    [marker] = await pipeline.stage(EXAMPLES[EVENT_CLASSES[1]])
    await wait_for(lambda: _true(any(e.id == marker for e in pipeline.applied)))
    assert [e.id for e in pipeline.applied].count(event_id) == 1
    assert pipeline.consumer.metrics.duplicates._value.get() == 1


async def test_bad_records_are_parked_with_their_reason_and_the_consumer_carries_on(pipeline: Pipeline) -> None:
    broker = pipeline.consumer.broker
    topic = pipeline.topics.assignment
    good = EXAMPLES[EVENT_CLASSES[0]]
    rec = encode(envelope(good, source="/t"))
    await broker.publish(b"{definitely not json", topic, key=b"client-x", headers=rec.header_dict())
    await broker.publish(
        rec.value, topic, key=b"client-x", headers={**rec.header_dict(), "ce_type": "homework.assignment.teleported.v1"}
    )
    pipeline.fail_types.add("homework.assignment.paused.v1")
    await pipeline.stage(EXAMPLES[EVENT_CLASSES[2]])  # paused: its apply always fails
    [after] = await pipeline.stage(good)
    await wait_for(lambda: _true(any(e.id == after for e in pipeline.applied)), message="consumer carried on")
    parked = await pipeline.dead_letters(3)
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in parked)
    assert reasons == ["apply_failed", "invalid_json", "unknown_type"]
    for r in parked:
        h = {k: v.decode() for k, v in r.headers}
        assert h["dlq_original_topic"] == topic
        assert int(h["dlq_original_offset"]) >= 0
        assert h["dlq_consumer_group"] == "test-group"
        assert r.key in (b"client-x", good.client_id.encode())
    invalid = next(r for r in parked if dict(r.headers)["dlq_reason"] == b"invalid_json")
    assert invalid.value == b"{definitely not json"


async def test_a_producer_failed_for_good_is_replaced_and_the_relay_delivers_everything(pipeline: Pipeline) -> None:
    """After a broker restart an idempotent producer can fail for good (``OutOfOrderSequenceNumber``
    ends its sender; every later send raises it again). The relay replaces it and carries on."""
    broker = pipeline.relay.broker
    [first] = await pipeline.stage(EXAMPLES[EVENT_CLASSES[0]])
    await wait_for(lambda: _true(any(e.id == first for e in pipeline.applied)), message="first event applied")
    dead = broker.config.broker_config.producer._producer.producer  # type: ignore[attr-defined]
    dead._message_accumulator.fail_all(OutOfOrderSequenceNumber())  # what the sender's death leaves behind
    with pytest.raises(OutOfOrderSequenceNumber):
        await broker.publish(b"x", pipeline.topics.assignment, key=b"k")
    assert producer_failed(broker, OutOfOrderSequenceNumber())

    ids = await pipeline.stage(*(EXAMPLES[cls] for cls in EVENT_CLASSES[1:4]))
    await wait_for(
        lambda: _true({e.id for e in pipeline.applied} >= set(ids)), timeout=30, message="delivered after renewal"
    )
    assert broker.config.broker_config.producer._producer.producer is not dead  # type: ignore[attr-defined]
    assert await pipeline.outbox.collection.count_documents({"state": "pending"}) == 0
    assert pipeline.relay.metrics.failures._value.get() >= 1


async def _true(value: bool) -> bool:
    return value
