"""One assignment service per test session, in-process, against the real Kafka broker and MongoDB server.

Each test gets its own practice and client ids (so tests never see each other's data) and the
service's ManualClock set back to ``T0``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from homework_assignment.app import create
from homework_assignment.config import AssignmentSettings
from homework_shared.auth.mint import mint_token
from homework_shared.clock import ManualClock
from homework_shared.events import Envelope, Topics, decode
from homework_shared.service import Runtime
from tests.conftest import bounded_shutdown, unique, wait_for
from tests.infra import Infra

T0 = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
"""Thursday 2026-03-20 09:00 in Berlin; the default schedule's first occurrence opens the next evening."""


def daily_mood_log(client_id: str, **overrides: Any) -> dict[str, Any]:
    """A request body: rate your mood every evening at 20:00 Berlin time for two weeks, two hours to do it."""
    body: dict[str, Any] = {
        "client_id": client_id,
        "kind": "mood_log",
        "title": "Evening mood rating",
        "instructions": "Rate your mood from 0 to 10 and note what happened.",
        "rationale": "Seeing patterns in mood helps us plan the next steps.",
        "schedule": {
            "type": "recurring",
            "timezone": "Europe/Berlin",
            "rrule": "FREQ=DAILY",
            "starts_at": "2026-03-21T20:00:00",
            "count": 14,
            "window_minutes": 120,
        },
        "target": {"times": 5, "per_days": 7},
        "reminders": [{"anchor": "opens", "offset_minutes": 0, "channels": ["push"]}],
    }
    body.update(overrides)
    return body


def evening(assignment: dict[str, Any], day: int, month: int = 3) -> str:
    """The id of the default schedule's occurrence at 20:00 local on ``day`` (of March 2026)."""
    return f"{assignment['id']}@2026-{month:02d}-{day:02d}T20:00"


