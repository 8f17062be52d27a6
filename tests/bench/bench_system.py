"""The whole platform as separate processes: end-to-end completions/s and latency, RSS, start-up time.

* **End to end, steady**: completions offered at a steady ``STEADY_RATE`` per second (open loop)
  through the assignment API (real HTTP to the service process); for each, the latency runs
  from the 201 to the insights service having applied it, seen on a MongoDB change stream of
  the insights ``occurrences`` collection. Baseline: aiokafka producing and consuming at the
  same pace.
* **End to end, saturated**: ``WORKERS`` concurrent clients record ``COMPLETIONS`` completions
  back to back; the rate the whole system reaches, and the latency with its backlog. Baselines
  in the same run: aiokafka producing and consuming the same number of messages of the same
  size (rate and produce-to-consume latency), and the same MongoDB writes done directly with
  PyMongo (the completion's transaction, then the insights update), at the same concurrency.
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
STEADY_RATE = float(os.environ.get("BENCH_STEADY_RATE", "100"))
STEADY_SECONDS = float(os.environ.get("BENCH_STEADY_SECONDS", "20"))
SEPARATE_DATABASES = os.environ.get("BENCH_SEPARATE_DATABASES", "1") != "0"
"""Each service's database on a server of its own, started for the run."""
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


def own_database_servers(stack: contextlib.ExitStack, root: Path, names: list[str]) -> dict[str, str]:
    """Start a MongoDB-protocol server (the dev stack's SecantusDB) per service named; stopped with ``stack``.

    Each service owns its database; here each also gets its own server, as a deployment that
    gives every service its own cluster would. The local server runs one request at a time
    (one Python process), so one server shared by three services is the bottleneck of the
    whole platform on this machine, which a production MongoDB is not.
    """
    import devstack

    uris = {}
    for name in names:
        home = root / f"mongo-{name}"
        (home / "logs").mkdir(parents=True)
        uri, pid, _ = devstack.start_mongo(home)
        stack.callback(devstack.stop_pid, pid)
        uris[name] = uri
    return uris


async def create_open_occurrences(d: Deployment, count: int, tag: str) -> list[tuple[str, str, str, str]]:
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
            "title": f"Mood {tag} {i}",
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
        await asyncio.gather(*(one(http, i) for i in range(count)))
    return out


async def paced_start(started: float, i: int, rate: float) -> None:
    """Wait until the ``i``-th item's turn at ``rate`` per second from ``started`` (``time.perf_counter``)."""
    await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))


def _sets_resolution(change: dict[str, Any]) -> bool:
    """Whether a change event on an insights occurrence records its resolution."""
    if change.get("operationType") in ("insert", "replace"):
        return bool((change.get("fullDocument") or {}).get("resolution"))
    fields = (change.get("updateDescription") or {}).get("updatedFields") or {}
    return any(k == "resolution" or k.startswith("resolution.") for k in fields)


