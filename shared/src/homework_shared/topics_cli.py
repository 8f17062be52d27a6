"""Create every topic of a deployment, idempotently: ``python -m homework_shared.topics_cli``.

The one-shot step of docker compose and the Kubernetes Job: every event stream and the
dead-letter topic of each consuming service (``<prefix>.<service>.dead-letter``), with the
partition count, replication factor, ``min.insync.replicas`` and retention taken from the
same environment variables the services read. Topics that exist are left alone; Kafka not
answering yet is retried until ``--wait-s`` runs out. Exit code 0 on success, 1 if Kafka
never answered, 2 on bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any, Self

from aiokafka.admin import AIOKafkaAdminClient
from pydantic import Field, ValidationError, model_validator

from homework_shared.events.topics import STREAMS, Topics
from homework_shared.kafka import TopicsRefused, ensure_topics
from homework_shared.settings import ConfigError, KafkaConnectionSettings, ServiceSettings, describe_validation_error

log = logging.getLogger("homework_shared.topics_cli")

CONSUMERS: tuple[str, ...] = STREAMS
"""The consumer groups (one per service, named after it) that get a dead-letter topic."""

_DEFAULTS = ServiceSettings.model_fields


class TopicSettings(KafkaConnectionSettings):
    """The Kafka and topic settings of ``ServiceSettings``, with the same variable names and defaults; nothing else."""

    topic_prefix: str = _DEFAULTS["topic_prefix"].default
    topic_partitions: int = Field(default=_DEFAULTS["topic_partitions"].default, gt=0)
    topic_replication_factor: int = Field(default=_DEFAULTS["topic_replication_factor"].default, gt=0)
    topic_min_insync_replicas: int = Field(default=_DEFAULTS["topic_min_insync_replicas"].default, gt=0)
    topic_retention_ms: int = _DEFAULTS["topic_retention_ms"].default

    @model_validator(mode="after")
    def _enough_replicas(self) -> Self:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError("TOPIC_MIN_INSYNC_REPLICAS: must not exceed TOPIC_REPLICATION_FACTOR")
        return self


def topic_names(prefix: str, consumers: Sequence[str] = CONSUMERS) -> list[str]:
    """Every stream topic, then one dead-letter topic per consumer."""
    topics = Topics(prefix=prefix)
    return topics.all_streams() + [topics.dead_letter(c) for c in consumers]


class TopicsMissing(RuntimeError):
    """Kafka accepted the requests but some topics do not exist afterwards (e.g. more replicas than brokers)."""


async def missing_topics(
    bootstrap_servers: str,
    names: Sequence[str],
    *,
    settle_s: float = 10.0,
    client_options: dict[str, Any] | None = None,
) -> list[str]:
    """The topics of ``names`` that Kafka does not list, after waiting up to ``settle_s`` for new ones to appear."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="homework-topic-admin", **(client_options or {})
    )
    await admin.start()
    try:
        deadline = time.monotonic() + settle_s
        while True:
            missing = sorted(set(names) - set(await admin.list_topics()))
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.25)
    finally:
        await admin.close()


async def create_topics(settings: TopicSettings, *, consumers: Sequence[str] = CONSUMERS, wait_s: float) -> list[str]:
    """Create the missing topics, retrying while Kafka does not answer; returns those this call created.

    Raises ``TimeoutError`` if Kafka never answered and ``TopicsMissing`` if a topic is still absent
    afterwards: Kafka answers a refused creation (say, a replication factor above the broker count)
    with an error code that the admin client does not raise, so the result is checked by listing.
    """
    names = topic_names(settings.topic_prefix, consumers)
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            created = await ensure_topics(
                settings.kafka_bootstrap_servers,
                names,
                partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                min_insync_replicas=settings.topic_min_insync_replicas,
                retention_ms=settings.topic_retention_ms,
                client_options=settings.kafka_client_options(),
            )
            missing = await missing_topics(
                settings.kafka_bootstrap_servers, names, client_options=settings.kafka_client_options()
            )
        except TopicsRefused as error:
            raise TopicsMissing(
                f"{error} (does the cluster have TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor} "
                "brokers? see the broker's log)"
            ) from error
        except Exception as error:
            if time.monotonic() + delay > deadline:
                raise TimeoutError(f"Kafka at {settings.kafka_bootstrap_servers} did not answer: {error!r}") from error
            log.warning("Kafka not reachable yet (%r); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if missing:
            raise TopicsMissing(
                f"not created: {', '.join(missing)} (does the cluster have TOPIC_REPLICATION_FACTOR="
                f"{settings.topic_replication_factor} brokers? see the broker's log)"
            )
        return created


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, read the settings from the environment and create the topics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--wait-s", type=float, default=120.0, help="how long to retry while Kafka does not answer")
    parser.add_argument(
        "--consumers", default=",".join(CONSUMERS), help="comma-separated consumer groups that get a dead-letter topic"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        settings = TopicSettings()
    except ValidationError as error:
        failure = ConfigError(describe_validation_error(error))
        print(failure, file=sys.stderr)
        return 2
    consumers = [c.strip() for c in args.consumers.split(",") if c.strip()]
    try:
        created = asyncio.run(create_topics(settings, consumers=consumers, wait_s=args.wait_s))
    except (TimeoutError, TopicsMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    names = topic_names(settings.topic_prefix, consumers)
    print(f"topics ready ({len(created)} created, {len(names) - len(created)} already there): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
