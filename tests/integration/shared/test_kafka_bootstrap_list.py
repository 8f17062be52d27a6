"""A comma-separated ``KAFKA_BOOTSTRAP_SERVERS`` (every real cluster has several brokers) reaches the services'
broker as several addresses: it connects through whichever answers."""

from __future__ import annotations

import asyncio
import socket

from homework_shared.kafka import bootstrap_addresses, ensure_topics, make_broker
from tests.conftest import unique
from tests.infra import Infra


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_bootstrap_list_is_split_into_addresses() -> None:
    assert bootstrap_addresses("k1:9092, k2:9092,,k3:9092 ") == ["k1:9092", "k2:9092", "k3:9092"]
    assert bootstrap_addresses("localhost:9092") == ["localhost:9092"]


async def test_a_broker_given_several_addresses_connects_through_one_that_answers(infra: Infra) -> None:
    topic = unique("bootstrap")
    await ensure_topics(
        infra.kafka_bootstrap,
        [topic],
        partitions=1,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    broker = make_broker(f"127.0.0.1:{closed_port()},{infra.kafka_bootstrap}", client_id=unique("bootstrap"))
    try:
        await asyncio.wait_for(broker.start(), timeout=60)
        await broker.publish(b"hello", topic, key=b"k")
    finally:
        await broker.stop()
