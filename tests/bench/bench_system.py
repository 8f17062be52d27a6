"""The whole platform as separate processes: end-to-end completions/s and latency, RSS, start-up time.

* **End to end**: ``WORKERS`` concurrent clients record ``COMPLETIONS`` completions through the
  assignment API (real HTTP to the service process); for each, the latency runs from the 201 to
  the insights service having applied it, seen on a MongoDB change stream of the insights
  ``occurrences`` collection. Baselines in the same run: aiokafka producing and consuming the same
  number of messages of the same size (rate and produce-to-consume latency), and the same
  MongoDB writes done directly with PyMongo (the completion's transaction, then the insights
  update), at the same concurrency.
* **RSS** of each service idle (after start-up) and its peak under that load, read from
  ``/proc/<pid>/status``; baseline: a minimal FastAPI app under uvicorn in the same interpreter.
* **Start-up**: spawn to ``/readyz`` answering 200, per service; baseline: the same minimal app
  to its first 200.

Run alone: ``uv run python -m tests.bench.run_all system``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from homework_shared.auth.mint import mint_token
from tests.bench.common import Figure, median, percentile
from tests.conftest import unique
from tests.e2e.system import Deployment, deploy
from tests.infra import Infra

WORKERS = int(os.environ.get("BENCH_WORKERS", "16"))
COMPLETIONS = int(os.environ.get("BENCH_E2E_COMPLETIONS", "1000"))
CLIENTS = 50
COMMAND = "uv run python -m tests.bench.run_all system"
CHART = Path("docs/benchmarks-latency.svg")
MINIMAL_APP = """
import os, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/readyz")
async def ready(): return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310
            if r.status == 200:
                return time.perf_counter() - start
        time.sleep(0.02)
    raise TimeoutError(url)


def minimal_app() -> tuple[float, float]:
    """Start-up seconds and RSS (MB) of a minimal FastAPI app under uvicorn: the baseline."""
    from devstack import free_port

    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", MINIMAL_APP], env={**os.environ, "PORT": str(port)})
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        seconds = time.perf_counter() - started
        time.sleep(1)
        return seconds, rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


async def create_open_occurrences(d: Deployment) -> list[tuple[str, str, str, str]]:
    """One-off assignments open now: (client, practice, assignment id, occurrence id) per completion to record."""
    practice = "practice-bench"
    therapist = {"Authorization": f"Bearer {mint_token(sub='t-bench', role='therapist', practice_id=practice)}"}
    now = datetime.now(UTC)
    opens = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)
    due = now + timedelta(hours=6)
    out: list[tuple[str, str, str, str]] = []
    sem = asyncio.Semaphore(WORKERS)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        client = f"c{i % CLIENTS}-{d.prefix[-6:]}"
        body = {
            "client_id": client,
            "kind": "mood_log",
            "title": f"Mood {i}",
            "instructions": "Rate your mood.",
            "schedule": {
                "type": "once",
                "timezone": "UTC",
                "opens_at": opens.strftime("%Y-%m-%dT%H:%M:%S"),
                "due_at": due.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        }
        async with sem:
            r = await http.post(f"{d.processes['assignment'].url}/v1/assignments", json=body, headers=therapist)
        r.raise_for_status()
        aid = r.json()["id"]
        out.append((client, practice, aid, f"{aid}@{opens:%Y-%m-%dT%H:%M}"))

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(one(http, i) for i in range(COMPLETIONS)))
    return out


