"""The consumer-lag sampler's arithmetic and bookkeeping, with a stand-in for the aiokafka consumer it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from homework_shared.consumer_lag import ConsumerLagSampler


@dataclass
class FakeKafkaConsumer:
    """What the sampler asks an aiokafka consumer: assignment, committed, beginning and end offsets."""

    assigned: set[TopicPartition]
    committed_at: dict[TopicPartition, int | None]
    ends: dict[TopicPartition, int]
    starts: dict[TopicPartition, int] = field(default_factory=dict)
    member_id: str = "member-1"

    @property
    def _coordinator(self) -> Any:
        return self

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_at.get(tp)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts.get(tp, 0) for tp in tps}


@dataclass
class FakeSubscriber:
    consumer: FakeKafkaConsumer | None
    running: bool = True


@dataclass
class FakeEventConsumer:
    subscriber: FakeSubscriber
    group: str = "reminder"


A0, A1 = TopicPartition("p.assignment.events", 0), TopicPartition("p.assignment.events", 1)


def sample_value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_lag_is_end_minus_committed_and_counts_from_the_start_when_nothing_was_committed() -> None:
    kafka = FakeKafkaConsumer({A0, A1}, {A0: 40, A1: None}, {A0: 45, A1: 12}, starts={A1: 2})
    registry = CollectorRegistry()
    sampler = ConsumerLagSampler([FakeEventConsumer(FakeSubscriber(kafka))], registry)  # type: ignore[list-item]
    await sampler.sample()
    lag = "kafka_consumer_group_lag_records"
    assert sample_value(registry, lag, group="reminder", topic="p.assignment.events", partition="0") == 5
    assert sample_value(registry, lag, group="reminder", topic="p.assignment.events", partition="1") == 10
    assert sample_value(registry, "kafka_consumer_group_assigned_partitions", group="reminder") == 2
    assert sample_value(registry, "kafka_consumer_group_member", group="reminder") == 1
    report = sampler.details()["reminder"]
    assert report["lag"] == 15
    assert report["lag_by_partition"] == {"p.assignment.events/0": 5, "p.assignment.events/1": 10}
    assert await sampler.ready("reminder")


async def test_a_partition_taken_away_stops_being_reported_by_this_replica() -> None:
    kafka = FakeKafkaConsumer({A0, A1}, {A0: 1, A1: 1}, {A0: 3, A1: 3})
    registry = CollectorRegistry()
    sampler = ConsumerLagSampler([FakeEventConsumer(FakeSubscriber(kafka))], registry)  # type: ignore[list-item]
    await sampler.sample()
    kafka.assigned = {A0}
    await sampler.sample()
    lag = "kafka_consumer_group_lag_records"
    assert sample_value(registry, lag, group="reminder", topic="p.assignment.events", partition="1") is None
    assert sample_value(registry, lag, group="reminder", topic="p.assignment.events", partition="0") == 2
    assert sample_value(registry, "kafka_consumer_group_assigned_partitions", group="reminder") == 1


async def test_a_consumer_not_started_is_not_ready_and_no_member() -> None:
    registry = CollectorRegistry()
    sampler = ConsumerLagSampler([FakeEventConsumer(FakeSubscriber(None))], registry)  # type: ignore[list-item]
    await sampler.sample()
    assert not await sampler.ready("reminder")
    assert sample_value(registry, "kafka_consumer_group_member", group="reminder") == 0
    assert sampler.details()["reminder"]["running"] is False


async def test_a_failed_sample_is_reported_not_raised() -> None:
    class Broken(FakeKafkaConsumer):
        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise ConnectionError("broker away")

    kafka = Broken({A0}, {A0: 1}, {A0: 3})
    sampler = ConsumerLagSampler([FakeEventConsumer(FakeSubscriber(kafka))], CollectorRegistry())  # type: ignore[list-item]
    await sampler.sample()
    assert sampler.details()["reminder"]["error"] == "ConnectionError: broker away"
