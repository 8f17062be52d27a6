"""Completions per second through the assignment service's HTTP API, against the same transaction done directly.

The service runs in this process under uvicorn on a free port (real HTTP over loopback, JSON,
JWT verification, Idempotency-Key), with its outbox relay publishing to the real Kafka broker.
``WORKERS`` concurrent clients each record completions of their own open one-off assignments.
The baseline, measured in the same run at the same concurrency, is the same MongoDB transaction
done directly with PyMongo, one per completion: the statements the service runs for a completion
(read the assignment, check the occurrence, count it, insert the resolution, outbox record, audit
entry and remembered response, commit), into collections with the service's indexes. A stricter
floor, only the two inserts a completion cannot do without, is reported beside it. Baseline, API
and floor alternate in rounds, so a change in the (shared) machine's load falls on all three.

Relay lag is read from the outbox records themselves: ``sent_at`` (Kafka acknowledged the
record) minus ``created_at`` (staged in the transaction), for every record of the run.

Run alone: ``uv run python -m tests.bench.run_all assignment``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_assignment.app import create
from homework_assignment.config import AssignmentSettings
from homework_assignment.domain import Assignment, AssignmentContent, record_completion
from homework_assignment.events_out import resolution_event
from homework_assignment.store import AssignmentStore, assignment_doc, audit_entry, resolution_doc
from homework_shared.auth import Principal, Role
from homework_shared.auth.mint import mint_token
from homework_shared.events import Topics
from homework_shared.events.values import CompletionStatus, HomeworkKind, OnceSchedule
from homework_shared.idempotency import remembered
from homework_shared.outbox import Outbox
from homework_shared.schedule import to_local
from homework_shared.service import Runtime
from tests.bench.common import Figure, percentile
from tests.conftest import unique, wait_for
from tests.infra import Infra

WORKERS = int(os.environ.get("BENCH_WORKERS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
API_SECONDS = float(os.environ.get("BENCH_API_SECONDS", "8"))
BASELINE_SECONDS = float(os.environ.get("BENCH_BASELINE_SECONDS", "4"))
UVICORN_SECONDS = float(os.environ.get("BENCH_UVICORN_SECONDS", "6"))
PER_WORKER = 1000
COMMAND = "uv run python -m tests.bench.run_all assignment"
DIRECT = "the completion's transaction done directly with PyMongo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seed(store: AssignmentStore, practice: str, workers: int, per_worker: int) -> list[list[str]]:
    """One client per worker, each with ``per_worker`` one-off mood logs open now; inserted directly."""
    now = datetime.now(UTC)
    opens = to_local(now - timedelta(minutes=5), "Europe/Berlin").replace(second=0, microsecond=0)
    schedule = OnceSchedule(timezone="Europe/Berlin", opens_at=opens, due_at=opens + timedelta(days=1))
    content = AssignmentContent(kind=HomeworkKind.MOOD_LOG, title="Mood", instructions="Rate it.", schedule=schedule)
    template = Assignment.create(
        id="asg-bench", practice_id=practice, client_id="client", therapist_id="therapist-1", content=content, now=now
    )
    ids: list[list[str]] = []
    for w in range(workers):
        batch = [
            replace(template, id=f"asg-bench-{w}-{n}-{secrets.token_hex(3)}", client_id=f"client-{w}")
            for n in range(per_worker)
        ]
        await store.assignments.insert_many([assignment_doc(a) for a in batch])
        ids.append([f"{a.id}@{opens:%Y-%m-%dT%H:%M}" for a in batch])
    return ids


@dataclass(frozen=True)
class _Sample:
    """The documents the service writes for one mood-log completion, built once before timing starts."""

    assignment: dict[str, Any]
    resolution: dict[str, Any]
    record: dict[str, Any]
    audit: dict[str, Any]
    remembered: dict[str, Any]


def _sample_documents(outbox: Outbox) -> _Sample:
    """A completion's documents exactly as the service writes them (assignment, resolution, outbox, audit, key)."""
    now = datetime.now(UTC)
    opens = to_local(now, "Europe/Berlin").replace(second=0, microsecond=0)
    schedule = OnceSchedule(timezone="Europe/Berlin", opens_at=opens, due_at=opens + timedelta(days=1))
    content = AssignmentContent(kind=HomeworkKind.MOOD_LOG, title="Mood", instructions="Rate it.", schedule=schedule)
    a = Assignment.create(id="asg-b", practice_id="p", client_id="c", therapist_id="t", content=content, now=now)
    r = record_completion(
        a,
        f"asg-b@{opens:%Y-%m-%dT%H:%M}",
        now,
        id="cmp-b",
        recorded_by="c",
        status=CompletionStatus.DONE,
        percent=None,
        quality_rating=7,
        data={"mood": 6},
        note="ok",
        completed_at=None,
    )
    principal = Principal(sub="c", role=Role.CLIENT, practice_id="p")
    body = {"id": r.id, "status": "done"}
    return _Sample(
        assignment=assignment_doc(a),
        resolution=resolution_doc(r),
        record=outbox.prepare(resolution_event(r, a.content.kind)),
        audit=audit_entry(principal, r.type, a, a, now, occurrence_id=r.occurrence.occurrence_id),
        remembered=remembered("c", "key", "POST /v1/... sha", 201, body),
    )


