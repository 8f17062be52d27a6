"""The outbox relay's publish ceiling: the one single-writer stage of every service (one lease per database).

``RECORDS`` outbox records (``ReminderSent``-sized, the commonest event) are staged beforehand
straight into an outbox collection, so the relay meets a full backlog and nothing else competes
for it. One :class:`~homework_shared.outbox.OutboxRelay` (the service's own class, with an idempotent
``acks=all`` FastStream producer from :func:`~homework_shared.kafka.make_broker`) then takes the
lease and publishes them in ``seq`` order, marking each batch sent. The figure is records/s from
the relay's start to the last record marked sent.

Baseline, same run: raw aiokafka producing as many records of the same size, idempotent and
``acks=all``, without MongoDB (the Kafka side's own ceiling on this machine). A second, stricter
floor reads the records in the relay's order and marks them sent with PyMongo alone, in batches
of the relay's size (the MongoDB side's ceiling). The relay can approach neither alone, since it
does both in turn.

Run alone: ``uv run python -m tests.bench.run_all relay``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pymongo import ASCENDING, AsyncMongoClient

from homework_shared.events import Channel, HomeworkKind, ReminderSent, Topics
from homework_shared.kafka import ensure_topics, make_broker
from homework_shared.outbox import Outbox, OutboxMetrics, OutboxRelay
from tests.bench.common import Figure, Stopwatch
from tests.conftest import unique, wait_for
from tests.infra import Infra

RECORDS = int(os.environ.get("BENCH_RELAY_RECORDS", "20000"))
PARTITIONS = 6
COMMAND = "uv run python -m tests.bench.run_all relay"


def sample(i: int, at: datetime) -> ReminderSent:
    return ReminderSent(
        client_id=f"client-{i % 1000}",
        practice_id=f"practice-{i % 50}",
        reminder_id=f"asg-{i}@2026-05-01T20:00#opens+0",
        assignment_id=f"asg-{i}",
        occurrence_id=f"asg-{i}@2026-05-01T20:00",
        due_at=at,
        channels=[Channel.PUSH],
        sent_at=at,
        title="Evening mood rating",
        kind=HomeworkKind.MOOD_LOG,
        closes_at=at,
    )


async def stage(outbox: Outbox, n: int) -> list[dict[str, Any]]:
    """Stage ``n`` records as the services do (``Outbox.prepare``), inserted in chunks outside a transaction."""
    now = datetime.now(UTC)
    docs = [outbox.prepare(sample(i, now)) for i in range(n)]
    for start in range(0, n, 5000):
        await outbox.collection.insert_many(docs[start : start + 5000], ordered=True)
    return docs


async def relay_rate(infra: Infra, mongo: AsyncMongoClient[dict[str, Any]], topics: Topics) -> tuple[float, int]:
    db = mongo[unique("bench-relay")]
    outbox = Outbox(db, topics, source="/homework/reminder")
    await outbox.ensure_indexes()
    await stage(outbox, RECORDS)
    broker = make_broker(infra.kafka_bootstrap, client_id="bench-relay")
    await broker.start()
    relay = OutboxRelay(outbox, broker, OutboxMetrics(CollectorRegistry()))
    try:
        with Stopwatch() as took:
            relay.start()
            await wait_for(lambda: _none_pending(outbox), timeout=900, interval=0.1, message="relay drained")
        await relay.stop()
        return RECORDS / took.seconds, relay.batch_size
    finally:
        await broker.stop()
        await mongo.drop_database(db.name)


async def _none_pending(outbox: Outbox) -> bool:
    return await outbox.collection.count_documents({"state": "pending"}, limit=1) == 0


async def kafka_rate(infra: Infra, topics: Topics, docs: list[dict[str, Any]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    try:
        with Stopwatch() as took:
            futures = [
                await producer.send(
                    d["topic"],
                    bytes(d["value"]),
                    key=d["key"].encode(),
                    headers=[(k, v.encode()) for k, v in d["headers"]],
                )
                for d in docs
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(docs) / took.seconds


async def mongo_rate(mongo: AsyncMongoClient[dict[str, Any]], topics: Topics, batch: int) -> float:
    """Read pending records in ``seq`` order and mark them sent, ``batch`` at a time, with PyMongo alone."""
    db = mongo[unique("bench-relay-floor")]
    outbox = Outbox(db, topics, source="/homework/reminder")
    await outbox.ensure_indexes()
    await stage(outbox, RECORDS)
    try:
        with Stopwatch() as took:
            while True:
                cursor = outbox.collection.find({"state": "pending"}).sort("seq", ASCENDING).limit(batch)
                records = await cursor.to_list()
                if not records:
                    break
                await outbox.collection.update_many(
                    {"_id": {"$in": [r["_id"] for r in records]}},
                    {"$set": {"state": "sent", "sent_at": datetime.now(UTC)}},
                )
        return RECORDS / took.seconds
    finally:
        await mongo.drop_database(db.name)


async def main(infra: Infra) -> list[Figure]:
    topics = Topics(prefix=unique("brelay"))
    await ensure_topics(
        infra.kafka_bootstrap,
        list(topics.all_streams()),
        partitions=PARTITIONS,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        relay, batch = await relay_rate(infra, mongo, topics)
        probe = Outbox(mongo["unused"], topics, source="/homework/reminder")
        now = datetime.now(UTC)
        kafka = await kafka_rate(infra, topics, [probe.prepare(sample(i, now)) for i in range(RECORDS)])
        floor = await mongo_rate(mongo, topics, batch)
    finally:
        await mongo.close()
    size = len(bytes(probe.prepare(sample(0, now))["value"]))
    return [
        Figure(
            name="outbox relay publish rate, one lease holder, full backlog",
            value=relay,
            unit="records/s",
            baseline_name="raw aiokafka, idempotent, acks=all, same records",
            baseline_value=kafka,
            command=COMMAND,
            notes=(
                f"{RECORDS:,} ReminderSent records ({size} bytes of JSON each) staged beforehand; one OutboxRelay "
                f"(batches of {batch}) from start to the last one marked sent; {PARTITIONS} partitions. This is the "
                "ceiling of events per second one service database can emit (see docs/capacity.md)."
            ),
        ),
        Figure(
            name="outbox relay publish rate, against its MongoDB side alone",
            value=relay,
            unit="records/s",
            baseline_name=f"read {batch} in seq order and mark them sent, PyMongo alone",
            baseline_value=floor,
            command=COMMAND,
        ),
    ]
