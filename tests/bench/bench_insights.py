"""The insights service: events applied per second, cost per event and per summary against history, end-to-end lag.

1. **Throughput.** ``THROUGHPUT_EVENTS`` contract events (assignments created, completions,
   reminders, skips) are put on the real Kafka topics, then one insights consumer applies them.
   Baseline, same run: a raw aiokafka consumer reading the same records, doing per record the
   same MongoDB work directly with PyMongo (a transaction: insert the event id, read the
   assignment and the occurrence, update the occurrence, the day and the assignment).
2. **Cost against history.** Two clients with the same hourly assignment: one with 10 events of
   history, one with 100,000 (one assignment of 10,000 hourly occurrences, each with reminders
   and a completion or a miss). The 100,000-event history is folded by the same ``apply_event``
   on the in-memory store and bulk-inserted (with 100,000 processed event ids), not pushed
   through Kafka: that would take longer than the suite may. Then, alternating the two clients,
   the time to apply one completion in a transaction (as the consumer does) and to produce a
   14-day summary (build, store, stage its event). The figure is the ratio 100,000 / 10 (goal < 1.5).
3. **End-to-end lag.** Completions produced at a steady ``E2E_RATE``/s (the goal's 50/s) and at
   ``E2E_SLOW_RATE``/s for ``E2E_SECONDS`` each; for each completion, the time from the send to
   the figures updated (its event id committed with them). Baseline: the same produce-to-consume
   path with a raw aiokafka consumer (no apply), at the same rate.

Run alone: ``uv run python -m tests.bench.run_all insights``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from homework_insights.app import create
from homework_insights.config import InsightsSettings
from homework_insights.store import FIGURE_COLLECTIONS, MemoryStore, MongoStore, ensure_indexes
from homework_insights.summaries import build_summary, summary_event
from homework_insights.unit_of_work import Context
from homework_insights.usecases import apply_event
from homework_shared.clock import ManualClock
from homework_shared.consumer import PROCESSED
from homework_shared.events import Envelope, HomeworkEvent, Topics, encode, envelope
from homework_shared.events.values import Barrier
from homework_shared.kafka import ensure_topics
from homework_shared.mongo import run_in_transaction
from homework_shared.outbox import Outbox
from homework_shared.service import Runtime
from tests.bench.common import Figure, median, percentile
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.unit.insights.builders import PRACTICE, Assignment, daily

THROUGHPUT_EVENTS = int(os.environ.get("BENCH_INSIGHTS_EVENTS", "600"))
HISTORY_EVENTS = int(os.environ.get("BENCH_INSIGHTS_HISTORY", "100000"))
SAMPLES = int(os.environ.get("BENCH_INSIGHTS_SAMPLES", "30"))
E2E_RATE = float(os.environ.get("BENCH_INSIGHTS_RATE", "50"))
E2E_SLOW_RATE = float(os.environ.get("BENCH_INSIGHTS_SLOW_RATE", "20"))
E2E_SECONDS = float(os.environ.get("BENCH_INSIGHTS_SECONDS", "20"))
COMMAND = "uv run python -m tests.bench.run_all insights"
START = datetime(2025, 1, 1, 0, 0)  # local (Berlin) start of the hourly schedules
CREATED = datetime(2024, 12, 31, 12, tzinfo=UTC)


def hourly(aid: str, client: str, count: int = 10_000) -> Assignment:
    return Assignment(aid, daily(START, count, window=30, rrule="FREQ=HOURLY"), client_id=client)


def nth(a: Assignment, n: int) -> datetime:
    return START + timedelta(hours=n)


def settings_for(infra: Infra) -> InsightsSettings:
    return InsightsSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("bench-insights"),
        topic_prefix=unique("bins"),
        topic_partitions=3,
        environment="development",
        log_level="WARNING",
    )


async def _produce(producer: AIOKafkaProducer, topics: Topics, events: list[HomeworkEvent]) -> list[Envelope[Any]]:
    envs = [envelope(e, source=f"/homework/{e.stream}") for e in events]
    futures = []
    for env in envs:
        rec = encode(env)
        futures.append(await producer.send(topics.stream(env.data.stream), rec.value, key=rec.key, headers=rec.headers))
    await asyncio.gather(*futures)
    return envs


def _mixed_events(n: int, tag: str) -> list[HomeworkEvent]:
    """Five clients, each an hourly assignment, then completions, reminders and skips in turn."""
    clients = [hourly(f"asg-{tag}-{c}", f"client-{tag}-{c}") for c in range(5)]
    events: list[HomeworkEvent] = [a.created(CREATED) for a in clients]
    k = 0
    while len(events) < n:
        a = clients[k % 5]
        occ = nth(a, k // 5)
        events.append(a.reminder(occ))
        events.append(a.skipped(occ, Barrier.NO_TIME) if k % 7 == 3 else a.done(occ, quality=k % 10))
        k += 1
    return events[:n]


async def _wait_processed(db: Any, ids: list[str], timeout: float) -> None:
    """Wait until every id is applied; polls twice a second so as not to load the database being measured."""
    pending = list(ids)

    async def done() -> bool:
        found = await db[PROCESSED].find({"_id": {"$in": pending}}, {"_id": 1}).to_list()
        seen = {d["_id"] for d in found}
        pending[:] = [i for i in pending if i not in seen]
        return not pending

    await wait_for(done, timeout=timeout, interval=0.5, message="events applied")


async def throughput(infra: Infra) -> list[Figure]:
    settings = settings_for(infra)
    app = create(settings, clock=ManualClock(datetime(2026, 6, 1, tzinfo=UTC)))
    rt: Runtime = app.state.runtime
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    async with app.router.lifespan_context(app):
        await wait_for(lambda: _true(rt.kafka_ready.is_set()), timeout=60)
        await producer.start()
        try:
            warm = await _produce(producer, rt.topics, _mixed_events(20, "warm"))
            await _wait_processed(rt.db, [e.id for e in warm], 60)
            events = _mixed_events(THROUGHPUT_EVENTS, "run")
            started = time.perf_counter()
            envs = await _produce(producer, rt.topics, events)
            await _wait_processed(rt.db, [e.id for e in envs], 600)
            seconds = time.perf_counter() - started
        finally:
            await producer.stop()
        rate = len(envs) / seconds
    baseline_rate = await _throughput_baseline(infra, rt.topics, [e for e in envs])
    return [
        Figure(
            name="events applied per second, one consumer",
            value=rate,
            unit="events/s",
            baseline_name="raw aiokafka + the same MongoDB transaction per record",
            baseline_value=baseline_rate,
            command=COMMAND,
            notes=f"{len(envs)} events of 5 clients (created, reminder sent, completion or skip), SecantusDB.",
        )
    ]


async def _throughput_baseline(infra: Infra, topics: Topics, envs: list[Envelope[Any]]) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[unique("bench-insights-base")]
    await ensure_indexes(db)
    consumer = AIOKafkaConsumer(
        topics.assignment,
        topics.reminder,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=unique("base"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    wanted = {e.id for e in envs}
    seen = 0
    started = time.perf_counter()
    try:
        while seen < len(wanted):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    event_id = dict(r.headers).get("ce_id", b"").decode()
                    if event_id not in wanted:
                        continue
                    seen += 1

                    async def write(session: Any, event_id: str = event_id, key: bytes = r.key) -> None:
                        await db[PROCESSED].insert_one({"_id": event_id}, session=session)
                        await db.assignments.find_one({"_id": key.decode()}, session=session)
                        await db.occurrences.find_one({"_id": event_id}, session=session)
                        await db.occurrences.update_one(
                            {"_id": event_id}, {"$set": {"x": 1}}, upsert=True, session=session
                        )
                        await db.days.update_one(
                            {"_id": key.decode()}, {"$inc": {"n": 1}}, upsert=True, session=session
                        )
                        await db.assignments.update_one(
                            {"_id": key.decode()}, {"$inc": {"n": 1}}, upsert=True, session=session
                        )

                    await run_in_transaction(client, write)
                await consumer.commit({tp: records[-1].offset + 1})
        return len(wanted) / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await client.drop_database(db.name)
        await client.close()


# ------------------------------------------------------------------ cost against history


async def _fold_history(client_id: str, events: int, first: int) -> tuple[MemoryStore, Assignment, int, int]:
    """Fold ``events`` events of one hourly assignment from occurrence ``first`` on the in-memory store.

    Each occurrence gets 11 reminders and a completion (or, one in four, a miss). Returns the
    store, the assignment, the next occurrence without events, and how many events were applied.
    """
    a = hourly(f"asg-{client_id}", client_id)
    store = MemoryStore()
    applied = 0
    now = datetime(2030, 1, 1, tzinfo=UTC)

    async def apply(e: HomeworkEvent) -> None:
        nonlocal applied
        await apply_event(Context(store, now), envelope(e, source="/bench", event_id=f"{client_id}-{applied}"))
        applied += 1

    await apply(a.created(CREATED))
    n = first
    while applied < events:
        occ = nth(a, n)
        for r in range(min(11, events - applied - 1)):
            ev = a.reminder(occ)
            await apply(ev.model_copy(update={"reminder_id": f"{ev.reminder_id}-{r}"}))
        if applied < events:
            await apply(a.done(occ, quality=n % 10) if n % 4 else a.missed(occ))
        n += 1
    return store, a, n, applied


async def _load(db: Any, store: MemoryStore, processed: int, client_id: str) -> None:
    for name in FIGURE_COLLECTIONS:
        docs = list(store.collections[name].values())
        for i in range(0, len(docs), 5000):
            await db[name].insert_many(docs[i : i + 5000])
    ids = [{"_id": f"{client_id}-{i}", "type": "history", "at": datetime.now(UTC)} for i in range(processed)]
    for i in range(0, len(ids), 10_000):
        await db[PROCESSED].insert_many(ids[i : i + 10_000])


async def history_cost(infra: Infra) -> list[Figure]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[unique("bench-insights-hist")]
    await ensure_indexes(db)
    outbox = Outbox(db, Topics(prefix=unique("h")), source="/bench")
    await outbox.ensure_indexes()
    clients: dict[str, dict[str, Any]] = {}
    folded = time.perf_counter()
    # The small client has the same schedule, and its 10 events on the occurrence just before the one where the
    # large client's history ends: both are measured on the same occurrences, the same days, the same period.
    store, a, next_occ, applied = await _fold_history("large", HISTORY_EVENTS, 0)
    await _load(db, store, applied, "large")
    clients["large"] = {"a": a, "next": next_occ, "applied": applied, "apply": [], "summary": []}
    store, a, _, applied = await _fold_history("small", 10, next_occ - 1)
    await _load(db, store, applied, "small")
    clients["small"] = {"a": a, "next": next_occ, "applied": applied, "apply": [], "summary": []}
    load_seconds = time.perf_counter() - folded
    try:
        for i in range(SAMPLES):
            for client_id in ("small", "large") if i % 2 == 0 else ("large", "small"):
                c = clients[client_id]
                occ = nth(c["a"], c["next"] + i)
                completion = c["a"].done(occ, quality=7)
                now = completion.completed_at + timedelta(minutes=1)
                env = envelope(completion, source="/bench")

                async def apply_one(session: Any, env: Envelope[Any] = env, now: datetime = now) -> None:
                    await db[PROCESSED].insert_one({"_id": env.id, "type": env.type, "at": now}, session=session)
                    await apply_event(Context(MongoStore(db, session, outbox), now), env)

                started = time.perf_counter()
                await run_in_transaction(client, apply_one)
                c["apply"].append(time.perf_counter() - started)

                async def summarise(session: Any, client_id: str = client_id, now: datetime = now) -> None:
                    store = MongoStore(db, session, outbox)
                    doc = await store.client(PRACTICE, client_id)
                    assert doc is not None
                    summary = await build_summary(store, doc, now, start=now - timedelta(days=14))
                    await store.insert_summary(summary)
                    await store.stage(summary_event(summary), f"summary:{summary['_id']}")

                started = time.perf_counter()
                await run_in_transaction(client, summarise)
                c["summary"].append(time.perf_counter() - started)
    finally:
        await client.drop_database(db.name)
        await client.close()
    small, large = clients["small"], clients["large"]
    note = (
        f"{large['applied']:,} events of history folded by the same apply_event in memory and bulk-inserted "
        f"({load_seconds:.0f}s), not sent through Kafka; median of {SAMPLES} alternating samples."
    )
    return [
        Figure(
            name=f"apply one completion, client with {large['applied']:,} events of history",
            value=median(large["apply"]) * 1000,
            unit="ms",
            baseline_name=f"client with {small['applied']} events",
            baseline_value=median(small["apply"]) * 1000,
            goal="ratio < 1.5",
            higher_is_better=False,
            command=COMMAND,
            notes=note,
        ),
        Figure(
            name=f"produce a 14-day summary, client with {large['applied']:,} events of history",
            value=median(large["summary"]) * 1000,
            unit="ms",
            baseline_name=f"client with {small['applied']} events",
            baseline_value=median(small["summary"]) * 1000,
            goal="ratio < 1.5",
            higher_is_better=False,
            command=COMMAND,
            notes="Build, store and stage the summary event in one transaction, as POST /v1/clients/{id}/summaries.",
        ),
    ]


# ------------------------------------------------------------------ end to end


async def end_to_end(infra: Infra) -> list[Figure]:
    """p99 from a completion on Kafka to its figures updated, at the goal's rate and at a rate SecantusDB sustains."""
    figures = []
    for rate in (E2E_RATE, E2E_SLOW_RATE):
        latencies, completions = await _e2e_at(infra, rate)
        baseline = await _e2e_baseline(infra, completions, rate)
        figures.append(
            Figure(
                name=f"completion on Kafka to figures updated, p99 at {rate:g}/s",
                value=percentile(latencies, 99) * 1000,
                unit="ms",
                baseline_name="produce to a raw aiokafka consumer, p99, same rate",
                baseline_value=percentile(baseline, 99) * 1000,
                goal="< 500 ms" if rate == E2E_RATE else "",
                higher_is_better=False,
                command=COMMAND,
                notes=(
                    f"{len(latencies)} completions of 5 clients over {E2E_SECONDS:g}s; p50 "
                    f"{percentile(latencies, 50) * 1000:.0f} ms. Measured from the event on Kafka, not from the "
                    "assignment API."
                ),
            )
        )
    return figures