async def read_events(
    settings: AssignmentSettings, client_id: str, count: int, timeout: float = 20.0
) -> list[Envelope[Any]]:
    """Read the assignment topic from the start with a raw consumer; the first ``count`` events keyed ``client_id``."""
    consumer = AIOKafkaConsumer(
        Topics(prefix=settings.topic_prefix).assignment,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Envelope[Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found += [decode(r.headers, r.value) for r in records if r.key == client_id.encode()]
    except TimeoutError:
        raise AssertionError(f"only {len(found)} of {count} events arrived: {[e.type for e in found]}") from None
    finally:
        await consumer.stop()
    return found


async def all_events(service: Service, timeout: float = 20.0) -> list[Envelope[Any]]:
    """Every event about the test's client on the topic, in order, once the outbox has sent everything."""
    await wait_for(lambda: _relayed(service), timeout=timeout, message="outbox relayed")
    return await topic_events(service.settings, service.client_id, timeout)


async def topic_events(settings: AssignmentSettings, client_id: str, timeout: float = 20.0) -> list[Envelope[Any]]:
    """Every event keyed ``client_id`` on the assignment topic of ``settings``, up to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    topic = Topics(prefix=settings.topic_prefix).assignment
    found: list[Envelope[Any]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(*partitions, timeout_ms=200)
                for records in batch.values():
                    found += [decode(r.headers, r.value) for r in records if r.key == client_id.encode()]
    finally:
        await consumer.stop()
    return found


async def _relayed(service: Service) -> bool:
    return await service.runtime.relay.pending() == 0


def bearer(role: str, sub: str, practice: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(sub=sub, role=role, practice_id=practice)}"}


@dataclass
class Service:
    """The running service and the two callers of one test: a therapist and their client."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: ManualClock
    settings: AssignmentSettings
    practice: str = ""
    client_id: str = ""
    therapist: dict[str, str] = field(default_factory=dict)
    client: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        rt: Runtime = self.app.state.runtime
        return rt

    def at(self, *args: int) -> datetime:
        """Set the service's clock to a UTC instant; returns it."""
        instant = datetime(*args, tzinfo=UTC)  # type: ignore[misc]
        self.clock.set(instant)
        return instant

    async def complete(
        self, assignment: dict[str, Any], occurrence_id: str, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        """POST a completion (default: done, mood 6) of ``occurrence_id`` as the client."""
        payload = {"data": {"mood": 6}, **body}
        return await self.http.post(
            f"/v1/assignments/{assignment['id']}/occurrences/{occurrence_id}/completion",
            json=payload,
            headers=headers or self.client,
        )

    async def skip(
        self, assignment: dict[str, Any], occurrence_id: str, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        """POST a skip (default: forgot) of ``occurrence_id`` as the client."""
        payload = {"barrier": "forgot", **body}
        return await self.http.post(
            f"/v1/assignments/{assignment['id']}/occurrences/{occurrence_id}/skip",
            json=payload,
            headers=headers or self.client,
        )

    async def action(self, assignment: dict[str, Any], action: str) -> httpx.Response:
        """POST pause, resume, cancel or end as the therapist."""
        return await self.http.post(f"/v1/assignments/{assignment['id']}/{action}", headers=self.therapist)

    async def events(self, count: int, timeout: float = 20.0) -> list[Envelope[Any]]:
        """The first ``count`` events about this test's client on the assignment topic, decoded, in order."""
        return await read_events(self.settings, self.client_id, count, timeout)

    async def create(self, **overrides: Any) -> dict[str, Any]:
        """Create the default assignment (with ``overrides``) as the therapist; returns its JSON."""
        response = await self.http.post(
            "/v1/assignments", json=daily_mood_log(self.client_id, **overrides), headers=self.therapist
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def settings_for(kafka: str, mongodb: str, **overrides: Any) -> AssignmentSettings:
    values: dict[str, Any] = {
        "environment": "development",
        "kafka_bootstrap_servers": kafka,
        "mongodb_uri": mongodb,
        "mongodb_database": unique("assignment"),
        "topic_prefix": unique("outage"),
        "topic_partitions": 1,
        "mongo_timeout_ms": 500,
        **overrides,
    }
    return AssignmentSettings(**values)


@asynccontextmanager
async def service(settings: AssignmentSettings) -> AsyncIterator[Service]:
    """A service of its own, with a practice, a client and a therapist."""
    app = create(settings, clock=ManualClock(T0))
    transport = httpx.ASGITransport(app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        svc = Service(app, http, app.state.runtime.clock, settings)
        svc.practice, svc.client_id = unique("practice"), unique("client")
        svc.therapist = bearer("therapist", "t1", svc.practice)
        svc.client = bearer("client", svc.client_id, svc.practice)
        yield svc


@pytest.fixture(scope="session")
async def running(infra: Infra) -> AsyncIterator[Service]:
    settings = AssignmentSettings(
        environment="development",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("assignment"),
        topic_prefix=unique("asg"),
        topic_partitions=2,
        end_sweep_interval_s=0.1,
        include_free_text=True,
    )
    clock = ManualClock(T0)
    app = create(settings, clock=clock)
    transport = httpx.ASGITransport(app)
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(app.router.lifespan_context(app))
    http = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://test"))
    try:
        service = Service(app, http, clock, settings)
        await wait_for(lambda: _ready(service), timeout=60, message="Kafka connected")
        yield service
    finally:
        async with bounded_shutdown("the session's assignment service"):
            await stack.aclose()


async def _ready(service: Service) -> bool:
    return service.runtime.kafka_ready.is_set()


@pytest.fixture
def svc(running: Service) -> Service:
    """The session's service with a fresh practice, client and therapist, and the clock at ``T0``."""
    running.clock.set(T0)
    running.practice = unique("practice")
    running.client_id = unique("client")
    running.therapist = bearer("therapist", unique("therapist"), running.practice)
    running.client = bearer("client", running.client_id, running.practice)
    return running
