"""Replay what a consumer group parked: ``python -m homework_shared.dlq_replay --group G [--since 2h] [--dry-run]``.

Reads the group's dead-letter topic (``<prefix>.<group>.dead-letter``) from the start, or from
``--since`` (an ISO 8601 instant, UTC when it has no offset, or a span back from now: ``90m``,
``2h``, ``3d``), up to its end offsets when the command starts, so records parked again while it
runs wait for the next replay. Each record parked by that group is re-published to its original
topic with its original key, value and headers (the ``dlq_*`` headers removed), plus
``dlq_replay_count`` (one more than the record carried) and ``dlq_replayed_from``
(``topic/partition@offset``). The consumers apply a replayed record once: a record that was
never applied left no processed-event id, so it is applied now; one that was applied is
skipped as a duplicate, so replaying twice changes nothing.

Guards: a record already replayed ``--max-replays`` times (``DLQ_MAX_REPLAYS``, default 3) is
skipped, so a record that fails again and again cannot loop between the topics; a record is
re-published only to one of this deployment's event streams (a ``dlq_original_topic`` header
naming any other topic is refused); ``--dry-run`` lists what would be replayed and publishes
nothing. One JSON line per record goes to stdout (``action``: ``replayed``, ``would_replay``,
``skipped_max_replays``, ``skipped_superseded`` (a later copy of the same event, parked again after a
replay, is the one replayed), ``skipped_foreign_topic``, ``skipped_other_group``), a summary to stderr.
Exit code 0 on success, 1 if Kafka failed, 2 on bad configuration or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import Field, ValidationError

from homework_shared.events.topics import Topics
from homework_shared.settings import ConfigError, KafkaConnectionSettings, describe_validation_error

log = logging.getLogger("homework_shared.dlq_replay")

REPLAY_COUNT = "dlq_replay_count"
REPLAYED_FROM = "dlq_replayed_from"

Action = Literal[
    "replayed",
    "would_replay",
    "skipped_max_replays",
    "skipped_superseded",
    "skipped_foreign_topic",
    "skipped_other_group",
]


class ReplaySettings(KafkaConnectionSettings):
    """How to reach Kafka (the services' variables) and which deployment's topics to read and write."""

    topic_prefix: str = "homework"
    # Replays of one record at most: a record parked again after this many replays stays parked.
    dlq_max_replays: int = Field(default=3, ge=1, le=100)


@dataclass(frozen=True)
class Parked:
    """One record of a dead-letter topic, with where it came from and why it was parked."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        value = next((v for k, v in self.headers if k == name), None)
        return value.decode("utf-8", "replace") if value is not None else None

    @property
    def replays(self) -> int:
        try:
            return int(self.header(REPLAY_COUNT) or 0)
        except ValueError:
            return 0

    @property
    def identity(self) -> str:
        """The event this record carries (its ``ce_id``), or where it was first read when it has none."""
        event_id = self.header("ce_id")
        if event_id:
            return f"id:{event_id}"
        where = (self.header(k) for k in ("dlq_original_topic", "dlq_original_partition", "dlq_original_offset"))
        return "at:" + "/".join(w or "?" for w in where)

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the record had before it was parked (every ``dlq_*`` header removed)."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq_")]


@dataclass(frozen=True)
class Outcome:
    """What the replay did with one parked record (one JSON line of the command's output)."""

    action: Action
    dead_letter: str
    original_topic: str | None
    key: str | None
    event_id: str | None
    event_type: str | None
    reason: str | None
    failed_at: str | None
    replays: int


