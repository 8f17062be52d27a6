"""Consumer-group lag and membership, sampled periodically from Kafka, for metrics and ``/readyz``.

Per message the consumer only knows how far its fetch position is behind the partition's end
(``consumer_lag_events``); a platform team alerts on the group's *committed* offset instead, as
kafka-exporter and Burrow do: what a restart would re-read and what is really not yet applied.
Every ``interval`` seconds (not per message) this asks the group coordinator for the committed
offsets of the partitions this replica holds and the brokers for their end offsets, through the
subscriber's own aiokafka consumer (``committed``, ``end_offsets``: public aiokafka API), and sets

* ``kafka_consumer_group_lag_records{group, topic, partition}``: end offset minus committed offset
  (minus the earliest offset when nothing was committed yet); a partition this replica no longer
  holds is removed, so that the replica that holds it now is the only one reporting it;
* ``kafka_consumer_group_assigned_partitions{group}`` and ``kafka_consumer_group_member{group}``
  (1 once the group coordinator gave this replica a member id in a live generation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from homework_shared.consumer import EventConsumer
from homework_shared.tasks import stop_task

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 15.0
"""Between samples: a quarter of a typical 1 min scrape-and-alert resolution, a few small requests each."""


@dataclass
class GroupState:
    """What the last sample saw of one consumer group from this replica."""

    running: bool = False
    member: bool = False
    partitions: dict[str, int] = field(default_factory=dict)
    """Lag by ``topic/partition`` for the partitions this replica holds."""
    sampled_at: float | None = None
    error: str | None = None

    def report(self) -> dict[str, Any]:
        """The ``/readyz`` detail of the group."""
        return {
            "running": self.running,
            "member": self.member,
            "assigned_partitions": len(self.partitions),
            "lag": sum(self.partitions.values()),
            "lag_by_partition": dict(sorted(self.partitions.items())),
            "sampled_seconds_ago": None if self.sampled_at is None else round(time.monotonic() - self.sampled_at, 1),
            **({"error": self.error} if self.error else {}),
        }


class ConsumerLagSampler:
    """Samples every consumer group of a service; see the module docstring."""

    def __init__(
        self, consumers: list[EventConsumer], registry: CollectorRegistry, *, interval: float = SAMPLE_INTERVAL_S
    ) -> None:
        self.consumers = consumers
        self.interval = interval
        self.states: dict[str, GroupState] = {c.group: GroupState() for c in consumers}
        self.lag = Gauge(
            "kafka_consumer_group_lag_records",
            "Records not yet committed by the consumer group: end offset minus committed offset (sampled)",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.assigned = Gauge(
            "kafka_consumer_group_assigned_partitions",
            "Partitions this replica holds in its consumer group (sampled)",
            ["group"],
            registry=registry,
        )
        self.member = Gauge(
            "kafka_consumer_group_member",
            "1 while this replica is a member of its consumer group (sampled)",
            ["group"],
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="consumer-lag")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def sample(self) -> None:
        """Sample each group once; a failure is recorded on its state (and logged), never raised."""
        for consumer in self.consumers:
            state = self.states[consumer.group]
            try:
                await self._sample(consumer, state)
                state.error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next sample tries again; readiness shows the error
                state.error = f"{type(exc).__name__}: {exc}"[:300]
                log.info("sampling the lag of consumer group %s failed: %r", consumer.group, exc)

    async def _sample(self, consumer: EventConsumer, state: GroupState) -> None:
        group = consumer.group
        client = getattr(consumer.subscriber, "consumer", None)  # FastStream's aiokafka consumer, once started
        state.running = client is not None and getattr(consumer.subscriber, "running", True)
        if client is None:
            state.member = False
            self._set(group, state, {})
            return
        coordinator = getattr(client, "_coordinator", None)
        state.member = bool(getattr(coordinator, "member_id", "")) or bool(client.assignment())
        assigned: list[TopicPartition] = sorted(client.assignment())
        lags: dict[TopicPartition, int] = {}
        if assigned:
            ends = await client.end_offsets(assigned)
            starts = await client.beginning_offsets(assigned)
            for tp in assigned:
                committed = await client.committed(tp)
                base = committed if committed is not None else starts.get(tp, 0)
                lags[tp] = max(0, ends.get(tp, 0) - base)
        self._set(group, state, lags)
        state.sampled_at = time.monotonic()

    def _set(self, group: str, state: GroupState, lags: dict[TopicPartition, int]) -> None:
        now = {f"{tp.topic}/{tp.partition}": lag for tp, lag in lags.items()}
        for gone in set(state.partitions) - set(now):
            topic, _, partition = gone.rpartition("/")
            with contextlib.suppress(KeyError):
                self.lag.remove(group, topic, partition)
        for tp, lag in lags.items():
            self.lag.labels(group, tp.topic, str(tp.partition)).set(lag)
        state.partitions = now
        self.assigned.labels(group).set(len(now))
        self.member.labels(group).set(1 if state.member else 0)

    async def ready(self, group: str) -> bool:
        """Readiness of one group: its consumer runs. Lag and membership are reported, not required: a
        replica without partitions (more replicas than partitions) or behind on lag still serves HTTP."""
        consumer = next(c for c in self.consumers if c.group == group)
        return getattr(consumer.subscriber, "consumer", None) is not None

    def details(self) -> dict[str, Any]:
        """Every group's state, for ``/readyz``."""
        return {group: state.report() for group, state in self.states.items()}