async def end_to_end(d: Deployment, work: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """Record every completion; latency from each 201 to the insights update of its occurrence."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(d.infra.mongodb_uri)
    insights = mongo[d.database("insights")]["occurrences"]
    accepted: dict[str, float] = {}
    applied: dict[str, float] = {}
    done = asyncio.Event()
    stream = await insights.watch(full_document="updateLookup")

    async def watch() -> None:
        async for change in stream:
            oid = change.get("documentKey", {}).get("_id")
            doc = change.get("fullDocument") or {}
            if oid and oid not in applied and doc.get("resolution"):
                applied[oid] = time.perf_counter()
                if len(applied) >= len(work):
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    tokens = {c: mint_token(sub=c, role="client", practice_id=p) for c, p, _, _ in work}
    queue: asyncio.Queue[tuple[str, str, str, str]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    peak: dict[str, float] = {name: 0.0 for name in d.processes}
    sampling = True

    async def sample() -> None:
        while sampling:
            for name, p in d.processes.items():
                if p.proc is not None:
                    peak[name] = max(peak[name], rss_mb(p.proc.pid))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            client, _, aid, oid = queue.get_nowait()
            r = await http.post(
                f"{d.processes['assignment'].url}/v1/assignments/{aid}/occurrences/{oid}/completion",
                json={"status": "done", "quality_rating": 7, "data": {"mood": 6}},
                headers={"Authorization": f"Bearer {tokens[client]}"},
            )
            if r.status_code != 201:
                raise RuntimeError(f"completion {oid}: {r.status_code} {r.text}")
            accepted[oid] = time.perf_counter()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(WORKERS)))
    api_seconds = time.perf_counter() - started
    await asyncio.wait_for(done.wait(), timeout=300)
    total_seconds = time.perf_counter() - started
    sampling = False
    await sampler
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await stream.close()
    await mongo.close()
    latencies = [max(0.0, applied[o] - accepted[o]) * 1000 for o in accepted]
    return {
        "rate": len(work) / total_seconds,
        "api_rate": len(work) / api_seconds,
        "latencies": latencies,
        "peak_rss": peak,
    }


async def kafka_baseline(bootstrap: str, n: int, size: int) -> dict[str, Any]:
    """aiokafka alone: produce ``n`` messages (acks=all, idempotent) and consume them; rate and latency."""
    topic = unique("bench-baseline")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=unique("g"), enable_auto_commit=False
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    try:

        async def consume() -> None:
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=500)
                now = time.perf_counter()
                for records in batch.values():
                    for rec in records:
                        got[int(rec.key)] = now
                if batch:
                    await consumer.commit()

        reader = asyncio.create_task(consume())
        payload = b"x" * size
        started = time.perf_counter()
        sem = asyncio.Semaphore(WORKERS)

        async def send(i: int) -> None:
            async with sem:
                sent[i] = time.perf_counter()
                await producer.send_and_wait(topic, payload, key=str(i).encode())

        await asyncio.gather(*(send(i) for i in range(n)))
        await asyncio.wait_for(reader, timeout=120)
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    return {"rate": n / seconds, "latencies": [(got[i] - sent[i]) * 1000 for i in range(n)]}


async def mongo_baseline(uri: str, n: int) -> float:
    """The same MongoDB writes done directly: the completion's transaction (resolution + outbox) and
    the insights transaction (processed event + occurrence + assignment totals), per completion."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    a, i = mongo[unique("base_a")], mongo[unique("base_i")]
    for coll in (a.resolutions, a.outbox, i.processed_events, i.occurrences, i.assignments):
        await coll.insert_one({"_id": "warm"})
    sem = asyncio.Semaphore(WORKERS)

    async def one(k: int) -> None:
        async with sem, mongo.start_session() as s:
            async with await s.start_transaction():
                await a.resolutions.insert_one({"_id": f"r{k}", "status": "done", "data": {"mood": 6}}, session=s)
                await a.outbox.insert_one({"_id": f"e{k}", "state": "pending", "value": b"x" * 600}, session=s)
            async with await s.start_transaction():
                await i.processed_events.insert_one({"_id": f"e{k}"}, session=s)
                await i.occurrences.insert_one({"_id": f"o{k}", "resolution": "done"}, session=s)
                await i.assignments.update_one(
                    {"_id": f"a{k % CLIENTS}"}, {"$inc": {"done": 1}}, upsert=True, session=s
                )

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(n)))
    seconds = time.perf_counter() - started
    await mongo.drop_database(a.name)
    await mongo.drop_database(i.name)
    await mongo.close()
    return n / seconds


