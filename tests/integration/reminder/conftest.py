"""The reminder service in-process against the real Kafka broker and MongoDB server, with a manual clock.

Each test gets its own topics (``TOPIC_PREFIX``) and database, so tests never see each other's
events or data. Tests drive the service the way the assignment service would: by putting contract
events on the assignment topic, keyed by client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from homework_reminder.app import create
from homework_reminder.config import ReminderSettings
from homework_reminder.store import Store
from homework_shared.auth.mint import mint_token
from homework_shared.clock import Clock, ManualClock
from homework_shared.events import (
    AssignmentCreated,
    Channel,
    Envelope,
    HomeworkEvent,
    HomeworkKind,
    RecurringSchedule,
    ReminderWish,
    Topics,
    decode,
    encode,
    envelope,
)
from homework_shared.service import Runtime
from tests.conftest import report_if_slow, unique, wait_for
from tests.infra import Infra

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
"""Friday 2026-05-01, 10:00 in Berlin (CEST, UTC+2)."""


def bearer(role: str, sub: str, practice: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(sub=sub, role=role, practice_id=practice)}"}


def daily_at_20_berlin(count: int = 5, window: int = 120) -> RecurringSchedule:
    """Every day at 20:00 Berlin time (18:00 UTC in May), open for ``window`` minutes."""
    return RecurringSchedule(
        timezone="Europe/Berlin",
        rrule="FREQ=DAILY",
        starts_at=datetime(2026, 5, 1, 20, 0),
        count=count,
        window_minutes=window,
    )


OPENS = ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.PUSH])
HOUR_BEFORE_CLOSE = ReminderWish(anchor="closes", offset_minutes=-60, channels=[Channel.PUSH])


@dataclass
class Deployment:
    """One isolated deployment: its topics, database, clock, and the replicas started on them."""

    infra: Infra
    prefix: str
    database: str
    clock: ManualClock
    practice: str
    client_id: str
    apps: list[FastAPI] = field(default_factory=list)
    _stacks: dict[int, contextlib.AsyncExitStack] = field(default_factory=dict)
    _producer: AIOKafkaProducer | None = None

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.prefix)

    @property
    def dead_letter_topic(self) -> str:
        return self.topics.dead_letter(f"{self.prefix}-reminder")

    def settings(self, **overrides: Any) -> ReminderSettings:
        values: dict[str, Any] = {
            "environment": "development",
            "kafka_bootstrap_servers": self.infra.kafka_bootstrap,
            "mongodb_uri": self.infra.mongodb_uri,
            "mongodb_database": self.database,
            "topic_prefix": self.prefix,
            "consumer_group": f"{self.prefix}-reminder",
            "topic_partitions": 2,
            "missed_grace_s": 0,
            "poll_interval_s": 0.1,
            "log_format": "console",
        }
        values.update(overrides)
        return ReminderSettings(**values)

    async def start(self, clock: Clock | None = None, **overrides: Any) -> FastAPI:
        """Start a replica (lifespan entered) and wait until it is connected to Kafka."""
        app = create(self.settings(**overrides), clock=clock or self.clock)
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(app.router.lifespan_context(app))
        self._stacks[id(app)] = stack
        rt: Runtime = app.state.runtime
        await wait_for(lambda: _true(rt.kafka_ready.is_set()), message="Kafka connected")
        self.apps.append(app)
        return app

    async def stop(self, app: FastAPI) -> None:
        """Stop one replica gracefully (its lifespan's shutdown: loops, leases, outbox, Kafka, MongoDB)."""
        self.apps.remove(app)
        watchdog = asyncio.create_task(report_if_slow(10.0))
        try:
            await self._stacks.pop(id(app)).aclose()
        finally:
            watchdog.cancel()

    def store(self, app: FastAPI | None = None) -> Store:
        target = app or self.apps[0]
        return Store(target.state.runtime.db)

    def http(self, app: FastAPI | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or self.apps[0]), base_url="http://reminder")

    async def publish(self, *events: HomeworkEvent) -> list[str]:
        """Put events on the assignment topic the way the assignment service does; returns their ids."""
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.infra.kafka_bootstrap, acks="all")
            await self._producer.start()
        ids = []
        for event in events:
            record = encode(envelope(event, source="/homework/assignment", time=self.clock.now()))
            await self._producer.send_and_wait(
                self.topics.assignment, record.value, key=record.key, headers=record.headers
            )
            ids.append(record.header_dict()["ce_id"])
        return ids

    async def publish_raw(self, value: bytes, headers: list[tuple[str, bytes]], key: bytes) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.infra.kafka_bootstrap, acks="all")
            await self._producer.start()
        await self._producer.send_and_wait(self.topics.assignment, value, key=key, headers=headers)

    async def read(self, topic: str, *, until: Callable[[list[Any]], bool], timeout: float = 30) -> list[Any]:
        """Read ``topic`` from the start until ``until(records)`` holds (or fail after ``timeout``)."""
        reader = AIOKafkaConsumer(
            topic, bootstrap_servers=self.infra.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await reader.start()
        records: list[Any] = []
        try:
            async with asyncio.timeout(timeout):
                while not until(records):
                    batch = await reader.getmany(timeout_ms=300)
                    for part in batch.values():
                        records.extend(part)
        except TimeoutError:
            raise AssertionError(f"timed out reading {topic}; got {len(records)} records") from None
        finally:
            await reader.stop()
        return records

    async def reminder_events(
        self, until: Callable[[list[Envelope[Any]]], bool], timeout: float = 30
    ) -> list[Envelope[Any]]:
        """The reminder stream's events, decoded, once ``until`` holds for them."""
        records = await self.read(
            self.topics.reminder, until=lambda rs: until([decode(r.headers, r.value) for r in rs]), timeout=timeout
        )
        return [decode(r.headers, r.value) for r in records]

    def created(self, assignment_id: str | None = None, **overrides: Any) -> AssignmentCreated:
        """An ``AssignmentCreated`` for this deployment's client: daily at 20:00 Berlin, reminders at opening."""
        values: dict[str, Any] = {
            "client_id": self.client_id,
            "practice_id": self.practice,
            "assignment_id": assignment_id or unique("asg"),
            "therapist_id": "therapist-1",
            "kind": HomeworkKind.MOOD_LOG,
            "title": "Evening mood rating",
            "schedule": daily_at_20_berlin(),
            "reminders": [OPENS],
            "version": 1,
            "created_at": self.clock.now(),
        }
        values.update(overrides)
        return AssignmentCreated(**values)

    async def applied_so_far(self, store: Store) -> None:
        """Publish a marker assignment and wait until it is stored: every event before it has been applied."""
        marker = self.created(assignment_id=unique("marker"))
        await self.publish(marker)

        async def stored() -> bool:
            return await store.plans.find_one({"_id": marker.assignment_id}) is not None

        await wait_for(stored, message="marker assignment applied")

    async def close(self) -> None:
        for app in list(reversed(self.apps)):
            await self.stop(app)
        if self._producer is not None:
            await self._producer.stop()


@pytest.fixture
async def deployment(infra: Infra) -> AsyncIterator[Deployment]:
    d = Deployment(
        infra=infra,
        prefix=unique("rem"),
        database=unique("reminder"),
        clock=ManualClock(T0),
        practice=unique("practice"),
        client_id=unique("client"),
    )
    try:
        yield d
    finally:
        await d.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
        if not os.environ.get("KEEP_TEST_DB"):
            with contextlib.suppress(Exception):
                await client.drop_database(d.database)
        await client.close()


async def _true(value: bool) -> bool:
    return value


def at(hours: float) -> timedelta:
    return timedelta(hours=hours)


def of_type(events: list[Envelope[Any]], cls: type) -> list[Envelope[Any]]:
    return [e for e in events if isinstance(e.data, cls)]


async def state_is(collection: Any, doc_id: str, state: str) -> bool:
    """Whether the document ``doc_id`` exists with ``state``."""
    doc = await collection.find_one({"_id": doc_id}, {"state": 1})
    return doc is not None and doc["state"] == state


async def assert_pending_gauge_exact(store: Store) -> None:
    """The sharded pending counter (what ``reminders_pending`` shows) equals a count of the waiting reminders."""
    actual = await store.reminders.count_documents({"state": {"$in": ["pending", "claimed"]}})
    assert await store.count_waiting() == actual


def counts(collection: Any, query: dict[str, Any], expected: int) -> Callable[[], Awaitable[bool]]:
    """A ``wait_for`` check: ``collection`` has exactly ``expected`` documents matching ``query``."""

    async def check() -> bool:
        return bool(await collection.count_documents(query) == expected)

    return check
