"""``python -m homework_insights.rebuild``: recompute every figure from the topics and compare with the live ones.

Reads the assignment and reminder topics from their earliest offset up to their end at start
(its own consumer, no group, nothing committed), applies every event with the same code as the
live consumer into a fresh database (deduplicated on the event id, one transaction per event;
an event that cannot be decoded or applied is skipped, as the live consumer parks it), then
compares every client's figures (with flags), the flags each assignment holds active, streaks
and held events, read at the same instant, with the live database. Alert episodes are not
compared: how many were raised depends on how the two topics interleaved when they were read.
Prints the differences; exit code 1 if there is any.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from homework_insights.config import InsightsSettings
from homework_insights.figures import client_figures
from homework_insights.store import ASSIGNMENTS, CLIENTS, HELD, THRESHOLDS, Doc, MongoStore, ensure_indexes
from homework_insights.unit_of_work import Context
from homework_insights.usecases import apply_event
from homework_shared.clock import clock_from
from homework_shared.consumer import PROCESSED
from homework_shared.events import EventDecodeError, Topics, decode
from homework_shared.mongo import make_mongo_client, run_in_transaction
from homework_shared.outbox import Outbox
from homework_shared.settings import load_settings

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    """What a rebuild read, applied and found different."""

    database: str
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.differences


async def read_topics(bootstrap: str, topics: list[str], stall_timeout_s: float = 30.0) -> AsyncIterator[list[Any]]:
    """The records of ``topics``, batch by batch, from the earliest offset up to the end offsets seen at start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or await _parts(consumer, t))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        progress = time.monotonic()
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            records = [r for tp, items in batch.items() for r in items if r.offset < ends[tp]]
            if records:
                progress = time.monotonic()
                yield records
            elif time.monotonic() - progress > stall_timeout_s:
                raise TimeoutError(f"no record for {stall_timeout_s:g}s before the end of the topics")
    finally:
        await consumer.stop()


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # aiokafka has no public metadata refresh
    return consumer.partitions_for_topic(topic) or set()


async def rebuild(
    settings: InsightsSettings, database: str, *, now: datetime | None = None, drop: bool = False
) -> RebuildReport:
    """Recompute the figures into ``database`` from the topics and compare them with the live database."""
    mongo = make_mongo_client(settings)
    topics = Topics(prefix=settings.topic_prefix)
    report = RebuildReport(database)
    try:
        fresh = mongo[database]
        await ensure_indexes(fresh)
        # Thresholds are the therapists' settings, not derived from events: the rebuild starts from the live ones.
        thresholds = await mongo[settings.mongodb_database][THRESHOLDS].find({}).to_list()
        if thresholds:
            await fresh[THRESHOLDS].insert_many(thresholds)
        outbox = Outbox(fresh, topics, source=f"/homework/{settings.service_name}-rebuild")
        clock = clock_from(settings)
        async for records in read_topics(settings.kafka_bootstrap_servers, [topics.assignment, topics.reminder]):
            for record in records:
                report.records += 1
                await _reapply(mongo, fresh, outbox, settings, clock.now(), record, report)
        at = now or clock.now()
        report.differences = await compare(mongo[settings.mongodb_database], fresh, at)
        if drop:
            await mongo.drop_database(database)
    finally:
        await mongo.close()
    return report


async def _reapply(
    mongo: Any,
    fresh: AsyncDatabase[Doc],
    outbox: Outbox,
    settings: InsightsSettings,
    now: datetime,
    record: Any,
    report: RebuildReport,
) -> None:
    """Apply one record as the live consumer would: once per event id, in a transaction; skip what it would park."""
    try:
        env = decode(record.headers, record.value)
    except EventDecodeError:
        report.skipped += 1
        return

    async def write(session: Any) -> None:
        await fresh[PROCESSED].insert_one({"_id": env.id, "type": env.type, "at": datetime.now(UTC)}, session=session)
        await apply_event(Context(MongoStore(fresh, session, outbox), now, settings.reminder_effect_hours), env)

    try:
        await run_in_transaction(mongo, write)
        report.applied += 1
    except DuplicateKeyError:
        report.duplicates += 1
    except Exception as exc:  # noqa: BLE001 - the live consumer parks such an event
        log.warning("skipping event %s (%s): %s", env.id, env.type, exc)
        report.skipped += 1


