"""The consumer commits what it applied with write concern majority, whatever the cluster's default, before it
commits the Kafka offset: a w:1 commit that a failover rolls back would otherwise be an event lost for good."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring

from homework_shared.consumer import ConsumerMetrics, EventConsumer, Subscription
from homework_shared.events import AssignmentPaused, envelope
from tests.conftest import unique
from tests.infra import Infra


class Commits(monitoring.CommandListener):
    """The write concern of every commitTransaction the client sends."""

    def __init__(self) -> None:
        self.write_concerns: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "commitTransaction":
            self.write_concerns.append(event.command.get("writeConcern"))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_an_applied_event_is_committed_with_write_concern_majority(infra: Infra) -> None:
    commits = Commits()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, event_listeners=[commits])
    db = client[unique("wc")]

    async def apply(env: Any, session: Any) -> None:
        await db.applied.insert_one({"_id": env.id}, session=session)

    consumer = EventConsumer(
        broker=KafkaBroker("127.0.0.1:9"),  # never started: the apply path alone is exercised
        client=client,
        db=db,
        subscription=Subscription(topics=(unique("topic"),), group=unique("group"), dead_letter_topic=unique("dlq")),
        apply=apply,
        metrics=ConsumerMetrics(CollectorRegistry()),
    )
    paused = AssignmentPaused(client_id="c1", practice_id="p", assignment_id="a1", paused_at=datetime.now(UTC))
    try:
        assert await consumer.apply_once(envelope(paused, source="/t")) is True
        assert await db.applied.count_documents({}) == 1
        assert commits.write_concerns, "no commitTransaction seen"
        concerns = commits.write_concerns
        assert all(wc is not None and wc.get("w") == "majority" for wc in concerns), concerns
    finally:
        await client.drop_database(db.name)
        await client.close()