async def _e2e_at(infra: Infra, rate: float) -> tuple[list[float], list[HomeworkEvent]]:
    settings = settings_for(infra)
    app = create(settings, clock=ManualClock(datetime(2026, 6, 1, tzinfo=UTC)))
    rt: Runtime = app.state.runtime
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    total = int(rate * E2E_SECONDS)
    clients = [hourly(f"asg-e2e-{c}", f"client-e2e-{c}") for c in range(5)]
    completions: list[HomeworkEvent] = [clients[k % 5].done(nth(clients[k % 5], k // 5)) for k in range(total)]
    async with app.router.lifespan_context(app):
        await wait_for(lambda: _true(rt.kafka_ready.is_set()), timeout=60)
        await producer.start()
        try:
            created = await _produce(producer, rt.topics, [a.created(CREATED) for a in clients])
            await _wait_processed(rt.db, [e.id for e in created], 60)
            latencies = await _paced(producer, rt.topics, completions, lambda cb: _watch_applied(rt.db, cb), rate)
        finally:
            await producer.stop()
    return latencies, completions


async def _watch_applied(db: Any, arrived: Callable[[str], None]) -> None:
    """Call ``arrived`` with each event id as its transaction commits (a change stream: no polling load)."""
    async with await db[PROCESSED].watch([{"$match": {"operationType": "insert"}}]) as stream:
        async for change in stream:
            arrived(change["documentKey"]["_id"])


async def _paced(
    producer: AIOKafkaProducer,
    topics: Topics,
    events: list[HomeworkEvent],
    seen: Callable[[Callable[[str], None]], Any],
    rate: float,
) -> list[float]:
    """Send at ``rate``/s; record for each event the time until ``seen`` (a watcher calling back with the ids it
    sees) reports its id."""
    sent_at: dict[str, float] = {}
    latencies: dict[str, float] = {}

    def arrived(event_id: str) -> None:
        if event_id in sent_at and event_id not in latencies:
            latencies[event_id] = time.perf_counter() - sent_at[event_id]

    watcher = asyncio.create_task(seen(arrived))
    await asyncio.sleep(0.5)  # the watcher is listening before the first send
    start = time.perf_counter()
    try:
        for k, e in enumerate(events):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            env = envelope(e, source="/homework/assignment")
            rec = encode(env)
            sent_at[env.id] = time.perf_counter()
            await producer.send(topics.stream(e.stream), rec.value, key=rec.key, headers=rec.headers)
        await wait_for(lambda: _true(len(latencies) == len(sent_at)), timeout=300, interval=0.1)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return list(latencies.values())


async def _e2e_baseline(infra: Infra, events: list[HomeworkEvent], rate: float) -> list[float]:
    topic = unique("bins-e2e-base")
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, group_id=unique("g"), auto_offset_reset="earliest"
    )
    await ensure_topics(
        infra.kafka_bootstrap,
        [topic],
        partitions=3,
        replication_factor=1,
        min_insync_replicas=1,
        retention_ms=3_600_000,
    )
    await producer.start()
    await consumer.start()
    try:

        async def seen(arrived: Callable[[str], None]) -> None:
            while True:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for r in records:
                        arrived(dict(r.headers)["ce_id"].decode())

        class _One:
            def stream(self, _: str) -> str:
                return topic

        return await _paced(producer, _One(), events, seen, rate)  # type: ignore[arg-type]
    finally:
        await consumer.stop()
        await producer.stop()


async def _true(value: bool) -> bool:
    return value


async def main(infra: Infra) -> list[Figure]:
    """Every insights figure, each with its same-run baseline."""
    return [*await throughput(infra), *await history_cost(infra), *await end_to_end(infra)]
