"""The transactional outbox: an event is written in the same MongoDB transaction as the change it
reports, and a relay publishes it to Kafka afterwards (Debezium's outbox pattern, by polling).

* ``Outbox.stage(session, event)`` inside the business transaction; the record's id is the
  CloudEvents id, the client id is the Kafka key. Staging registers ``notify`` as an
  after-commit callback (:mod:`homework_shared.after_commit`): ``run_in_transaction`` wakes
  the relay once the transaction committed, never for one that aborted.
* ``OutboxRelay`` publishes pending records in ``seq`` order through the service's idempotent
  producer and marks them sent. One relay per database holds a lease at a time, so records
  leave in the order they were written; a dead relay's lease expires and another takes over.
* A crash between publish and mark-sent re-sends a record: harmless, since consumers dedupe
  on the event id. Kafka being down only grows the backlog; the API keeps accepting writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Binary
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from homework_shared.after_commit import after_commit
from homework_shared.events.base import HomeworkEvent
from homework_shared.events.envelope import encode, envelope, without_free_text
from homework_shared.events.topics import Topics
from homework_shared.kafka import renew_producer_if_failed
from homework_shared.observability import end_span, producer_span, traceparent_of
from homework_shared.tasks import stop_task

log = logging.getLogger(__name__)

OUTBOX = "outbox"
LEASES = "leases"
SENT_RETENTION = timedelta(days=7)


class _Sequence:
    """Strictly increasing integers, close to nanoseconds since the epoch, for ordering records."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last


