"""An in-process insights service on the real Kafka broker and MongoDB server, and a way to put events on Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from homework_insights.app import create
from homework_insights.config import InsightsSettings
from homework_shared.auth.mint import mint_token
from homework_shared.clock import ManualClock
from homework_shared.events import Envelope, HomeworkEvent, encode, envelope
from homework_shared.service import Runtime
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.unit.insights.builders import CLIENT, PRACTICE, utc

NOW = utc(2026, 3, 27, 12)


@dataclass
class Service:
    """The running app, its settings and clock, an HTTP client, and a producer for contract events."""

    app: FastAPI
    settings: InsightsSettings
    clock: ManualClock
    http: httpx.AsyncClient
    producer: AIOKafkaProducer
    infra: Infra

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.app.state.runtime
        return rt

    async def publish(self, *events: HomeworkEvent | Envelope[Any], raw: bool = False) -> list[Envelope[Any]]:
        """Put events on their stream's topic as the producing service would (key: client id)."""
        sent = []
        for e in events:
            env = e if isinstance(e, Envelope) else envelope(e, source=f"/homework/{e.stream}")
            rec = encode(env)
            await self.producer.send_and_wait(
                self.rt.topics.stream(env.data.stream), rec.value, key=rec.key, headers=rec.headers
            )
            sent.append(env)
        return sent

    async def publish_bytes(self, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(topic, value, key=CLIENT.encode(), headers=headers)

    async def applied(self, event_id: str) -> bool:
        return await self.rt.db["processed_events"].find_one({"_id": event_id}) is not None

    async def wait_applied(self, *envs: Envelope[Any], timeout: float = 60) -> None:
        async def all_applied() -> bool:
            return all([await self.applied(e.id) for e in envs])

        await wait_for(all_applied, timeout=timeout, message="events applied")

    def auth(self, role: str = "therapist", sub: str = "therapist-1", practice: str = PRACTICE) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(sub=sub, role=role, practice_id=practice)}"}

    async def figures(self, client_id: str = CLIENT) -> dict[str, Any]:
        r = await self.http.get(f"/v1/clients/{client_id}/figures", headers=self.auth())
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def read_topic(self, topic: str, until: Callable[[list[Any]], bool], timeout: float = 30) -> list[Any]:
        """Records of ``topic`` from the start, until ``until(records)`` holds."""
        reader = AIOKafkaConsumer(
            topic, bootstrap_servers=self.infra.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await reader.start()
        out: list[Any] = []
        try:
            async with asyncio.timeout(timeout):
                while not until(out):
                    for records in (await reader.getmany(timeout_ms=300)).values():
                        out.extend(records)
        finally:
            await reader.stop()
        return out


def settings_for(infra: Infra, **extra: Any) -> InsightsSettings:
    return InsightsSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=extra.pop("mongodb_database", unique("insights")),
        topic_prefix=extra.pop("topic_prefix", unique("ins")),
        # A consumer group of its own: a member of a previous test's group can hold a join up for a session timeout.
        service_name=extra.pop("service_name", unique("insights")),
        topic_partitions=2,
        environment="development",
        log_format="console",
        **extra,
    )


@pytest.fixture
async def service(infra: Infra) -> AsyncIterator[Service]:
    settings = settings_for(infra)
    clock = ManualClock(NOW)
    app = create(settings, clock=clock)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    async with app.router.lifespan_context(app):
        rt: Runtime = app.state.runtime
        await wait_for(lambda: _true(rt.kafka_ready.is_set()), timeout=60, message="kafka ready")
        await producer.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://insights") as http:
            try:
                yield Service(app, settings, clock, http, producer, infra)
            finally:
                await producer.stop()


async def _true(value: bool) -> bool:
    return value
