"""Consuming events exactly once per consumer group, with bounded retries and a dead-letter topic.

For every Kafka record a subscriber built here:

1. decodes it (:func:`homework_shared.events.decode`); a record that is not a valid event
   is parked at once on the group's dead-letter topic, with the reason;
2. applies it in one MongoDB transaction together with the insert of its event id into
   ``processed_events``: a redelivered event hits the unique id and changes nothing. With
   ``batch_size > 1``, consecutive records of one partition share a transaction (group commit,
   up to ``group_size``, fewer while transactions run long: see ``adapt_group``): one insert of
   their ids, one commit. If any of them fails to decode
   or apply, the shared transaction is dropped whole and each record takes the path below
   alone, so a bad record never takes good ones with it. Callbacks registered with
   :func:`homework_shared.after_commit.after_commit` run after the commit, never for a
   dropped transaction;
3. on a failure of the apply function, retries with back-off up to ``max_attempts``, then
   parks the record (reason ``apply_failed``). A transient failure (a timeout, a
   ``TransientTransactionError`` such as a write conflict, a lost connection, no server
   selectable: see :func:`is_transient`) is retried with capped exponential back-off and
   jitter until ``transient_retry_s`` after the poll began, then the record is parked with
   reason ``transient_exhausted`` (counted, logged as an error) and the partition moves on:
   no record blocks its partition for ever, and ``python -m homework_shared.dlq_replay``
   brings parked records back once the cause is gone;
4. commits the Kafka offset only after 1-3 (FastStream ``AckPolicy.NACK_ON_ERROR``, one
   record at a time, or with ``batch_size > 1`` once after a whole polled batch): a crash
   re-reads the record (or the batch), and step 2 makes that harmless.

Parked records keep their key, body and headers, plus ``dlq_reason``, ``dlq_error``,
``dlq_original_topic``, ``dlq_original_partition``, ``dlq_original_offset``,
``dlq_consumer_group`` and ``dlq_failed_at`` (and ``dlq_replay_count``, kept from a replayed record).

The processed-events insert shares the apply's transaction, so a parked record left no id
behind: replayed, it is applied; a record that was applied (and parked again later, or
replayed twice) is skipped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from homework_shared.events.envelope import Envelope, EventDecodeError, decode
from homework_shared.kafka import raw_body, renew_producer_if_failed
from homework_shared.mongo import run_in_transaction
from homework_shared.observability import batch_consumer_span, consumer_span
from homework_shared.settings import ConsumerSettings

log = logging.getLogger(__name__)

PROCESSED = "processed_events"
PROCESSED_RETENTION = timedelta(days=30)
"""The default dedupe window (``PROCESSED_EVENT_TTL_S``): at least the topics' retention, so any redelivery is
still recognised (the settings refuse a shorter one)."""
INDEX_CONFLICTS = (85, 86)
"""IndexOptionsConflict, IndexKeySpecsConflict: an index of that name exists with other options (here: its TTL)."""

Apply = Callable[[Envelope[Any], AsyncClientSession], Awaitable[None]]


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter("events_applied_total", "Events applied", ["type"], registry=registry)
        self.duplicates = Counter("events_duplicate_total", "Redelivered events skipped", registry=registry)
        self.parked = Counter(
            "events_parked_total", "Events parked on the dead-letter topic", ["reason"], registry=registry
        )
        self.retries = Counter("events_retried_total", "Attempts to apply an event that failed", registry=registry)
        self.transient_retries = Counter(
            "events_transient_failures_total",
            "Transient failures (timeouts, write conflicts, connection loss) met while applying an event",
            registry=registry,
        )
        self.apply_seconds = Histogram("event_apply_seconds", "Time to apply one event", registry=registry)
        self.group_sizes = Histogram(
            "events_per_transaction",
            "Events applied per MongoDB transaction (group commit of consecutive records of one partition)",
            buckets=(1, 2, 5, 10, 20, 50, 100),
            registry=registry,
        )
        self.lag = Gauge(
            "consumer_lag_events", "Records behind the end of the partition", ["topic", "partition"], registry=registry
        )


TRANSIENT_CODES = frozenset({6, 7, 24, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
"""Server error codes that pass on their own: HostUnreachable, HostNotFound, LockTimeout, MaxTimeMSExpired,
NetworkTimeout, ShutdownInProgress, WriteConflict, PrimarySteppedDown, ExceededTimeLimit, SocketException,
NotWritablePrimary, InterruptedAtShutdown, InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk,
NotPrimaryOrSecondary (the driver's own retryable-error list)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying as it is: the event is fine, the database was busy or away."""
    if isinstance(exc, ConnectionFailure | TimeoutError):  # includes AutoReconnect, NetworkTimeout, server selection
        return True
    if not isinstance(exc, PyMongoError):
        return False
    if exc.has_error_label("TransientTransactionError") or exc.has_error_label("UnknownTransactionCommitResult"):
        return True
    if exc.timeout:  # ExecutionTimeout, WTimeoutError, client-side operation timeouts
        return True
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a consumer group reads, and where the records it cannot decode or apply are parked."""

    topics: tuple[str, ...]
    group: str
    dead_letter_topic: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing record is retried before it is parked (see the module docstring, step 3)."""

    max_attempts: int = 5
    """Tries of an apply that fails for a reason other than a transient one."""
    base_delay: float = 0.2
    max_delay: float = 5.0
    """Back-off between those tries: ``base_delay`` doubled each time, at most ``max_delay`` (also the cap below)."""
    transient_retry_s: float = 600.0
    """Seconds after the poll began during which transient failures are retried."""
    transient_base_delay: float = 0.01

    @classmethod
    def of(cls, settings: ConsumerSettings) -> RetryPolicy:
        """The policy a service's settings ask for (``CONSUMER_TRANSIENT_RETRY_S``)."""
        return cls(transient_retry_s=settings.consumer_transient_retry_s)


@dataclass(frozen=True, slots=True)
class Batching:
    """How records are polled, shared between transactions and applied concurrently (module docstring, step 2)."""

    batch_size: int = 1
    """Records per poll; > 1 commits the offsets once per polled batch."""
    batch_timeout_ms: int = 20
    concurrency: int = 1
    """Partitions of a batch applied at once."""
    group_size: int = 20
    """Consecutive records of one partition in one transaction, at most (see ``adapt_group``)."""
    group_target_s: float = 0.25

    @classmethod
    def of(cls, settings: ConsumerSettings) -> Batching:
        """The batching a service's settings ask for (``CONSUMER_BATCH_SIZE``, ``_CONCURRENCY``, ``_GROUP_SIZE``)."""
        return cls(
            batch_size=settings.consumer_batch_size,
            concurrency=settings.consumer_concurrency,
            group_size=settings.consumer_group_size,
        )


class EventConsumer:
    """Subscribes ``apply`` to ``subscription``'s topics as its consumer group; see the module docstring."""

    def __init__(
        self,
        *,
        broker: KafkaBroker,
        client: AsyncMongoClient[Any],
        db: AsyncDatabase[Any],
        subscription: Subscription,
        apply: Apply,
        metrics: ConsumerMetrics,
        retry: RetryPolicy = RetryPolicy(),
        batching: Batching = Batching(),
        processed_ttl: timedelta = PROCESSED_RETENTION,
    ) -> None:
        self.broker = broker
        self.client = client
        self.processed = db[PROCESSED]
        self.processed_ttl = processed_ttl
        self.group = subscription.group
        self.dead_letter_topic = subscription.dead_letter_topic
        self.apply = apply
        self.metrics = metrics
        self.retry = retry
        self.batching = batching
        self.group_limit = batching.group_size
        """Records per shared transaction now: ``group_size`` at most, adapted by ``adapt_group``."""
        self.subscriber = self._subscribe(subscription)

    def _subscribe(self, subscription: Subscription) -> Any:
        """The FastStream subscriber (offsets committed after the apply), and the dead-letter publisher declared."""
        batch_size, group, dead_letter_topic = self.batching.batch_size, self.group, self.dead_letter_topic
        # batch_size > 1: up to that many records per poll, applied in transactions of up to
        # group_size records of one partition, and one offset commit after the whole batch (a
        # commit per record costs a broker round trip).
        batching: dict[str, Any] = (
            {"batch": True, "max_records": batch_size, "batch_timeout_ms": self.batching.batch_timeout_ms}
            if batch_size > 1
            else {}
        )
        subscriber = self.broker.subscriber(
            *subscription.topics,
            group_id=group,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            # A poll's records may retry transient failures for transient_retry_s: stay in the group meanwhile.
            max_poll_interval_ms=int((self.retry.transient_retry_s + 300) * 1000),
            decoder=raw_body,
            title=f"{group}:consume",
            description=f"Consumed by consumer group {group}; undecodable or unappliable records go to "
            f"{dead_letter_topic}.",
            **batching,
        )
        subscriber(self.handle_batch if batch_size > 1 else self.handle)
        # Declared for the AsyncAPI document: parked records are published here (see ``park``).
        self.broker.publisher(
            dead_letter_topic,
            title=f"{dead_letter_topic}:publish",
            description="Records this consumer group could not decode or apply: the original key, value and "
            "headers, plus dlq_reason, dlq_error, dlq_original_topic, dlq_original_partition, "
            "dlq_original_offset, dlq_consumer_group and dlq_failed_at.",
        )
        return subscriber

    async def ensure_indexes(self) -> None:
        """The dedupe window's TTL index; a changed window is applied to the existing index (``collMod``)."""
        seconds = int(self.processed_ttl.total_seconds())
        try:
            await self.processed.create_index("at", name="processed_ttl", expireAfterSeconds=seconds)
        except OperationFailure as error:
            if error.code not in INDEX_CONFLICTS:
                raise
            await self.processed.database.command(
                {"collMod": PROCESSED, "index": {"name": "processed_ttl", "expireAfterSeconds": seconds}}
            )

    async def handle(self, msg: KafkaMessage) -> None:
        """Decode, apply once, retry or park: the whole life of one record."""
        record = msg.raw_message
        assert not isinstance(record, tuple)
        await self.handle_record(msg, record, time.monotonic() + self.retry.transient_retry_s)

    async def handle_batch(self, msg: KafkaMessage) -> None:
        """Each record of a batch as ``handle`` does; the offsets are committed after the last one.

        With ``concurrency > 1`` the records of different partition numbers are applied concurrently
        (up to that many at once), those of one partition number in order. A key lands on the same
        partition number in every topic of the same partition count, so one client's events (keyed
        by client id) are never applied concurrently, whichever of the streams they come from.
        """
        records = msg.raw_message
        batch = records if isinstance(records, tuple) else (records,)
        # One budget for the whole poll: a long outage parks the rest of the batch after one attempt each,
        # so the poll ends well within max_poll_interval_ms and the consumer keeps its partitions.
        deadline = time.monotonic() + self.retry.transient_retry_s
        lanes: dict[int, list[Any]] = {}
        for record in batch:
            lanes.setdefault(record.partition, []).append(record)
        if self.batching.concurrency <= 1:
            for lane in lanes.values():
                await self.handle_lane(msg, lane, deadline)
            return
        limit = asyncio.Semaphore(self.batching.concurrency)

        async def run(lane: list[Any]) -> None:
            async with limit:
                await self.handle_lane(msg, lane, deadline)

        await asyncio.gather(*(run(lane) for lane in lanes.values()))

    async def handle_lane(self, msg: KafkaMessage, lane: list[Any], deadline: float) -> None:
        """Records of one partition number, in order, up to ``group_limit`` in one transaction each."""
        start = 0
        while start < len(lane):
            group = lane[start : start + self.group_limit]
            start += len(group)
            if len(group) > 1 and await self.apply_group(msg, group):
                continue
            for record in group:
                await self.handle_record(msg, record, deadline)

    def adapt_group(self, seconds: float, events: int) -> None:
        """Keep shared transactions short: halve the group when one ran over ``group_target_s``, grow it by one
        when one ran under half of it.

        What an event costs depends on the event (an assignment created stores a fortnight of
        reminders, a completion a few documents) and on how busy the database is. A long
        transaction holds its documents longer and, if it outlives the driver's socket timeout,
        is abandoned and redone: the group must shrink before that happens. Kept for a real replica
        set too: there every writer of a document a running transaction wrote is aborted at once
        (``WriteConflict``), so the longer a shared transaction runs, the more others it aborts.
        """
        if seconds > self.batching.group_target_s:
            self.group_limit = max(1, self.group_limit // 2)
        elif seconds < self.batching.group_target_s / 2 and events >= self.group_limit:
            self.group_limit = min(self.batching.group_size, self.group_limit + 1)

    async def apply_group(self, msg: KafkaMessage, records: list[Any]) -> bool:
        """Apply ``records`` in one transaction; False, with nothing written, if any one of them fails.

        Any failure (an undecodable record, a redelivered event, a write conflict, an apply
        error) drops the whole transaction and leaves each record to ``handle_record``, which
        parks, skips, retries or waits exactly as it does for a record on its own.
        """
        envs = []
        for record in records:
            self._observe_lag(msg, record)
            try:
                envs.append(decode(record.headers, record.value))
            except EventDecodeError:
                return False
        started = time.perf_counter()
        try:
            with batch_consumer_span(records, self.group):
                await self._transaction(envs)
        except Exception as exc:  # noqa: BLE001 - every record is then handled alone, which reports its own error
            log.debug("a group of %d events was not applied together (%r); applying each alone", len(envs), exc)
            if isinstance(exc, ConnectionFailure):  # a timeout among them: the group was too much
                self.group_limit = 1
            return False
        self._applied(envs, time.perf_counter() - started)
        return True

    async def _transaction(self, envs: list[Envelope[Any]]) -> None:
        """Record the events' ids and apply them in one transaction; its after-commit callbacks run once it commits.

        One attempt (``max_attempts=1``): a failure is retried by ``handle_record``, within its own budget.
        ``run_in_transaction`` commits with write concern majority whatever the cluster's default: the Kafka
        offset is committed after this commit, so a commit a failover could roll back (w:1) would lose its event.
        """
        now = datetime.now(UTC)
        ids = [{"_id": env.id, "type": env.type, "at": now} for env in envs]

        async def record_and_apply(session: AsyncClientSession) -> None:
            if len(ids) == 1:  # insert_one: a duplicate raises DuplicateKeyError, which apply_once reads
                await self.processed.insert_one(ids[0], session=session)
            else:
                await self.processed.insert_many(ids, session=session)
            for env in envs:
                await self.apply(env, session)

        await run_in_transaction(self.client, record_and_apply, max_attempts=1)

    def _applied(self, envs: list[Envelope[Any]], seconds: float) -> None:
        """Count the events one committed transaction applied in ``seconds``, and adapt the group size to it."""
        self.metrics.group_sizes.observe(len(envs))
        self.adapt_group(seconds, len(envs))
        for env in envs:
            self.metrics.apply_seconds.observe(seconds / len(envs))
            self.metrics.applied.labels(env.type).inc()

    async def handle_record(self, msg: KafkaMessage, record: Any, deadline: float) -> None:
        """The life of one record: see the module docstring. Transient failures are retried until ``deadline``
        (``time.monotonic()``), then the record is parked as ``transient_exhausted``."""
        with consumer_span(record, self.group):  # in the producer's trace: what the apply stages carries it on
            await self._handle_record(msg, record, deadline)

    async def _handle_record(self, msg: KafkaMessage, record: Any, deadline: float) -> None:
        self._observe_lag(msg, record)
        try:
            env = decode(record.headers, record.value)
        except EventDecodeError as exc:
            await self.park(record, exc.reason, str(exc))
            return
        attempt = 0
        transient = 0
        while True:
            try:
                started = time.perf_counter()
                applied = await self.apply_once(env)
                elapsed = time.perf_counter() - started
                if applied:
                    self._applied([env], elapsed)
                else:
                    self.metrics.apply_seconds.observe(elapsed)
                    self.metrics.duplicates.inc()
                return
            except Exception as exc:
                if is_transient(exc):
                    self.metrics.transient_retries.inc()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        log.error(
                            "giving up on event %s (%s) after %d transient failures over the %.0fs retry budget "
                            "(CONSUMER_TRANSIENT_RETRY_S); parking it: %r",
                            env.id,
                            env.type,
                            transient + 1,
                            self.retry.transient_retry_s,
                            exc,
                        )
                        await self.park(record, "transient_exhausted", f"{type(exc).__name__}: {exc}")
                        return
                    delay = self.transient_delay(transient)
                    transient += 1
                    log.log(
                        logging.WARNING if isinstance(exc, ConnectionFailure) else logging.INFO,
                        "transient failure applying %s (%r); retry %d in %.2fs",
                        env.id,
                        exc,
                        transient,
                        delay,
                    )
                    await asyncio.sleep(min(delay, max(left, 0.0)))
                    continue
                attempt += 1
                self.metrics.retries.inc()
                if attempt >= self.retry.max_attempts:
                    log.exception("giving up on event %s (%s) after %d attempts", env.id, env.type, attempt)
                    await self.park(record, "apply_failed", f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1)))

    def transient_delay(self, failures: int) -> float:
        """Capped exponential back-off with jitter: about base * 2^failures, at most ``max_delay``.

        Jitter (half to all of the step) keeps competing transactions from conflicting again in lock-step.
        """
        step = min(self.retry.max_delay, self.retry.transient_base_delay * 2 ** min(failures, 30))
        return random.uniform(step / 2, step)

    async def apply_once(self, env: Envelope[Any]) -> bool:
        """Apply ``env`` unless this group already did; False for a duplicate."""
        try:
            await self._transaction([env])
        except DuplicateKeyError:
            if await self.processed.find_one({"_id": env.id}) is not None:
                return False
            raise
        except OperationFailure as exc:
            if exc.code == 11000 and await self.processed.find_one({"_id": env.id}) is not None:
                return False
            raise
        return True

    async def park(self, record: Any, reason: str, error: str) -> None:
        """Publish the record unchanged to the dead-letter topic, with why and where it came from."""
        headers = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in record.headers}
        headers.update(
            {
                "dlq_reason": reason,
                "dlq_error": error[:2000],
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
                "dlq_consumer_group": self.group,
                "dlq_failed_at": datetime.now(UTC).isoformat(),
            }
        )
        try:
            await self.broker.publish(record.value or b"", self.dead_letter_topic, key=record.key, headers=headers)
        except Exception as exc:
            await renew_producer_if_failed(self.broker, exc)  # so that the retry of this record can succeed
            raise
        self.metrics.parked.labels(reason).inc()
        log.warning(
            "parked record %s/%s@%s on %s: %s",
            record.topic,
            record.partition,
            record.offset,
            self.dead_letter_topic,
            error[:300],
        )

    def _observe_lag(self, msg: Any, record: Any) -> None:
        consumer = getattr(msg, "consumer", None)
        highwater = getattr(consumer, "highwater", None)
        if highwater is None:
            return
        try:
            from aiokafka import TopicPartition

            end = highwater(TopicPartition(record.topic, record.partition))
        except Exception:  # noqa: BLE001 - lag is best effort
            return
        if end is not None:
            self.metrics.lag.labels(record.topic, str(record.partition)).set(max(0, end - record.offset - 1))
