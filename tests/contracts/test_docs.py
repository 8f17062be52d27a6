"""docs/events.md is what the models say, and its example subscriber really decodes events from Kafka."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from homework_shared.events import EVENT_CLASSES, Envelope, Topics, encode, envelope
from homework_shared.events.examples import EXAMPLES
from homework_shared.events.reference_page import render
from tests.conftest import unique
from tests.infra import Infra

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_the_committed_event_catalogue_matches_the_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert (ROOT / "docs" / "events.md").read_text() == render(), "run `make docs`"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_subscriber", ROOT / "docs" / "examples" / "subscriber.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
async def test_the_example_subscriber_decodes_every_event_type_from_the_real_broker(infra: Infra) -> None:
    topics = Topics(prefix=unique("docs"))
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in topics.all_streams()])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for cls in EVENT_CLASSES:
            rec = encode(envelope(EXAMPLES[cls], source="/homework/test"))
            await producer.send_and_wait(topics.stream(cls.stream), rec.value, key=rec.key, headers=rec.headers)
        await producer.send_and_wait(topics.assignment, b"garbage", key=b"x", headers=[("ce_type", b"nope")])
    finally:
        await producer.stop()

    seen: list[Envelope[Any]] = []

    async def collect(env: Envelope[Any]) -> None:
        seen.append(env)

    example = load_example()
    await asyncio.wait_for(
        example.consume(
            infra.kafka_bootstrap, unique("example"), collect, topics=topics, stop_after=len(EVENT_CLASSES) + 1
        ),
        timeout=60,
    )
    assert sorted(env.type for env in seen) == sorted(cls.event_type for cls in EVENT_CLASSES)
    for env in seen:
        assert type(env.data).event_type == env.type
        assert env.data == EXAMPLES[type(env.data)]
