"""Figures read only when the platform is quiet: every consumer group's lag zero, read twice seconds apart.

A read model's figures are only final once every event has been applied. A count that matches
the plan is not enough: a duplicate still on its way (the duplicator's copy, a redelivery) would
be applied after such a read and change nothing the test looks at. So ``read_when_quiet`` reads
the figures only when, measured with the Kafka admin client, every consumer group that consumes
the deployment's topics has committed up to the end offset of every partition of those topics
(lag zero), no service has an unsent outbox record, and it reads them again after the lag has
stayed zero, with the topics' end offsets unchanged, for ``quiet_s`` seconds. Both reads must
agree: figures that change while there is nothing left to consume fail the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from tests.e2e.system import Deployment

T = TypeVar("T")

SERVICES = ("assignment", "reminder", "insights")


@dataclass(frozen=True)
class Lag:
    """What the broker says about one deployment's topics at one moment."""

    per_group: dict[str, int]
    """Records not yet committed, per consumer group consuming the deployment's topics."""
    consumed: dict[str, frozenset[str]]
    """The deployment's topics each of those groups has committed offsets on."""
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    """The end offset of every partition of the deployment's topics."""
    outbox_pending: dict[str, int] = field(default_factory=dict)
    """Unsent outbox records per service database."""

    def zero(self, groups: Collection[str]) -> bool:
        """True when each of ``groups`` (and every other group found) is caught up and no outbox waits."""
        return (
            set(groups) <= set(self.per_group)
            and not any(self.per_group.values())
            and not any(self.outbox_pending.values())
        )


async def consumer_lag(
    bootstrap: str, prefix: str
) -> tuple[dict[str, int], dict[str, frozenset[str]], dict[TopicPartition, int]]:
    """Per consumer group with offsets on ``prefix``'s topics: its lag over every partition of those topics.

    A partition of a consumed topic with no committed offset counts from 0 (the consumers start at
    the earliest record). Returns (lag per group, topics per group, end offset per partition).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # every topic's partitions (aiokafka has no public call)
        topics = sorted(t for t in consumer._client.cluster.topics() if t.startswith(f"{prefix}."))
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        assert {tp.topic for tp in parts} == set(topics), f"no partitions known for some of {topics}"
        ends: dict[TopicPartition, int] = await consumer.end_offsets(parts) if parts else {}
        lag: dict[str, int] = {}
        consumed: dict[str, frozenset[str]] = {}
        for group_id, *_ in await admin.list_consumer_groups():
            committed = {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(group_id)).items()
                if tp.topic in topics
            }
            if not committed:
                continue
            own = frozenset(tp.topic for tp in committed)
            consumed[group_id] = own
            lag[group_id] = sum(ends[tp] - max(committed.get(tp, 0), 0) for tp in parts if tp.topic in own)
        return lag, consumed, ends
    finally:
        await consumer.stop()
        await admin.close()


async def outbox_pending(mongodb_uri: str, d: Deployment) -> dict[str, int]:
    """Outbox records not yet sent, per service database of the deployment."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        return {
            name: await client[d.database(name)]["outbox"].count_documents({"state": "pending"})
            for name in SERVICES
            if name in d.processes
        }
    finally:
        await client.close()


async def lag_of(d: Deployment) -> Lag:
    """The deployment's consumer lag, end offsets and outbox backlog, now."""
    per_group, consumed, ends = await consumer_lag(d.infra.kafka_bootstrap, d.prefix)
    return Lag(per_group, consumed, ends, await outbox_pending(d.infra.mongodb_uri, d))


async def read_when_quiet(
    d: Deployment,
    read: Callable[[], Awaitable[T]],
    *,
    groups: Collection[str] = ("reminder", "insights"),
    quiet_s: float = 3.0,
    interval: float = 0.5,
    timeout: float = 180.0,
) -> T:
    """``read()`` once every group's lag is zero, and again after it stayed zero for ``quiet_s``; both must agree.

    ``groups`` must be among the groups found (so a group that has not committed yet is waited
    for, not overlooked). While the lag is not zero, or the topics' end offsets move between the
    two reads, it starts over; after ``timeout`` it fails with the last lag it saw.
    """
    deadline = time.monotonic() + timeout
    last: Lag | None = None
    while time.monotonic() < deadline:
        first = last = await lag_of(d)
        if not first.zero(groups):
            await asyncio.sleep(interval)
            continue
        figures = await read()
        quiet_until = time.monotonic() + quiet_s
        still = True
        while still and time.monotonic() < quiet_until:
            await asyncio.sleep(interval)
            last = await lag_of(d)
            still = last.zero(groups) and last.ends == first.ends
        if not still:
            continue
        again = await read()
        last = await lag_of(d)
        if not (last.zero(groups) and last.ends == first.ends):
            continue
        assert again == figures, (
            f"the figures changed while no consumer group had anything left to consume:\nfirst {figures}\nthen  {again}"
        )
        return again
    raise AssertionError(
        f"the platform did not fall quiet within {timeout}s; last: lag {last and last.per_group}, "
        f"outboxes {last and last.outbox_pending}"
    )


def figures_when_quiet(d: Deployment, read: Callable[[], Awaitable[T]], **options: Any) -> T:
    """``read_when_quiet`` from synchronous test code."""
    return asyncio.run(read_when_quiet(d, read, **options))
