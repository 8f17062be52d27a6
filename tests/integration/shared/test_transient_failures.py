"""Transient failures (write conflicts, timeouts, connection loss) are retried for a bounded time, then the record
is parked as ``transient_exhausted`` and its partition moves on; one that recovers is applied once, never parked."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from homework_shared.after_commit import now_or_after_commit
from homework_shared.consumer import Batching, ConsumerMetrics, EventConsumer, RetryPolicy, Subscription
from homework_shared.dlq_replay import ReplaySettings, read_parked, replay
from homework_shared.events import AssignmentPaused, Envelope, Topics, encode, envelope
from homework_shared.kafka import ensure_topics, make_broker
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.shared.topics import service_topics

BUDGET_S = 2.0


def paused(assignment_id: str) -> AssignmentPaused:
    return AssignmentPaused(
        client_id="client-1", practice_id="practice-1", assignment_id=assignment_id, paused_at=datetime.now(UTC)
    )


@dataclass
class Rig:
    infra: Infra
    topics: Topics
    group: str
    db: AsyncDatabase[dict[str, Any]]
    client: AsyncMongoClient[dict[str, Any]]
    consumer: EventConsumer
    producer: AIOKafkaProducer
    applied: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    """Assignment id -> how many more times its apply raises a transient error."""
    attempts: dict[str, int] = field(default_factory=dict)

    async def send(self, assignment_id: str) -> str:
        rec = encode(envelope(paused(assignment_id), source="/t"))
        await self.producer.send_and_wait(self.topics.assignment, rec.value, key=rec.key, headers=rec.headers)
        return rec.header_dict()["ce_id"]

    async def dead_letters(self) -> list[Any]:
        """Every record of the dead-letter topic (read to its end offset)."""
        return await read_parked(self.infra.kafka_bootstrap, self.topics.dead_letter(self.group))


@pytest.fixture(params=[1, 20], ids=["single", "batched"])
async def rig(infra: Infra, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    topics = Topics(prefix=unique("transient"))
    group = unique("g")
    await ensure_topics(
        infra.kafka_bootstrap,
        service_topics(topics, consumer_group=group),
        partitions=1,  # one partition: "the next record" is the next record of the stuck one's partition
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[unique("db")]
    await db.hot.insert_one({"_id": "contended", "n": 0})
    holder: dict[str, Rig] = {}

    async def apply(env: Envelope[Any], session: AsyncClientSession) -> None:
        r = holder["rig"]
        aid = env.data.assignment_id
        r.attempts[aid] = r.attempts.get(aid, 0) + 1
        if aid.startswith("stuck"):
            # A real write conflict: another transaction holds an uncommitted write to this document.
            await db.hot.update_one({"_id": "contended"}, {"$inc": {"n": 1}}, session=session)
        if r.failures.get(aid, 0) > 0:
            r.failures[aid] -= 1
            raise OperationFailure(
                "Write conflict during plan execution", code=112, details={"errorLabels": ["TransientTransactionError"]}
            )
        await db.applied.insert_one({"_id": env.id, "assignment_id": aid}, session=session)
        now_or_after_commit(lambda: r.applied.append(aid))

    broker = make_broker(infra.kafka_bootstrap, client_id="transient-test")
    consumer = EventConsumer(
        broker=broker,
        client=client,
        db=db,
        subscription=Subscription((topics.assignment,), group, topics.dead_letter(group)),
        apply=apply,
        metrics=ConsumerMetrics(CollectorRegistry()),
        retry=RetryPolicy(transient_retry_s=BUDGET_S),
        batching=Batching(batch_size=request.param),
    )
    await consumer.ensure_indexes()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    r = Rig(infra, topics, group, db, client, consumer, producer)
    holder["rig"] = r
    await broker.start()
    try:
        yield r
    finally:
        await broker.stop()
        await producer.stop()
        await client.drop_database(db.name)
        await client.close()


async def test_a_record_failing_transiently_past_the_budget_is_parked_the_next_applied_and_a_replay_applies_it(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="homework_shared.consumer")
    async with rig.client.start_session() as blocker, await blocker.start_transaction():
        # Hold an uncommitted write on the contended document for as long as the test needs it.
        await rig.db.hot.update_one({"_id": "contended"}, {"$inc": {"n": 100}}, session=blocker)
        await rig.send("before")
        stuck_id = await rig.send("stuck")
        started = time.monotonic()
        await rig.send("after")
        await wait_for(
            lambda: _true("after" in rig.applied), timeout=BUDGET_S + 30, message="the record after the stuck one"
        )
        waited = time.monotonic() - started
        await blocker.abort_transaction()
    assert rig.applied == ["before", "after"]
    assert waited >= BUDGET_S, "parked only once the retry budget was spent"
    [parked] = await rig.dead_letters()
    headers = {k: v.decode() for k, v in parked.headers}
    assert headers["dlq_reason"] == "transient_exhausted"
    assert headers["ce_id"] == stuck_id
    assert "WriteConflict" in headers["dlq_error"], "the server's own write conflict"
    metrics = rig.consumer.metrics
    assert metrics.parked.labels("transient_exhausted")._value.get() == 1
    assert metrics.transient_retries._value.get() >= 2, "retried before giving up"
    assert any(r.levelno == logging.ERROR and stuck_id in r.getMessage() for r in caplog.records)
    assert await rig.db.applied.count_documents({"assignment_id": "stuck"}) == 0

    # The contention is over: the replay puts the record back and it is applied, once.
    settings = ReplaySettings(kafka_bootstrap_servers=rig.infra.kafka_bootstrap, topic_prefix=rig.topics.prefix)
    [outcome] = await replay(settings, rig.group)
    assert (outcome.action, outcome.reason) == ("replayed", "transient_exhausted")
    await wait_for(lambda: _true("stuck" in rig.applied), timeout=30, message="the replayed record applied")
    assert await rig.db.applied.count_documents({"assignment_id": "stuck"}) == 1


async def test_a_record_failing_transiently_twice_then_succeeding_is_applied_once_and_not_parked(rig: Rig) -> None:
    rig.failures["flaky"] = 2
    flaky_id = await rig.send("flaky")
    await rig.send("marker")
    await wait_for(lambda: _true("marker" in rig.applied), timeout=30, message="the marker after the flaky record")
    assert rig.applied == ["flaky", "marker"]
    assert rig.failures["flaky"] == 0, "it did fail twice"
    assert await rig.db.applied.count_documents({"_id": flaky_id}) == 1
    assert rig.attempts["flaky"] == 3, "two failures, then the attempt that applied it"
    # Batched, the first failure may be that of the shared transaction, which is then dropped and its records
    # applied alone: only the retries of a record alone are counted.
    assert rig.consumer.metrics.transient_retries._value.get() >= 1
    assert rig.consumer.metrics.parked.labels("transient_exhausted")._value.get() == 0
    assert await rig.dead_letters() == []


async def _true(value: bool) -> bool:
    return value