class Outbox:
    """Stages events for publication inside the caller's MongoDB transaction."""

    def __init__(
        self,
        db: AsyncDatabase[Any],
        topics: Topics,
        *,
        source: str,
        include_free_text: bool = False,
        traceparent: Callable[[], str | None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.collection = db[OUTBOX]
        self.topics = topics
        self.source = source
        self.include_free_text = include_free_text
        self._traceparent = traceparent
        self._now = now
        self._seq = _Sequence()
        self.staged = asyncio.Event()

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("state", ASCENDING), ("seq", ASCENDING)], name="pending_in_order")
        await self.collection.create_index(
            "sent_at", name="sent_ttl", expireAfterSeconds=int(SENT_RETENTION.total_seconds())
        )

    async def stage(
        self,
        session: AsyncClientSession,
        event: HomeworkEvent,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """Write ``event`` to the outbox in ``session``'s transaction; returns its CloudEvents id.

        A deterministic ``event_id`` (e.g. reminder id + due instant) makes a repeated
        stage of the same fact a no-op instead of a second event.
        """
        if event_id is not None:
            # Check first: a duplicate-key error would abort the caller's transaction on a real MongoDB.
            staged = await self.stage_many(session, [(event, event_id)], time=time)
            return staged[0] if staged else event_id
        doc = self._record(event, None, time)
        await self.collection.insert_one(doc, session=session)
        after_commit(self.notify)
        return str(doc["_id"])

    async def stage_many(
        self,
        session: AsyncClientSession,
        events: Sequence[tuple[HomeworkEvent, str | None]],
        *,
        time: datetime | None = None,
    ) -> list[str]:
        """Stage ``(event, event_id or None)`` pairs with one read and one insert; returns the ids staged.

        Ids already in the outbox are skipped before inserting (a duplicate-key error would abort
        the caller's transaction on a real MongoDB server), so a repeated fact stays one event.
        """
        return await self.stage_prepared(session, [self._record(event, event_id, time) for event, event_id in events])

    def prepare(
        self, event: HomeworkEvent, *, event_id: str | None = None, time: datetime | None = None
    ) -> dict[str, Any]:
        """The outbox record of ``event``, built now, in the caller's trace context, for ``stage_prepared``.

        For group commit: each request prepares its record (so it carries that request's
        ``traceparent``), and one transaction stages the records of many requests.
        """
        return self._record(event, event_id, time)

    async def stage_prepared(
        self, session: AsyncClientSession, docs: Sequence[dict[str, Any]], *, check_existing: bool = True
    ) -> list[str]:
        """Stage records from ``prepare`` with one read and one insert, skipping ids already staged.

        ``check_existing=False`` saves the read when every record has a fresh random id (none
        was prepared with a deterministic ``event_id``).
        """
        if not docs:
            return []
        wanted = [d["_id"] for d in docs]
        seen: set[Any] = set()
        if check_existing:
            found = self.collection.find({"_id": {"$in": wanted}}, {"_id": 1}, session=session)
            seen = {d["_id"] async for d in found}
        fresh: list[dict[str, Any]] = []
        staged_at = datetime.now(UTC)
        for doc in docs:
            if doc["_id"] not in seen:
                seen.add(doc["_id"])
                # Staged now, not when prepared: the relay-lag figures measure from here.
                fresh.append({**doc, "created_at": staged_at})
        if fresh:
            await self.collection.insert_many(fresh, ordered=True, session=session)
            after_commit(self.notify)
        return [str(d["_id"]) for d in fresh]

    def _record(self, event: HomeworkEvent, event_id: str | None, time: datetime | None) -> dict[str, Any]:
        data = event if self.include_free_text else without_free_text(event)
        env = envelope(
            data, source=self.source, event_id=event_id, time=time or self._now(), traceparent=self._traceparent()
        )
        record = encode(env)
        return {
            "_id": env.id,
            "seq": self._seq.next(),
            "topic": self.topics.stream(event.stream),
            "key": record.key.decode(),
            "headers": [[k, v.decode()] for k, v in record.headers],
            "value": Binary(record.value),
            "type": env.type,
            "created_at": datetime.now(UTC),
            "state": "pending",
        }

    def notify(self) -> None:
        """Wake the relay now; staging registers it to run after the commit, so callers need not."""
        self.staged.set()


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter("outbox_published_total", "Outbox records published to Kafka", registry=registry)
        self.failures = Counter(
            "outbox_publish_failures_total", "Failed attempts to publish a batch", registry=registry
        )
        self.backlog = Gauge("outbox_backlog", "Outbox records not yet published", registry=registry)
        self.oldest_age = Gauge(
            "outbox_oldest_unsent_age_seconds", "Age of the oldest unpublished record", registry=registry
        )
        self.lag = Histogram(
            "outbox_relay_lag_seconds",
            "From staging a record to Kafka acknowledging it",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
        self.leader = Gauge("outbox_relay_leader", "1 while this replica holds the relay lease", registry=registry)


class Lease:
    """A named, expiring lease in MongoDB: at most one live holder at a time."""

    def __init__(self, db: AsyncDatabase[Any], name: str, *, ttl: float = 10.0, owner: str | None = None) -> None:
        self.collection = db[LEASES]
        self.name = name
        self.ttl = ttl
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.expires_at = 0.0

    async def hold(self) -> bool:
        """Take or renew the lease; True while this owner holds it."""
        now = time.time()
        if self.expires_at - now > self.ttl / 2:
            return True
        until = datetime.fromtimestamp(now + self.ttl, UTC)
        try:
            await self.collection.update_one(
                {"_id": self.name, "$or": [{"owner": self.owner}, {"expires_at": {"$lt": datetime.now(UTC)}}]},
                {"$set": {"owner": self.owner, "expires_at": until}},
                upsert=True,
            )
        except DuplicateKeyError:
            self.expires_at = 0.0
            return False
        self.expires_at = now + self.ttl
        return True

    async def release(self) -> None:
        if self.expires_at:
            with contextlib.suppress(PyMongoError):
                await self.collection.update_one(
                    {"_id": self.name, "owner": self.owner}, {"$set": {"expires_at": datetime.fromtimestamp(0, UTC)}}
                )
        self.expires_at = 0.0


class OutboxRelay:
    """Publishes pending outbox records to Kafka, in order, while it holds the relay lease."""

    def __init__(
        self,
        outbox: Outbox,
        broker: KafkaBroker,
        metrics: OutboxMetrics,
        *,
        batch_size: int = 500,
        idle_poll: float = 0.1,
        lease_ttl: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.broker = broker
        self.metrics = metrics
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self.lease = Lease(outbox.collection.database, "outbox-relay", ttl=lease_ttl)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_stats = 0.0

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Publish what is pending (bounded by ``flush_timeout``), then stop and release the lease."""
        if self._task is None:
            return
        deadline = time.monotonic() + flush_timeout
        with contextlib.suppress(PyMongoError):
            while time.monotonic() < deadline and await self.pending() and self.lease.expires_at:
                self.outbox.notify()
                await asyncio.sleep(0.05)
        self._stopping = True
        self.outbox.notify()
        await stop_task(self._task)
        self._task = None
        await self.lease.release()
        self.metrics.leader.set(0)

    async def pending(self) -> int:
        return await self.outbox.collection.count_documents({"state": "pending"})

    async def _run(self) -> None:
        backoff = itertools.chain([0.1, 0.2, 0.5, 1.0, 2.0], itertools.repeat(5.0))
        while not self._stopping:
            try:
                if not await self.lease.hold():
                    self.metrics.leader.set(0)
                    await asyncio.sleep(self.lease.ttl / 3)
                    continue
                self.metrics.leader.set(1)
                published = await self.publish_batch()
                await self._refresh_stats()
                if published == 0:
                    self.outbox.staged.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.outbox.staged.wait(), self.idle_poll)
                backoff = itertools.chain([0.1, 0.2, 0.5, 1.0, 2.0], itertools.repeat(5.0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.failures.inc()
                delay = next(backoff)
                log.warning("outbox relay failed; retrying in %.1fs", delay, exc_info=True)
                await renew_producer_if_failed(self.broker, exc)
                await asyncio.sleep(delay)

    async def publish_batch(self) -> int:
        """Publish up to ``batch_size`` pending records in order; returns how many were sent."""
        cursor = self.outbox.collection.find({"state": "pending"}).sort("seq", ASCENDING).limit(self.batch_size)
        batch = await cursor.to_list()
        if not batch:
            return 0
        futures = []
        spans = []
        try:
            for rec in batch:
                headers = {k: v for k, v in rec["headers"]}
                # A PRODUCER span in the trace of the request that staged the record; the record carries its id.
                spans.append(producer_span(rec["topic"], headers, message_id=str(rec["_id"]), key=rec["key"]))
                if (traceparent := traceparent_of(spans[-1])) is not None:
                    headers["traceparent"] = traceparent
                futures.append(
                    await self.broker.publish(
                        bytes(rec["value"]),
                        rec["topic"],
                        key=rec["key"].encode(),
                        headers=headers,
                        correlation_id=rec["_id"],
                        no_confirm=True,
                    )
                )
            results = await asyncio.gather(*futures, return_exceptions=True)
        except BaseException as exc:
            for span in spans:
                end_span(span, exc)
            raise
        for span, result in zip(spans, results, strict=True):
            end_span(span, result if isinstance(result, BaseException) else None)
        sent = []
        for rec, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                break
            sent.append(rec)
        if sent:
            now = datetime.now(UTC)
            await self.outbox.collection.update_many(
                {"_id": {"$in": [r["_id"] for r in sent]}}, {"$set": {"state": "sent", "sent_at": now}}
            )
            self.metrics.published.inc(len(sent))
            for rec in sent:
                created = rec["created_at"]
                if created.tzinfo is None:
                    created = created.replace(tzinfo=UTC)
                self.metrics.lag.observe(max(0.0, (now - created).total_seconds()))
        if len(sent) < len(batch):
            failure = next(r for r in results if isinstance(r, BaseException))
            raise RuntimeError(f"published {len(sent)} of {len(batch)} outbox records") from failure
        return len(sent)

    async def _refresh_stats(self) -> None:
        now = time.monotonic()
        if now - self._last_stats < 2.0:
            return
        self._last_stats = now
        self.metrics.backlog.set(await self.pending())
        oldest = await self.outbox.collection.find_one({"state": "pending"}, sort=[("seq", ASCENDING)])
        if oldest is None:
            self.metrics.oldest_age.set(0)
        else:
            created = oldest["created_at"]
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            self.metrics.oldest_age.set((datetime.now(UTC) - created).total_seconds())
