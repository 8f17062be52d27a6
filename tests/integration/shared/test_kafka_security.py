"""SASL settings reach every Kafka client: topics, producer and consumer work with the right password only.

Runs against its own local broker, which has a SASL_PLAINTEXT/PLAIN listener beside PLAINTEXT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from homework_shared.kafka import ensure_topics, kafka_security, make_broker
from homework_shared.settings import KafkaConnectionSettings
from tests.conftest import unique
from tests.infra import devstack


@pytest.fixture(scope="module")
def sasl_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    root: Path = tmp_path_factory.mktemp("sasl") / "stack"
    stack = devstack.up(root)
    try:
        yield stack
    finally:
        devstack.down(root)


def sasl_settings(stack: devstack.Stack, password: str) -> KafkaConnectionSettings:
    return KafkaConnectionSettings(
        kafka_bootstrap_servers=stack.kafka_sasl_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=devstack.SASL_USER,
        kafka_sasl_password=password,
    )


async def test_topics_producer_and_consumer_authenticate_with_sasl(sasl_stack: devstack.Stack) -> None:
    settings = sasl_settings(sasl_stack, devstack.SASL_PASSWORD)
    topic = unique("secure")
    created = await ensure_topics(
        settings.kafka_bootstrap_servers,
        [topic],
        partitions=1,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
        client_options=settings.kafka_client_options(),
    )
    assert created == [topic]
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="sasl-test", security=kafka_security(settings))
    await broker.start()
    try:
        await broker.publish(b"hello", topic, key=b"k")
    finally:
        await broker.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        **settings.kafka_client_options(),
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    assert record.value == b"hello"


async def test_a_wrong_password_is_refused(sasl_stack: devstack.Stack) -> None:
    settings = sasl_settings(sasl_stack, "not-the-password")
    with pytest.raises(KafkaError):
        await asyncio.wait_for(
            ensure_topics(
                settings.kafka_bootstrap_servers,
                [unique("secure")],
                partitions=1,
                replication_factor=1,
                min_insync_replicas=1,
                retention_ms=3_600_000,
                client_options=settings.kafka_client_options(),
            ),
            timeout=30,
        )


def test_sasl_without_credentials_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        KafkaConnectionSettings(kafka_bootstrap_servers="x:9092", kafka_security_protocol="SASL_SSL")