async def _api_run(
    http: httpx.AsyncClient, practice: str, occurrences: list[list[str]], seconds: float
) -> tuple[int, list[float], float]:
    """``WORKERS`` clients post completions of their own occurrences for ``seconds``; count, latencies, elapsed."""
    latencies: list[float] = []
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        token = mint_token(sub=f"client-{w}", role="client", practice_id=practice, ttl_s=3600)
        headers = {"Authorization": f"Bearer {token}"}
        while occurrences[w] and time.monotonic() < deadline:
            occurrence_id = occurrences[w].pop()
            assignment_id = occurrence_id.split("@")[0]
            started = time.perf_counter()
            response = await http.post(
                f"/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/completion",
                json={"status": "done", "quality_rating": 7, "data": {"mood": 6}, "note": "ok"},
                headers={**headers, "Idempotency-Key": secrets.token_hex(8)},
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise RuntimeError(f"completion failed: {response.status_code} {response.text}")
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    return done, latencies, time.monotonic() - started


async def _baseline(uri: str, seconds: float, *, full: bool) -> tuple[int, list[float], float]:
    """A completion's transaction done directly with PyMongo, one transaction per completion.

    ``full``: the same transaction the service runs for a completion, statement for statement:
    read the assignment, check the occurrence is not resolved, count the resolution on the
    assignment, insert the resolution, its outbox record, its audit entry and its remembered
    Idempotency-Key response, commit. Otherwise a stricter floor: only the resolution and its
    outbox record. Into collections with the service's own indexes, with documents of the
    service's own shape, built before timing starts.
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    db = client[unique("bench-baseline")]
    store = AssignmentStore(db)
    await store.ensure_indexes()
    outbox = Outbox(db, Topics(prefix="baseline"), source="/homework/assignment")
    await outbox.ensure_indexes()
    sample = _sample_documents(outbox)
    # One assignment per worker, as in the API run (each client completes their own).
    await store.assignments.insert_many([{**sample.assignment, "_id": f"asg-{w}"} for w in range(WORKERS)])
    latencies: list[float] = []
    done = 0
    deadline = time.monotonic() + seconds

    async def completion(session: AsyncClientSession, w: int, n: int) -> None:
        """Client ``w``'s ``n``-th completion: the statements of one transaction."""
        assignment_id, occurrence_id = f"asg-{w}", f"asg-{w}-{n}@2026-03-21T20:00"
        if full:
            if await store.assignments.find_one({"_id": assignment_id}, session=session) is None:
                raise RuntimeError("baseline assignment missing")
            if await store.resolutions.find_one({"_id": occurrence_id}, session=session) is not None:
                raise RuntimeError("baseline occurrence already resolved")
            await store.assignments.update_one({"_id": assignment_id}, {"$inc": {"resolved_count": 1}}, session=session)
        await store.resolutions.insert_one(
            {**sample.resolution, "_id": occurrence_id, "id": f"cmp-{w}-{n}"}, session=session
        )
        await outbox.collection.insert_one(
            {**sample.record, "_id": secrets.token_hex(16), "seq": time.time_ns()}, session=session
        )
        if full:
            await store.audit_log.insert_one({**sample.audit, "_id": f"aud-{w}-{n}"}, session=session)
            await store.idempotency_keys.insert_one(
                {**sample.remembered, "_id": f"c:{w}-{n}", "created_at": datetime.now(UTC)}, session=session
            )

    async def worker(w: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < deadline:
            n += 1
            started = time.perf_counter()
            async with client.start_session() as session:
                # with_transaction retries a transient error (a write conflict), as the service does.
                await session.with_transaction(
                    functools.partial(completion, w=w, n=n), write_concern=WriteConcern("majority")
                )
            latencies.append(time.perf_counter() - started)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    elapsed = time.monotonic() - started
    await client.drop_database(db.name)
    await client.close()
    return done, latencies, elapsed


async def main(infra: Infra) -> list[Figure]:
    port = _free_port()
    settings = AssignmentSettings(
        environment="development",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("bench-assignment"),
        topic_prefix=unique("bench"),
        http_port=port,
        http_host="127.0.0.1",
        log_level="WARNING",
        end_sweep_interval_s=60,
    )
    app = create(settings)
    rt: Runtime = app.state.runtime
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    api, base, floor, http_api, http_base = Tally(), Tally(), Tally(), Tally(), Tally()
    try:
        await wait_for(lambda: _true(server.started), timeout=60, message="uvicorn started")
        await wait_for(lambda: _true(rt.kafka_ready.is_set()), timeout=60, message="Kafka connected")
        practice = unique("practice")
        occurrences = await _seed(AssignmentStore(rt.db), practice, WORKERS, PER_WORKER)
        # Interleaved rounds, so a change in the machine's load hits both sides alike.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bench", timeout=30) as http:
            for _ in range(ROUNDS):
                base.add(*await _baseline(infra.mongodb_uri, BASELINE_SECONDS, full=True))
                api.add(*await _api_run(http, practice, occurrences, API_SECONDS))
                floor.add(*await _baseline(infra.mongodb_uri, BASELINE_SECONDS, full=False))
        load_ended = time.monotonic()
        await wait_for(lambda: _backlog_empty(rt), timeout=120, interval=0.05, message="relay drained")
        drain_s = time.monotonic() - load_ended
        lags = [
            (doc["sent_at"] - doc["created_at"]).total_seconds()
            async for doc in rt.outbox.collection.find({"state": "sent"}, {"sent_at": 1, "created_at": 1})
        ]
        limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
            http_api.add(*await _api_run(http, practice, occurrences, UVICORN_SECONDS))
        http_base.add(*await _baseline(infra.mongodb_uri, BASELINE_SECONDS, full=True))
        batches = _histogram_mean(app, "resolution_batch_size")
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    return [
        Figure(
            name="completions through the API",
            value=api.rate,
            unit="completions/s",
            baseline_name=DIRECT,
            baseline_value=base.rate,
            goal="ratio >= 1.0",
            command=COMMAND,
            notes=f"{WORKERS} concurrent clients, {ROUNDS} interleaved rounds of {BASELINE_SECONDS:.0f}s baseline, "
            f"{API_SECONDS:.0f}s API, {BASELINE_SECONDS:.0f}s floor; the baseline runs the service's statements for "
            "one completion (read the assignment, check the occurrence, count it on the assignment, insert the "
            "resolution, outbox record, audit entry and Idempotency-Key response, commit), one transaction per "
            f"completion; {api.done} completions through the ASGI app in-process (httpx "
            "ASGITransport: middleware, JWT, validation, JSON; no sockets), Idempotency-Key on every request; "
            f"{batches:.1f} completions per transaction on average (group commit); baseline rounds "
            f"{base.rounds}/s, API rounds {api.rounds}/s; "
            f"relay backlog empty {drain_s:.2f}s after the load stopped",
        ),
        Figure(
            name="completions through the API, against a two-insert floor",
            value=api.rate,
            unit="completions/s",
            baseline_name="only the resolution and outbox inserts, committed",
            baseline_value=floor.rate,
            command=COMMAND,
            notes="a stricter comparison than the goal's: the floor leaves out the assignment read and count, "
            "the audit entry and the Idempotency-Key response, which the service must write; floor rounds "
            f"{floor.rounds}/s",
        ),
        Figure(
            name="completions over real HTTP (uvicorn, loopback)",
            value=http_api.rate,
            unit="completions/s",
            baseline_name=DIRECT,
            baseline_value=http_base.rate,
            command=COMMAND,
            notes="the same app served by uvicorn in this process; the load generator (httpx) shares the "
            "process and its core, so this is a floor",
        ),
        Figure(
            name="completion latency p50",
            value=percentile(api.latencies, 50) * 1000,
            unit="ms",
            baseline_name="direct transaction p50",
            baseline_value=percentile(base.latencies, 50) * 1000,
            command=COMMAND,
            higher_is_better=False,
        ),
        Figure(
            name="completion latency p99",
            value=percentile(api.latencies, 99) * 1000,
            unit="ms",
            baseline_name="direct transaction p99",
            baseline_value=percentile(base.latencies, 99) * 1000,
            command=COMMAND,
            higher_is_better=False,
        ),
        Figure(
            name="relay lag p99 (staged to Kafka ack)",
            value=percentile(lags, 99) * 1000,
            unit="ms",
            baseline_name="relay lag p50",
            baseline_value=percentile(lags, 50) * 1000,
            goal="< 200 ms",
            command=COMMAND,
            higher_is_better=False,
            notes=f"{len(lags)} records at the API rate above, from the outbox records (sent_at - created_at); "
            "a record is created inside its transaction, before the commit, so this bounds commit-to-ack from above",
        ),
    ]


@dataclass
class Tally:
    """Completions, latencies and time of one side of the comparison, over its rounds."""

    done: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def add(self, done: int, latencies: list[float], seconds: float) -> None:
        self.done += done
        self.seconds += seconds
        self.latencies += latencies
        self.rates.append(done / seconds if seconds else 0.0)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def rounds(self) -> str:
        """Each round's rate, for the notes: ``"372, 351, 357"``."""
        return ", ".join(f"{r:.0f}" for r in self.rates)


def _histogram_mean(app: FastAPI, name: str) -> float:
    registry: CollectorRegistry = app.state.metrics_registry
    total = registry.get_sample_value(f"{name}_sum") or 0.0
    count = registry.get_sample_value(f"{name}_count") or 0.0
    return total / count if count else 0.0


async def _true(value: bool) -> bool:
    return value


async def _backlog_empty(rt: Runtime) -> bool:
    return await rt.relay.pending() == 0
