"""What every service runs on, built from its settings: MongoDB, the Kafka broker, the outbox and its relay,
idempotent consumers, and a lifespan that starts and stops them in the right order.

Nothing connects at import or construction; :meth:`Runtime.start` does, from the app's lifespan.
Kafka being unreachable at start-up does not stop the HTTP API: the broker connects in the
background and ``/readyz`` reports ``kafka`` false until it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from homework_shared.clock import Clock, clock_from
from homework_shared.consumer import (
    PROCESSED_RETENTION,
    Apply,
    Batching,
    ConsumerMetrics,
    EventConsumer,
    RetryPolicy,
    Subscription,
)
from homework_shared.consumer_lag import ConsumerLagSampler
from homework_shared.events.base import Stream
from homework_shared.events.models import EVENT_CLASSES
from homework_shared.events.schemas import schema_of
from homework_shared.events.topics import Topics
from homework_shared.http import add_readiness_check, from_app_state
from homework_shared.idempotency import ensure_idempotency_indexes
from homework_shared.kafka import ensure_topics, kafka_security, make_broker
from homework_shared.mongo import make_mongo_client, mongo_ping
from homework_shared.observability import configure_tracing, current_traceparent
from homework_shared.outbox import Outbox, OutboxMetrics, OutboxRelay
from homework_shared.settings import ConsumerSettings, ServiceSettings
from homework_shared.tasks import stop_task

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    """The wired infrastructure of one service process."""

    settings: ServiceSettings
    stream: Stream | None
    mongo: AsyncMongoClient[Any]
    db: AsyncDatabase[Any]
    broker: KafkaBroker
    topics: Topics
    outbox: Outbox
    relay: OutboxRelay
    registry: CollectorRegistry
    clock: Clock
    consumers: list[EventConsumer] = field(default_factory=list)
    kafka_ready: asyncio.Event = field(default_factory=asyncio.Event)
    lag_sampler: ConsumerLagSampler | None = None
    _connect_task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        settings: ServiceSettings,
        registry: CollectorRegistry,
        *,
        stream: Stream | None,
        clock: Clock | None = None,
    ) -> Runtime:
        """Wire everything from settings; ``stream`` is the event stream this service publishes to."""
        clock = clock or clock_from(settings)
        configure_tracing(settings.service_name)  # before the MongoDB client: its commands are traced
        mongo = make_mongo_client(settings)
        db = mongo[settings.mongodb_database]
        topics = Topics(prefix=settings.topic_prefix)
        broker = make_broker(
            settings.kafka_bootstrap_servers, client_id=settings.service_name, security=kafka_security(settings)
        )
        outbox = Outbox(
            db,
            topics,
            source=f"/homework/{settings.service_name}",
            include_free_text=settings.include_free_text,
            traceparent=current_traceparent,
        )
        relay = OutboxRelay(outbox, broker, OutboxMetrics(registry))
        if stream is not None:
            broker.publisher(
                topics.stream(stream),
                title=f"{topics.stream(stream)}:publish",
                description=f"The {stream} event stream (CloudEvents, binary mode; key: client id).",
            )
        return cls(settings, stream, mongo, db, broker, topics, outbox, relay, registry, clock)

    def consume(
        self,
        streams: list[Stream],
        apply: Apply,
        *,
        group: str | None = None,
        batching: Batching | None = None,
        retry: RetryPolicy | None = None,
    ) -> EventConsumer:
        """Apply every event of ``streams`` once, as consumer group ``group`` (default: the service name).

        ``batching`` and ``retry`` default to what a consuming service's settings ask for
        (``CONSUMER_*``, see ``Batching.of`` and ``RetryPolicy.of``); otherwise one record at a time
        with the default retries. See ``EventConsumer``.
        """
        group = group or self.settings.service_name
        consuming = self.settings if isinstance(self.settings, ConsumerSettings) else None
        if batching is None:
            batching = Batching.of(consuming) if consuming else Batching()
        if retry is None:
            retry = RetryPolicy.of(consuming) if consuming else RetryPolicy()
        subscription = Subscription(
            topics=tuple(self.topics.stream(s) for s in streams),
            group=group,
            dead_letter_topic=self.topics.dead_letter(group),
        )
        consumer = EventConsumer(
            broker=self.broker,
            client=self.mongo,
            db=self.db,
            subscription=subscription,
            apply=apply,
            metrics=ConsumerMetrics(self.registry),
            retry=retry,
            batching=batching,
            processed_ttl=self._dedupe_window(),
        )
        self.consumers.append(consumer)
        return consumer

    def _dedupe_window(self) -> timedelta:
        """``PROCESSED_EVENT_TTL_S`` of a consuming service's settings (checked against the topic retention)."""
        if isinstance(self.settings, ConsumerSettings):
            return timedelta(seconds=self.settings.processed_event_ttl_s)
        return PROCESSED_RETENTION

    def topic_names(self) -> list[str]:
        return self.topics.all_streams() + [c.dead_letter_topic for c in self.consumers]

    async def start(self, app: FastAPI | None = None) -> None:
        """Create indexes, then connect Kafka in the background (topics, broker, relay)."""
        await self.outbox.ensure_indexes()
        await ensure_idempotency_indexes(self.db, self.settings.idempotency_key_ttl_s)
        for consumer in self.consumers:
            await consumer.ensure_indexes()
        if self.consumers and self.lag_sampler is None:
            self.lag_sampler = ConsumerLagSampler(self.consumers, self.registry)
        if app is not None:
            add_readiness_check(app, "mongodb", lambda: mongo_ping(self.mongo))
            add_readiness_check(app, "kafka", self.kafka_reachable)
            if (sampler := self.lag_sampler) is not None:
                for consumer in self.consumers:
                    add_readiness_check(
                        app, f"consumer:{consumer.group}", functools.partial(sampler.ready, consumer.group)
                    )
                app.state.readiness_details = {"consumers": sampler.details}
        self._connect_task = asyncio.create_task(self._connect_kafka(), name="kafka-connect")

    async def kafka_reachable(self) -> bool:
        return self.kafka_ready.is_set() and await self.broker.ping(timeout=1.5)

    async def _connect_kafka(self) -> None:
        delay = 0.5
        s = self.settings
        while True:
            try:
                await ensure_topics(
                    s.kafka_bootstrap_servers,
                    self.topic_names(),
                    partitions=s.topic_partitions,
                    replication_factor=s.topic_replication_factor,
                    min_insync_replicas=s.topic_min_insync_replicas,
                    retention_ms=s.topic_retention_ms,
                    client_options=s.kafka_client_options(),
                )
                await self.broker.start()
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("Kafka not reachable yet; retrying in %.1fs", delay, exc_info=True)
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.relay.start()
        if self.lag_sampler is not None:
            self.lag_sampler.start()
        self.kafka_ready.set()
        log.info("connected to Kafka", extra={"bootstrap": s.kafka_bootstrap_servers})

    async def stop(self) -> None:
        """Stop consuming, flush the outbox, then close Kafka and MongoDB."""
        await stop_task(self._connect_task)
        if self.lag_sampler is not None:
            await self.lag_sampler.stop()
        if self.kafka_ready.is_set():
            for sub in self.broker.subscribers:
                with contextlib.suppress(Exception):
                    await sub.stop()
            await self.relay.stop(flush_timeout=min(10.0, self.settings.shutdown_timeout_s / 2))
            with contextlib.suppress(Exception):
                await self.broker.stop()
        await self.mongo.close()

    def lifespan(self, on_start: Hook | None = None, on_stop: Hook | None = None) -> Any:
        """A FastAPI lifespan: start the runtime (then ``on_start``); on shutdown ``on_stop``, then stop it."""

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start(app)
            if on_start:
                await on_start()
            try:
                yield
            finally:
                if on_stop:
                    await on_stop()
                await self.stop()

        return lifespan

    def asyncapi(self, title: str, version: str = "1.0.0") -> dict[str, Any]:
        """This service's AsyncAPI 3 document, with the published event schemas as message payloads."""
        doc: dict[str, Any] = json.loads(
            AsyncAPI(
                self.broker, title=title, version=version, description=f"Events published and consumed by the {title}."
            )
            .to_specification()
            .to_json()
        )
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        messages = components.setdefault("messages", {})
        by_topic: dict[str, list[str]] = {}
        for cls in EVENT_CLASSES:
            schemas[cls.event_type] = schema_of(cls)
            by_topic.setdefault(self.topics.stream(cls.stream), []).append(cls.event_type)
        for channel in doc.get("channels", {}).values():
            events = by_topic.get(channel.get("address", ""))
            if not events:
                continue
            for ref in channel.get("messages", {}).values():
                name = ref["$ref"].rsplit("/", 1)[-1]
                messages[name]["payload"] = {"oneOf": [{"$ref": f"#/components/schemas/{t}"} for t in events]}
                messages[name]["contentType"] = "application/json"
                messages[name]["headers"] = CLOUD_EVENTS_HEADERS
        return doc


CLOUD_EVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0, Kafka binary content mode",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    "properties": {
        "ce_specversion": {"const": "1.0"},
        "ce_id": {"type": "string", "description": "Unique per source; consumers dedupe on it"},
        "ce_source": {"type": "string", "examples": ["/homework/assignment"]},
        "ce_type": {"type": "string", "examples": ["homework.completion.recorded.v1"]},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "The occurrence, assignment, summary or alert id"},
        "ce_partitionkey": {"type": "string", "description": "The client id, also the record key"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
        "content-type": {"const": "application/json"},
    },
}


RuntimeDep = Annotated[Runtime, Depends(from_app_state("runtime"))]
"""The service's runtime (MongoDB, outbox, clock) as ``app.create`` put it on ``app.state.runtime``."""