def chart(series: dict[str, list[float]]) -> str:
    """An SVG bar chart of latency percentiles (ms, log scale) per series."""
    marks = [("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)]
    import math

    width, height, left, bottom = 640, 300, 60, 40
    values = {name: [percentile(v, p) for _, p in marks] for name, v in series.items()}
    top = max(max(v) for v in values.values()) or 1
    scale_max = math.log10(top * 2)
    scale_min = math.log10(max(0.1, min(min(v) for v in values.values()) / 2))
    colours = ["#2b6cb0", "#dd6b20", "#38a169"]
    group = (width - left - 20) / len(marks)
    bar = group / (len(series) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>'
    ]

    def y(v: float) -> float:
        frac = (math.log10(max(v, 0.1)) - scale_min) / (scale_max - scale_min)
        return height - bottom - frac * (height - bottom - 20)

    for tick in (1, 10, 100, 1000, 10000):
        if scale_min <= math.log10(tick) <= scale_max:
            parts.append(
                f'<line x1="{left}" x2="{width - 10}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
                f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick} ms</text>'
            )
    for gi, (label, _) in enumerate(marks):
        x0 = left + gi * group
        parts.append(f'<text x="{x0 + group / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">{label}</text>')
        for si, (name, vs) in enumerate(values.items()):
            x = x0 + bar / 2 + si * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{y(vs[gi]):.1f}" width="{bar * 0.9:.1f}" '
                f'height="{height - bottom - y(vs[gi]):.1f}" fill="{colours[si % 3]}"><title>{name} {label}: '
                f"{vs[gi]:.1f} ms</title></rect>"
            )
    for si, name in enumerate(values):
        parts.append(
            f'<rect x="{left + si * 220}" y="4" width="10" height="10" fill="{colours[si % 3]}"/>'
            f'<text x="{left + si * 220 + 14}" y="13">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


async def main(infra: Infra) -> list[Figure]:
    base_start, base_rss = minimal_app()
    with tempfile.TemporaryDirectory(prefix="bench-system-") as tmp, deploy(infra, Path(tmp) / "logs") as d:
        startup: dict[str, float] = {}
        for name, proc in d.processes.items():
            began = time.perf_counter()
            proc.stop()
            proc.start()
            proc.wait_ready(120)
            startup[name] = time.perf_counter() - began
        await asyncio.sleep(3)
        idle = {name: rss_mb(p.proc.pid) for name, p in d.processes.items() if p.proc is not None}
        work = await create_open_occurrences(d)
        await asyncio.sleep(2)
        e2e = await end_to_end(d, work)
    kafka = await kafka_baseline(infra.kafka_bootstrap, COMPLETIONS, 700)
    mongo_rate = await mongo_baseline(infra.mongodb_uri, COMPLETIONS)
    CHART.write_text(
        chart(
            {
                "completion accepted -> insights updated": e2e["latencies"],
                "aiokafka produce -> consume": kafka["latencies"],
            }
        )
    )
    lat = e2e["latencies"]
    figures = [
        Figure(
            "end-to-end completions/s (API accepted to insights applied)",
            e2e["rate"],
            "/s",
            "same MongoDB writes done directly",
            mongo_rate,
            command=COMMAND,
            notes=f"{COMPLETIONS} completions by {WORKERS} concurrent clients over HTTP; the API alone accepted "
            f"{e2e['api_rate']:.0f}/s; aiokafka alone moved {kafka['rate']:.0f} messages/s",
        ),
        Figure(
            "end-to-end p50, completion accepted to insights updated",
            median(lat),
            "ms",
            "aiokafka produce-to-consume p50",
            median(kafka["latencies"]),
            command=COMMAND,
            higher_is_better=False,
        ),
        Figure(
            "end-to-end p99, completion accepted to insights updated",
            percentile(lat, 99),
            "ms",
            "aiokafka produce-to-consume p99",
            percentile(kafka["latencies"], 99),
            command=COMMAND,
            higher_is_better=False,
            notes=f"chart: {CHART.name}",
        ),
    ]
    for name in d.processes:
        figures.append(
            Figure(
                f"{name} start-up (spawn to ready)",
                startup[name],
                "s",
                "minimal FastAPI app",
                base_start,
                command=COMMAND,
                higher_is_better=False,
            )
        )
    for name in d.processes:
        figures.append(
            Figure(
                f"{name} RSS idle",
                idle[name],
                "MB",
                "minimal FastAPI app",
                base_rss,
                command=COMMAND,
                higher_is_better=False,
            )
        )
        figures.append(
            Figure(
                f"{name} RSS peak under the end-to-end load",
                e2e["peak_rss"][name],
                "MB",
                f"{name} idle",
                idle[name],
                command=COMMAND,
                higher_is_better=False,
            )
        )
    return figures
