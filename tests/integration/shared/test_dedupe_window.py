"""The dedupe window (PROCESSED_EVENT_TTL_S) is the TTL of processed_events on the real MongoDB server, and a
changed window is applied to the existing index at the next start instead of failing it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from homework_shared.consumer import PROCESSED, ConsumerMetrics, EventConsumer, Subscription
from tests.conftest import unique

Client = AsyncMongoClient[dict[str, Any]]


def consumer(mongo: Client, db_name: str, ttl: timedelta) -> EventConsumer:
    """A consumer on a broker that never starts: only its index is exercised."""

    async def apply(event: Any, session: Any) -> None:
        return None

    return EventConsumer(
        broker=KafkaBroker("127.0.0.1:9"),
        client=mongo,
        db=mongo[db_name],
        subscription=Subscription((unique("topic"),), unique("group"), unique("dlq")),
        apply=apply,
        metrics=ConsumerMetrics(CollectorRegistry()),
        processed_ttl=ttl,
    )


async def ttl_of(mongo: Client, db_name: str) -> int:
    indexes = {i["name"]: i async for i in await mongo[db_name][PROCESSED].list_indexes()}
    return int(indexes["processed_ttl"]["expireAfterSeconds"])


async def test_the_dedupe_window_is_the_ttl_and_a_changed_window_updates_the_index(mongo: Client) -> None:
    db_name = unique("dedupe")
    await consumer(mongo, db_name, timedelta(days=30)).ensure_indexes()
    assert await ttl_of(mongo, db_name) == 30 * 86_400
    await consumer(mongo, db_name, timedelta(days=10)).ensure_indexes()
    assert await ttl_of(mongo, db_name) == 10 * 86_400
    await consumer(mongo, db_name, timedelta(days=10)).ensure_indexes()  # unchanged: nothing to do
    assert await ttl_of(mongo, db_name) == 10 * 86_400