async def snapshot(db: AsyncDatabase[Doc], at: datetime) -> dict[str, Any]:
    """Every client's figures (with flags) at ``at``, active flags, streaks and held events: what must be equal."""
    store = MongoStore(db)
    out: dict[str, Any] = {}
    keyed = {"client_id": {"$exists": True}}  # not the documents of before the tenancy keys (migrate.py)
    for client in await db[CLIENTS].find(keyed, {"practice_id": 1, "client_id": 1}).to_list():
        practice_id, client_id = client["practice_id"], client["client_id"]
        figures = await client_figures(store, practice_id, client_id, at, with_flags=True)
        figures["assignments"] = {a["assignment_id"]: a for a in figures["assignments"]}
        out[f"client {practice_id}/{client_id}"] = figures
    for a in await db[ASSIGNMENTS].find({}, {"flags": 1, "streak": 1, "state": 1, "version": 1}).to_list():
        kept = {k: a.get(k) for k in ("streak", "state", "version")}
        # Which flags hold now must agree; how many episodes were raised on the way need not: it depends on
        # how the two topics interleaved when read (e.g. a pause read after a "missed" of the same time).
        # Threshold flags are left out here: the live ones were judged with the thresholds of their time, the
        # rebuilt ones with today's; the figures above judge both with today's.
        kept["active_flags"] = sorted(
            key
            for key, f in (a.get("flags") or {}).items()
            if f.get("active") and not key.startswith("rating_threshold_crossed")
        )
        out[f"assignment {a['_id']}"] = kept
    out["held"] = sorted(h["_id"] for h in await db[HELD].find({}, {"_id": 1}).to_list())
    return out


async def compare(live: AsyncDatabase[Doc], rebuilt: AsyncDatabase[Doc], at: datetime) -> list[str]:
    """The differences between the live and the rebuilt figures, one line each (empty when exact)."""
    return diff(await snapshot(live, at), await snapshot(rebuilt, at))


def diff(live: Any, rebuilt: Any, path: str = "") -> list[str]:
    """Paths where two JSON-like values differ."""
    if isinstance(live, dict) and isinstance(rebuilt, dict):
        out: list[str] = []
        for key in sorted(set(live) | set(rebuilt), key=str):
            out += diff(live.get(key), rebuilt.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(live, list) and isinstance(rebuilt, list) and len(live) == len(rebuilt):
        return [d for i, (a, b) in enumerate(zip(live, rebuilt, strict=True)) for d in diff(a, b, f"{path}[{i}]")]
    if isinstance(live, float) and isinstance(rebuilt, float) and abs(live - rebuilt) < 1e-9:
        return []
    return [] if live == rebuilt else [f"{path}: live={live!r} rebuilt={rebuilt!r}"]


def main(argv: list[str] | None = None) -> int:
    """Rebuild, print the differences, exit 1 if any."""
    parser = argparse.ArgumentParser(prog="python -m homework_insights.rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--database", help="the fresh database (default: <live>_rebuild_<time>)")
    parser.add_argument("--keep", action="store_true", help="keep the rebuilt database for inspection")
    args = parser.parse_args(argv)
    settings = load_settings(InsightsSettings)
    database = args.database or f"{settings.mongodb_database}_rebuild_{int(time.time())}"
    report = asyncio.run(rebuild(settings, database, drop=not args.keep))
    print(
        f"read {report.records} records: applied {report.applied}, duplicates {report.duplicates}, "
        f"skipped {report.skipped}"
    )
    for line in report.differences:
        print(f"DIFFERENT {line}")
    print("rebuild equals live" if report.exact else f"{len(report.differences)} differences")
    return 0 if report.exact else 1


if __name__ == "__main__":
    sys.exit(main())
