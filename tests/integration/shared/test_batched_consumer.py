"""The idempotent consumer in batch mode: each record applied once, in order per client, offsets committed per batch.

Consecutive records of one partition share a transaction (group commit); a redelivered or
broken record in a group makes the group's records go one by one, each still applied once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_shared.after_commit import now_or_after_commit
from homework_shared.consumer import Batching, ConsumerMetrics, EventConsumer, Subscription
from homework_shared.events import AssignmentPaused, Envelope, Topics, encode, envelope
from homework_shared.kafka import ensure_topics, make_broker
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.shared.topics import service_topics


def _paused(client: str, n: int) -> AssignmentPaused:
    from datetime import UTC, datetime, timedelta

    return AssignmentPaused(
        client_id=client,
        practice_id="p",
        assignment_id=f"asg-{client}",
        paused_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n),
    )


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_a_batched_consumer_applies_each_record_once_in_order_and_commits_after_the_batch(
    infra: Infra, concurrency: int
) -> None:
    topics = Topics(prefix=unique("batch"))
    group = unique("g")
    await ensure_topics(
        infra.kafka_bootstrap,
        service_topics(topics, consumer_group=group),
        partitions=3,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[unique("db")]
    applied: list[Envelope[Any]] = []

    async def apply(env: Envelope[Any], session: AsyncClientSession) -> None:
        await db.applied.insert_one({"_id": env.id}, session=session)
        # Records share transactions (group commit); one that is dropped is applied again
        # record by record, so only a committed apply may count.
        now_or_after_commit(lambda: applied.append(env))

    broker = make_broker(infra.kafka_bootstrap, client_id="batch-test")
    consumer = EventConsumer(
        broker=broker,
        client=client,
        db=db,
        subscription=Subscription((topics.assignment,), group, topics.dead_letter(group)),
        apply=apply,
        metrics=ConsumerMetrics(CollectorRegistry()),
        batching=Batching(batch_size=50, concurrency=concurrency),
    )
    await consumer.ensure_indexes()
    assert "Batch" in type(consumer.subscriber).__name__
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    envs = [envelope(_paused(f"c{n % 3}", n), source="/t") for n in range(120)]
    for env in [*envs[:60], envs[10], *envs[60:]]:  # one redelivery in the middle
        rec = encode(env)
        await producer.send_and_wait(topics.assignment, rec.value, key=rec.key, headers=rec.headers)
    await producer.send_and_wait(topics.assignment, b"{broken", key=b"c0", headers=encode(envs[0]).headers)
    await broker.start()
    try:
        await wait_for(lambda: _true(len(applied) == 120), timeout=60, message="all applied")
        parked = await _read(infra, topics.dead_letter(group), 1)
        assert dict(parked[0].headers)["dlq_reason"] == b"invalid_json"
        assert sorted(e.id for e in applied) == sorted(e.id for e in envs)
        for c in ("c0", "c1", "c2"):
            mine = [e.id for e in applied if e.data.client_id == c]
            assert mine == [e.id for e in envs if e.data.client_id == c]
        assert consumer.metrics.duplicates._value.get() == 1
        assert await db.applied.count_documents({}) == 120
        registry = consumer.metrics.group_sizes
        events = registry._sum.get()
        transactions = sum(bucket.get() for bucket in registry._buckets)
        assert events == 120
        assert transactions < 120, "consecutive records of a partition share transactions"

        async def committed_to_the_end() -> bool:
            reader = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group)
            await reader.start()
            try:
                parts = [TopicPartition(topics.assignment, p) for p in range(3)]
                ends = await reader.end_offsets(parts)
                return all([(await reader.committed(tp) or 0) == ends[tp] for tp in parts])
            finally:
                await reader.stop()

        await broker.stop()
        assert await committed_to_the_end()
    finally:
        await producer.stop()
        await broker.stop()
        await client.drop_database(db.name)
        await client.close()


async def _read(infra: Infra, topic: str, count: int) -> list[Any]:
    reader = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest")
    await reader.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(out) < count:
                for records in (await reader.getmany(timeout_ms=300)).values():
                    out.extend(records)
    finally:
        await reader.stop()
    return out


async def _true(value: bool) -> bool:
    return value
