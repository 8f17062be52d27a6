"""The local Kafka broker is the real thing: idempotent acks=all producing, committed offsets, per-key order."""

from __future__ import annotations

from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import unique
from tests.infra import Infra

MESSAGES = 10_000
KEYS = 50


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=str(i).encode(), key=f"client-{i % KEYS}".encode())
            for i in range(MESSAGES)
        ]
        for fut in futures:
            await fut
    finally:
        await producer.stop()


def consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )


async def consume_and_commit(c: AIOKafkaConsumer, want: int, seen: dict[str, list[int]]) -> int:
    """Read until ``want`` messages were handled, committing each batch after it is processed."""
    handled = 0
    while handled < want:
        batches = await c.getmany(timeout_ms=1000, max_records=min(500, want - handled))
        for tp, records in batches.items():
            for record in records:
                assert record.key is not None
                assert record.value is not None
                seen[record.key.decode()].append(int(record.value))
            handled += len(records)
            await c.commit({tp: records[-1].offset + 1})
    return handled


async def test_idempotent_producer_and_group_resume_without_loss_or_rereads(infra: Infra) -> None:
    topic, group = unique("proof"), unique("group")
    await create_topic(infra.kafka_bootstrap, topic, 3)
    await produce(infra.kafka_bootstrap, topic)

    seen: dict[str, list[int]] = defaultdict(list)
    first = consumer(infra.kafka_bootstrap, topic, group)
    await first.start()
    try:
        handled_first = await consume_and_commit(first, 4_000, seen)
    finally:
        await first.stop()

    second = consumer(infra.kafka_bootstrap, topic, group)
    await second.start()
    try:
        handled_second = await consume_and_commit(second, MESSAGES - handled_first, seen)
        extra = await second.getmany(timeout_ms=1500)
        assert sum(len(r) for r in extra.values()) == 0, "the restarted consumer read past the end"
        partitions = [TopicPartition(topic, p) for p in range(3)]
        ends = await second.end_offsets(partitions)
        for tp in partitions:
            assert await second.committed(tp) == ends[tp]
    finally:
        await second.stop()

    values = sorted(v for vs in seen.values() for v in vs)
    assert values == list(range(MESSAGES)), "every message exactly once across the restart"
    assert handled_first + handled_second == MESSAGES
    for key, vs in seen.items():
        assert vs == sorted(vs), f"order broken for {key}"
    assert len(seen) == KEYS
