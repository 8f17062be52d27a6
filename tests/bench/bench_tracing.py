"""What tracing costs: completions/s through the assignment API with tracing on but no exporter, against tracing off.

Tracing is set up once per process (the global tracer provider), so each side runs in a process
of its own: ``OTEL_SDK_DISABLED=true`` for the baseline (the API's no-op tracer: no spans, no ids),
and no ``OTEL_EXPORTER_OTLP_ENDPOINT`` for the figure (the SDK makes every span, the FastAPI, PyMongo
and Kafka ones, gives it ids and drops it at its end: what a deployment without a collector runs).
Each process serves the app in-process (httpx ``ASGITransport``), seeds its own open occurrences,
warms up, then ``WORKERS`` clients post completions for ``SECONDS``. The two sides alternate in
``ROUNDS`` rounds (off first, then on first), so a change of the shared machine's load falls on both.

Run alone: ``uv run python -m tests.bench.run_all tracing``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from tests.bench.common import Figure
from tests.infra import Infra

WORKERS = int(os.environ.get("BENCH_WORKERS", "16"))
ROUNDS = int(os.environ.get("BENCH_TRACING_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_TRACING_SECONDS", "8"))
PER_WORKER = 600
COMMAND = "uv run python -m tests.bench.run_all tracing"


async def _side(infra: Infra, *, tracing: bool) -> tuple[int, float]:
    """Completions and seconds of one timed run in a fresh process, tracing on (no exporter) or off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_EXPORTER_OTLP") and k not in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER")
    }
    env |= {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "MONGODB_URI": infra.mongodb_uri}
    if not tracing:
        env["OTEL_SDK_DISABLED"] = "true"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.bench_tracing", "--side", env=env, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the {'traced' if tracing else 'untraced'} run failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return int(result["done"]), float(result["elapsed"])


async def main(infra: Infra) -> list[Figure]:
    on_done = off_done = 0
    on_s = off_s = 0.0
    rounds: list[str] = []
    for r in range(ROUNDS):
        order = (False, True) if r % 2 == 0 else (True, False)
        rates: dict[bool, float] = {}
        for tracing in order:
            done, elapsed = await _side(infra, tracing=tracing)
            rates[tracing] = done / elapsed
            if tracing:
                on_done, on_s = on_done + done, on_s + elapsed
            else:
                off_done, off_s = off_done + done, off_s + elapsed
        rounds.append(f"{rates[True]:.0f} vs {rates[False]:.0f}")
    off_rate, on_rate = off_done / off_s, on_done / on_s
    return [
        Figure(
            name="tracing overhead: completions/s, tracing off over tracing on without an exporter",
            value=off_rate,
            unit="completions/s",
            baseline_name="tracing on (SDK, no OTLP endpoint)",
            baseline_value=on_rate,
            goal="ratio <= 1.05",
            command=COMMAND,
            higher_is_better=False,
            notes=f"{WORKERS} concurrent clients through the ASGI app in-process, {ROUNDS} alternating rounds of "
            f"{SECONDS:.0f}s per side, each side in its own process (OTEL_SDK_DISABLED=true for off); "
            f"rounds on vs off /s: {', '.join(rounds)}; {on_done} traced and {off_done} untraced completions",
        )
    ]


async def _run_side() -> dict[str, float]:
    """One side, in this process: the app with the environment's tracing, seeded, warmed up, timed."""
    import time

    import httpx

    from homework_assignment.app import create
    from homework_assignment.config import AssignmentSettings
    from homework_assignment.store import AssignmentStore
    from homework_shared.service import Runtime
    from tests.bench.bench_assignment import _api_run, _seed
    from tests.conftest import unique, wait_for

    settings = AssignmentSettings(
        environment="development",
        kafka_bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        mongodb_uri=os.environ["MONGODB_URI"],
        mongodb_database=unique("bench-tracing"),
        topic_prefix=unique("bench-tracing"),
        log_level="WARNING",
        end_sweep_interval_s=60,
    )
    app = create(settings)
    rt: Runtime = app.state.runtime
    async with app.router.lifespan_context(app):

        async def connected() -> bool:
            return rt.kafka_ready.is_set()

        await wait_for(connected, timeout=120, message="Kafka connected")
        practice = unique("practice")
        occurrences = await _seed(AssignmentStore(rt.db), practice, WORKERS, PER_WORKER)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bench", timeout=30) as http:
            await _api_run(http, practice, occurrences, 1.0)  # warm-up: connections, caches, JIT of the regexes
            started = time.monotonic()
            done, _, elapsed = await _api_run(http, practice, occurrences, SECONDS)
            elapsed = elapsed or time.monotonic() - started
        await rt.mongo.drop_database(settings.mongodb_database)
    return {"done": done, "elapsed": elapsed}


if __name__ == "__main__" and sys.argv[1:] == ["--side"]:
    print(json.dumps(asyncio.run(_run_side())))