async def caught_up(bootstrap: str, prefix: str, timeout: float = 300) -> float:
    """Wait until every consumer group reading the deployment's topics has committed to their end; seconds waited."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            lag = 0
            groups = [g[0] for g in await admin.list_consumer_groups()]
            for group in groups:
                committed = {
                    tp: meta.offset
                    for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                    if tp.topic.startswith(prefix)
                }
                if committed:
                    ends = await probe.end_offsets(list(committed))
                    lag += sum(max(0, ends[tp] - offset) for tp, offset in committed.items())
            if lag == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.5)
        raise TimeoutError(f"consumers of {prefix}* still behind after {timeout:.0f}s")
    finally:
        await probe.stop()
        await admin.close()


async def end_to_end(
    d: Deployment, work: list[tuple[str, str, str, str]], insights_uri: str, rate: float | None = None
) -> dict[str, Any]:
    """Record every completion; latency from each 201 to the insights update of its occurrence.

    Without ``rate``, ``WORKERS`` clients post back to back (closed loop: the rate the system
    reaches). With ``rate``, completion ``i`` is posted at ``i / rate`` seconds whatever the
    earlier ones are doing (open loop: a steady offered load, as real clients give).
    """
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(insights_uri)
    insights = mongo[d.database("insights")]["occurrences"]
    accepted: dict[str, float] = {}
    applied: dict[str, float] = {}
    done = asyncio.Event()
    # No updateLookup: the change itself says whether it set the resolution, and the watcher
    # should not add a read per change to the database the services share.
    stream = await insights.watch()

    async def watch() -> None:
        async for change in stream:
            oid = change.get("documentKey", {}).get("_id")
            if oid and oid not in applied and _sets_resolution(change):
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

    api_latencies: list[float] = []

    async def post(http: httpx.AsyncClient, client: str, aid: str, oid: str) -> None:
        sent = time.perf_counter()
        headers = {"Authorization": f"Bearer {tokens[client]}", "Idempotency-Key": oid}
        url = f"{d.processes['assignment'].url}/v1/assignments/{aid}/occurrences/{oid}/completion"
        body = {"status": "done", "quality_rating": 7, "data": {"mood": 6}}
        try:
            r = await http.post(url, json=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A kept-alive connection the server closed as this request went out: retried as a
            # real client would, with the same Idempotency-Key, so it is recorded once.
            r = await http.post(url, json=body, headers=headers)
        if r.status_code != 201:
            raise RuntimeError(f"completion {oid}: {r.status_code} {r.text}")
        accepted[oid] = time.perf_counter()
        api_latencies.append((accepted[oid] - sent) * 1000)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            client, _, aid, oid = queue.get_nowait()
            await post(http, client, aid, oid)

    async def paced(http: httpx.AsyncClient, i: int, item: tuple[str, str, str, str]) -> None:
        assert rate is not None
        await paced_start(started, i, rate)
        client, _, aid, oid = item
        await post(http, client, aid, oid)

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        if rate is None:
            await asyncio.gather(*(worker(http) for _ in range(WORKERS)))
        else:
            await asyncio.gather(*(paced(http, i, item) for i, item in enumerate(work)))
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
        "api_latencies": api_latencies,
        "peak_rss": peak,
    }


async def kafka_baseline(bootstrap: str, n: int, size: int, rate: float | None = None) -> dict[str, Any]:
    """aiokafka alone: produce ``n`` messages (acks=all, idempotent) and consume them; rate and latency.

    With ``rate``, message ``i`` is sent at ``i / rate`` seconds (the steady load's pacing).
    """
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
            if rate is not None:
                await paced_start(started, i, rate)
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


async def mongo_baseline(uri: str, n: int, insights_uri: str | None = None) -> float:
    """The same MongoDB writes done directly: the completion's transaction (resolution + outbox) and
    the insights transaction (processed event + occurrence + assignment totals), per completion;
    the insights writes on ``insights_uri`` when the insights database has a server of its own."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    other: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(insights_uri or uri)
    a, i = mongo[unique("base_a")], other[unique("base_i")]
    for coll in (a.resolutions, a.outbox, i.processed_events, i.occurrences, i.assignments):
        await coll.insert_one({"_id": "warm"})
    sem = asyncio.Semaphore(WORKERS)

    async def one(k: int) -> None:
        async with sem:
            async with mongo.start_session() as s, await s.start_transaction():
                await a.resolutions.insert_one({"_id": f"r{k}", "status": "done", "data": {"mood": 6}}, session=s)
                await a.outbox.insert_one({"_id": f"e{k}", "state": "pending", "value": b"x" * 600}, session=s)
            async with other.start_session() as s, await s.start_transaction():
                await i.processed_events.insert_one({"_id": f"e{k}"}, session=s)
                await i.occurrences.insert_one({"_id": f"o{k}", "resolution": "done"}, session=s)
                await i.assignments.update_one(
                    {"_id": f"a{k % CLIENTS}"}, {"$inc": {"done": 1}}, upsert=True, session=s
                )

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(n)))
    seconds = time.perf_counter() - started
    await mongo.drop_database(a.name)
    await other.drop_database(i.name)
    await mongo.close()
    await other.close()
    return n / seconds


