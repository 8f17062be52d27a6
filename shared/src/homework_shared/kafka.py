"""Kafka wiring with safe defaults: one FastStream broker per service, topics created idempotently.

FastStream's defaults are at-most-once (its subscribers commit before handling, its producer
uses ``acks=1`` without idempotence; see docs/architecture.md); here the producer waits for every
in-sync replica (``acks="all"``) with idempotence, topics are never auto-created by a
client, and subscribers get their raw bytes so that our own decoder, not FastStream's
JSON parser, decides what a bad message is.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from homework_shared.settings import KafkaConnectionSettings

log = logging.getLogger(__name__)


def kafka_security(settings: KafkaConnectionSettings) -> BaseSecurity | None:
    """FastStream's security object for the TLS / SASL the settings ask for (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = settings.kafka_client_options().get("ssl_context")
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    sasl = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    assert settings.kafka_sasl_username is not None
    assert settings.kafka_sasl_password is not None
    return sasl[settings.kafka_sasl_mechanism](
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=ssl_context,
        use_ssl=protocol == "SASL_SSL",
    )


class TopicsRefused(RuntimeError):
    """Kafka answered a topic creation with an error (e.g. more replicas than brokers)."""


FATAL_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)
"""Errors after which an idempotent aiokafka producer never sends again: its sender task has ended
(seen: ``OutOfOrderSequenceNumber`` once a broker restarted on its old data while batches were in
flight). The only way on is a new producer, with a new producer id and sequence numbers from zero."""

_renewals: weakref.WeakKeyDictionary[KafkaBroker, asyncio.Lock] = weakref.WeakKeyDictionary()


def producer_failed(broker: KafkaBroker, exc: BaseException | None) -> bool:
    """Whether the broker's producer can no longer send: ``exc`` (or an exception it was raised from)
    is one of ``FATAL_PRODUCER_ERRORS``, or the producer's sender task has ended with an error."""
    producer = getattr(getattr(broker.config.broker_config.producer, "_producer", None), "producer", None)
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
        return True
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, FATAL_PRODUCER_ERRORS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


async def renew_producer(broker: KafkaBroker) -> None:
    """Replace the broker's producer by a fresh one built from the same connection options.

    FastStream keeps one aiokafka producer per broker and has no public way to replace it, so this
    reaches for its producer wrapper (``config.broker_config.producer``) and the broker's connection
    options; FastStream is pinned in ``uv.lock`` and ``tests/integration/foundation`` exercises this
    against the real broker. Records still unsent by the old producer fail and are retried by their
    caller (the outbox relay, the dead-letter parking): no record is lost, a duplicate is harmless.
    """
    lock = _renewals.setdefault(broker, asyncio.Lock())
    async with lock:
        wrapper = broker.config.broker_config.producer
        serializer, codec = getattr(wrapper, "serializer", None), getattr(wrapper, "codec", None)
        try:
            await asyncio.wait_for(wrapper.disconnect(), timeout=10)
        except Exception:  # the old producer is dead already; closing it may fail too
            log.debug("closing the failed producer raised", exc_info=True)
        fresh = AIOKafkaProducer(**broker._connection_kwargs)
        await wrapper.connect(fresh, serializer, codec)  # type: ignore[call-arg]
        log.warning("the Kafka producer failed for good and was replaced by a new one")


async def renew_producer_if_failed(broker: KafkaBroker, exc: BaseException) -> None:
    """After a failed publish: renew the broker's producer if ``exc`` shows it failed for good.

    Never raises (a renewal that fails is logged, and tried again after the caller's next failure),
    so the caller handles its own error as before: the outbox relay retries the batch, dead-letter
    parking re-raises so that the record is retried.
    """
    if not producer_failed(broker, exc):
        return
    try:
        await renew_producer(broker)
    except Exception:
        log.warning("renewing the failed Kafka producer failed; tried again after the next failure", exc_info=True)


def bootstrap_addresses(bootstrap_servers: str) -> list[str]:
    """The ``host:port`` addresses of a comma-separated ``KAFKA_BOOTSTRAP_SERVERS`` value."""
    return [address.strip() for address in bootstrap_servers.split(",") if address.strip()]


def make_broker(
    bootstrap_servers: str, *, client_id: str, security: BaseSecurity | None = None, **options: Any
) -> KafkaBroker:
    """A FastStream Kafka broker whose producer is idempotent with ``acks=all``."""
    return KafkaBroker(
        # As a list: FastStream passes a string on as one address, so "a:9092,b:9092" would not resolve.
        bootstrap_addresses(bootstrap_servers),
        security=security,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=options.pop("linger_ms", 2),
        allow_auto_create_topics=False,
        request_timeout_ms=options.pop("request_timeout_ms", 15_000),
        graceful_timeout=options.pop("graceful_timeout", 15.0),
        logger=options.pop("logger", logging.getLogger(f"{client_id}.kafka")),
        log_level=logging.DEBUG,
        **options,
    )


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """A FastStream decoder that hands the undecoded body to the handler (ours decodes)."""
    return message.body


async def ensure_topics(
    bootstrap_servers: str,
    names: list[str],
    *,
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int,
    retention_ms: int,
    client_options: dict[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; existing ones are left alone. Returns those created.

    ``client_options`` are aiokafka keyword arguments such as ``KafkaConnectionSettings.kafka_client_options()``.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="homework-topic-admin", **(client_options or {})
    )
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        config = {"min.insync.replicas": str(min_insync_replicas), "retention.ms": str(retention_ms)}
        missing = [
            NewTopic(n, partitions, replication_factor, topic_configs=config) for n in names if n not in existing
        ]
        refused: list[str] = []
        for topic in missing:
            try:
                response = await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue  # another replica created it first
            for name, code, *rest in getattr(response, "topic_errors", []):
                if code == TopicAlreadyExistsError.errno:
                    continue
                if code:
                    refused.append(f"{name}: error {code} {rest[0] if rest else ''}".strip())
                else:
                    created.append(name)
        if created:
            log.info("created topics", extra={"topics": created})
        if refused:
            # Kafka answers per topic: e.g. more replicas asked for than there are brokers.
            raise TopicsRefused(f"Kafka refused to create topics: {'; '.join(refused)}")
    finally:
        await admin.close()
    return created
