"""The consumer's shared transactions shrink when they run long and grow back when they are quick."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from homework_shared.consumer import Batching, ConsumerMetrics, EventConsumer, Subscription


def _consumer(group_size: int = 20) -> EventConsumer:
    # Neither the broker nor the client connects: only the group-size logic is exercised.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)

    async def apply(*_: Any) -> None:
        return None

    return EventConsumer(
        broker=KafkaBroker("127.0.0.1:1"),
        client=client,
        db=client["unit"],
        subscription=Subscription(("t",), "g", "t.dlq"),
        apply=apply,
        metrics=ConsumerMetrics(CollectorRegistry()),
        batching=Batching(batch_size=100, group_size=group_size, group_target_s=0.2),
    )


def test_a_long_transaction_halves_the_group_down_to_one() -> None:
    c = _consumer()
    assert c.group_limit == 20
    c.adapt_group(0.5, 20)
    assert c.group_limit == 10
    for _ in range(10):
        c.adapt_group(0.5, c.group_limit)
    assert c.group_limit == 1


def test_quick_full_transactions_grow_the_group_back_one_at_a_time_up_to_group_size() -> None:
    c = _consumer(group_size=4)
    c.group_limit = 1
    c.adapt_group(0.01, 1)
    assert c.group_limit == 2
    c.adapt_group(0.01, 1)  # a smaller group than the limit says nothing about the limit
    assert c.group_limit == 2
    for _ in range(10):
        c.adapt_group(0.01, c.group_limit)
    assert c.group_limit == 4


def test_a_transaction_near_the_target_keeps_the_group_as_it_is() -> None:
    c = _consumer()
    c.group_limit = 8
    c.adapt_group(0.15, 8)
    assert c.group_limit == 8