def chart(series: dict[str, list[float]]) -> str:
    """An SVG bar chart of latency percentiles (ms, log scale) per series."""
    marks = [("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)]
    import math

    width, height, left, bottom = 640, 320, 60, 40
    legend = 16 * len(series) + 10
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
        return height - bottom - frac * (height - bottom - legend)

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
            f'<rect x="{left}" y="{4 + si * 16}" width="10" height="10" fill="{colours[si % 3]}"/>'
            f'<text x="{left + 14}" y="{13 + si * 16}">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


async def main(infra: Infra) -> list[Figure]:
    base_start, base_rss = minimal_app()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-system-")))
        uris = {name: infra.mongodb_uri for name in ("assignment", "reminder", "insights")}
        if SEPARATE_DATABASES:
            uris.update(own_database_servers(stack, tmp, ["assignment", "reminder", "insights"]))
        service_env = {name: {"MONGODB_URI": uri} for name, uri in uris.items()}
        d = stack.enter_context(deploy(infra, tmp / "logs", service_env=service_env))
        startup: dict[str, float] = {}
        for name, proc in d.processes.items():
            began = time.perf_counter()
            proc.stop()
            proc.start()
            proc.wait_ready(120)
            startup[name] = time.perf_counter() - began
        await asyncio.sleep(3)
        idle = {name: rss_mb(p.proc.pid) for name, p in d.processes.items() if p.proc is not None}
        steady_n = int(STEADY_RATE * STEADY_SECONDS)
        work = await create_open_occurrences(d, COMPLETIONS, "load")
        steady_work = await create_open_occurrences(d, steady_n, "steady")
        # The assignments just created are events too: start each load with every consumer caught up.
        settle = await caught_up(infra.kafka_bootstrap, d.prefix)
        steady = await end_to_end(d, steady_work, uris["insights"], rate=STEADY_RATE)
        await caught_up(infra.kafka_bootstrap, d.prefix)
        e2e = await end_to_end(d, work, uris["insights"])
        mongo_rate = await mongo_baseline(uris["assignment"], COMPLETIONS, uris["insights"])
    kafka = await kafka_baseline(infra.kafka_bootstrap, COMPLETIONS, 700)
    kafka_steady = await kafka_baseline(infra.kafka_bootstrap, steady_n, 700, rate=STEADY_RATE)
    CHART.write_text(
        chart(
            {
                f"accepted -> insights updated, steady {STEADY_RATE:.0f}/s": steady["latencies"],
                f"aiokafka produce -> consume, {STEADY_RATE:.0f}/s": kafka_steady["latencies"],
                "accepted -> insights updated, saturated": e2e["latencies"],
            }
        )
    )
    lat = e2e["latencies"]
    topology = (
        "each service's database on a SecantusDB server of its own, started for the run"
        if SEPARATE_DATABASES
        else "the three services' databases on one SecantusDB server"
    )
    figures = [
        Figure(
            f"end-to-end p99 at a steady {STEADY_RATE:.0f} completions/s, accepted to insights updated",
            percentile(steady["latencies"], 99),
            "ms",
            f"aiokafka produce-to-consume p99 at {STEADY_RATE:.0f}/s",
            percentile(kafka_steady["latencies"], 99),
            goal="< 300 ms at 100/s",
            command=COMMAND,
            higher_is_better=False,
            notes=f"{steady_n} completions over real HTTP, completion i posted at i/{STEADY_RATE:.0f} s (open loop) "
            f"by {CLIENTS} clients, after every consumer had caught up with the "
            f"{COMPLETIONS + steady_n} assignments created before ({settle:.0f} s); {topology}; "
            "from the 201 to the insights "
            "service's write of that occurrence, seen on a MongoDB change stream; "
            f"p50 {median(steady['latencies']):.0f} ms, max "
            f"{max(steady['latencies']):.0f} ms; the API answered in p50 {median(steady['api_latencies']):.0f} ms, "
            f"p99 {percentile(steady['api_latencies'], 99):.0f} ms",
        ),
        Figure(
            f"end-to-end p50 at a steady {STEADY_RATE:.0f} completions/s",
            median(steady["latencies"]),
            "ms",
            f"aiokafka produce-to-consume p50 at {STEADY_RATE:.0f}/s",
            median(kafka_steady["latencies"]),
            command=COMMAND,
            higher_is_better=False,
        ),
        Figure(
            "end-to-end completions/s (API accepted to insights applied)",
            e2e["rate"],
            "/s",
            "same MongoDB writes done directly",
            mongo_rate,
            goal=">= 300 /s",
            command=COMMAND,
            notes=f"{COMPLETIONS} completions by {WORKERS} concurrent clients over HTTP; the API alone accepted "
            f"{e2e['api_rate']:.0f}/s; aiokafka alone moved {kafka['rate']:.0f} messages/s",
        ),
        Figure(
            "end-to-end p50 at saturation (backlog included), accepted to insights updated",
            median(lat),
            "ms",
            "aiokafka produce-to-consume p50",
            median(kafka["latencies"]),
            command=COMMAND,
            higher_is_better=False,
        ),
        Figure(
            "end-to-end p99 at saturation (backlog included), accepted to insights updated",
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