_SPAN = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An aware instant from ISO 8601 (UTC when it has no offset) or a span back from now (``90m``, ``2h``, ``3d``)."""
    span = _SPAN.match(text.strip())
    if span:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[span["unit"]]: float(span["n"])})
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"SINCE {text!r}: give an ISO 8601 instant (2026-12-02T10:00Z) or a span (90m, 2h, 3d)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def read_parked(
    bootstrap_servers: str, topic: str, *, since: datetime | None = None, client_options: dict[str, Any] | None = None
) -> list[Parked]:
    """Every record of ``topic`` (from ``since``, by record time) up to the end offsets it has now, in order."""
    options = client_options or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="homework-dlq-replay", **options)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code") == 3:  # UNKNOWN_TOPIC_OR_PARTITION
        raise LookupError(f"dead-letter topic {topic} does not exist: is the group or TOPIC_PREFIX misspelt?")
    if described.get("error_code"):
        raise LookupError(f"dead-letter topic {topic} cannot be read (error code {described['error_code']})")
    parts = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, client_id="homework-dlq-replay", **options
    )
    await reader.start()
    try:
        reader.assign(parts)
        ends = await reader.end_offsets(parts)
        # Explicit offsets: seek_to_beginning's lazy reset can race the first position() and start at the end.
        starts = await reader.beginning_offsets(parts)
        found = {}
        if since is not None:
            found = await reader.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in parts})
        for tp in parts:
            stamp = found.get(tp)
            reader.seek(tp, starts[tp] if since is None else stamp.offset if stamp is not None else ends[tp])
        out: list[Parked] = []
        pending = {tp for tp in parts if await reader.position(tp) < ends[tp]}
        while pending:
            batch = await reader.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                out.extend(
                    Parked(r.partition, r.offset, r.key, r.value, tuple(r.headers))
                    for r in records
                    if r.offset < ends[tp]
                )
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
        return sorted(out, key=lambda p: (p.partition, p.offset))
    finally:
        await reader.stop()


def decide(
    parked: Parked, *, group: str, streams: set[str], max_replays: int, dry_run: bool, latest: bool = True
) -> Action:
    """What to do with one parked record; ``latest``: no copy of its event was replayed more often."""
    if parked.header("dlq_consumer_group") != group:
        return "skipped_other_group"
    if parked.header("dlq_original_topic") not in streams:
        return "skipped_foreign_topic"
    if not latest:
        return "skipped_superseded"
    if parked.replays >= max_replays:
        return "skipped_max_replays"
    return "would_replay" if dry_run else "replayed"


async def replay(
    settings: ReplaySettings,
    group: str,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    max_replays: int | None = None,
) -> list[Outcome]:
    """Re-publish the records ``group`` parked (since ``since``) to their original topics; see the module docstring."""
    topics = Topics(prefix=settings.topic_prefix)
    dead_letter = topics.dead_letter(group)
    limit = max_replays if max_replays is not None else settings.dlq_max_replays
    options = settings.kafka_client_options()
    parked = await read_parked(settings.kafka_bootstrap_servers, dead_letter, since=since, client_options=options)
    streams = set(topics.all_streams())
    # An event replayed and parked again is on the topic once per replay: only its most replayed copy counts,
    # so each replay moves it one step towards the limit instead of starting from zero again.
    latest: dict[str, Parked] = {}
    for p in parked:
        best = latest.get(p.identity)
        if best is None or p.replays >= best.replays:
            latest[p.identity] = p
    outcomes: list[Outcome] = []
    chosen: list[Parked] = []
    for p in parked:
        action = decide(
            p, group=group, streams=streams, max_replays=limit, dry_run=dry_run, latest=latest[p.identity] is p
        )
        if action == "replayed":
            chosen.append(p)
        outcomes.append(
            Outcome(
                action=action,
                dead_letter=f"{dead_letter}/{p.partition}@{p.offset}",
                original_topic=p.header("dlq_original_topic"),
                key=p.key.decode("utf-8", "replace") if p.key is not None else None,
                event_id=p.header("ce_id"),
                event_type=p.header("ce_type"),
                reason=p.header("dlq_reason"),
                failed_at=p.header("dlq_failed_at"),
                replays=p.replays,
            )
        )
    if chosen:
        await _republish(settings, dead_letter, chosen, options)
    return outcomes


async def _republish(
    settings: ReplaySettings, dead_letter: str, records: list[Parked], options: dict[str, Any]
) -> None:
    # The services' producer guarantees: every in-sync replica, idempotent (no duplicate on a retry), in order.
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        client_id="homework-dlq-replay",
        **options,
    )
    await producer.start()
    try:
        sent = []
        for p in records:
            headers = [
                *p.original_headers(),
                (REPLAY_COUNT, str(p.replays + 1).encode()),
                (REPLAYED_FROM, f"{dead_letter}/{p.partition}@{p.offset}".encode()),
            ]
            topic = p.header("dlq_original_topic")
            assert topic is not None
            sent.append(await producer.send(topic, p.value, key=p.key, headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--group", required=True, help="the consumer group whose dead-letter topic is replayed")
    parser.add_argument("--since", help="only records parked since: ISO 8601 instant (UTC if no offset) or 90m/2h/3d")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; publish nothing")
    parser.add_argument("--max-replays", type=int, help="skip records replayed this often (default DLQ_MAX_REPLAYS)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, read the Kafka settings from the environment, replay and report."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        settings = ReplaySettings()
    except ValidationError as error:
        print(ConfigError(describe_validation_error(error)), file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.max_replays is not None and args.max_replays < 1:
        print("error: --max-replays must be at least 1", file=sys.stderr)
        return 2
    try:
        outcomes = asyncio.run(
            replay(settings, args.group, since=since, dry_run=args.dry_run, max_replays=args.max_replays)
        )
    except Exception as error:  # noqa: BLE001 - reported as one line; the Job's retry policy decides what next
        print(f"error: replay of {args.group!r} failed: {error!r}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        print(json.dumps(asdict(outcome)))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing parked"
    print(f"{Topics(prefix=settings.topic_prefix).dead_letter(args.group)}: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
