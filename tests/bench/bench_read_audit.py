"""Read latency with the read audit on, against the same reads with it off, in the same run.

The assignment service runs in this process (its real lifespan: MongoDB, Kafka, the audit writer)
and is called through ASGI. A therapist reads a client's assignments
(``GET /v1/clients/{client_id}/assignments``, 20 assignments, one indexed query) ``READS`` times per
round, one request at a time, so each latency is one read's. Rounds alternate the audit on and off
(``app.state.read_audit.enabled``), so a change in the shared machine's load falls on both sides.
With the audit on, each read appends its entry to a buffer and a background task writes the
buffer in batches; the figure is the p50 read latency with the audit over the p50 without it.

Run alone: ``uv run python -m tests.bench.run_all read_audit``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from homework_assignment.app import create
from homework_assignment.config import AssignmentSettings
from homework_shared.auth.mint import mint_token
from homework_shared.read_audit import READ_AUDIT
from tests.bench.common import Figure, percentile
from tests.conftest import unique, wait_for
from tests.infra import Infra

ROUNDS = 6
READS = 150
ASSIGNMENTS = 20
COMMAND = "uv run python -m tests.bench.run_all read_audit"


def _assignment(client_id: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "kind": "mood_log",
        "title": "Evening mood rating",
        "instructions": "Rate your mood from 0 to 10.",
        "schedule": {
            "type": "recurring",
            "timezone": "Europe/Berlin",
            "rrule": "FREQ=DAILY",
            "starts_at": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT20:00:00"),
            "count": 14,
            "window_minutes": 120,
        },
    }


async def _round(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[float]:
    latencies = []
    for _ in range(READS):
        started = time.perf_counter()
        response = await http.get(path, headers=headers)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


async def _kafka_ready(app: Any) -> bool:
    return bool(app.state.runtime.kafka_ready.is_set())


async def main(infra: Infra) -> list[Figure]:
    settings = AssignmentSettings(
        environment="development",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("bench-read-audit"),
        topic_prefix=unique("bench"),
        log_level="WARNING",
        end_sweep_interval_s=3600,
    )
    app = create(settings)
    practice, client_id = unique("practice"), unique("client")
    headers = {"Authorization": f"Bearer {mint_token(sub='t-bench', role='therapist', practice_id=practice)}"}
    on: list[float] = []
    off: list[float] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bench", timeout=30) as http,
    ):
        await wait_for(lambda: _kafka_ready(app), timeout=120, message="Kafka connected")
        for _ in range(ASSIGNMENTS):
            r = await http.post("/v1/assignments", json=_assignment(client_id), headers=headers)
            assert r.status_code == 201, r.text
        path = f"/v1/clients/{client_id}/assignments"
        audit = app.state.read_audit
        await _round(http, path, headers)  # warm-up: connections, caches
        for i in range(2 * ROUNDS):
            audit.enabled = i % 2 == 0
            (on if audit.enabled else off).extend(await _round(http, path, headers))
        audit.enabled = True
        await audit.flush()
        written = await app.state.runtime.db[READ_AUDIT].count_documents({"practice_id": practice})
    assert written >= ROUNDS * READS, f"the audit holds {written} entries, {ROUNDS * READS} reads were audited"
    p50_on, p50_off = percentile(on, 50) * 1000, percentile(off, 50) * 1000
    p99_on, p99_off = percentile(on, 99) * 1000, percentile(off, 99) * 1000
    return [
        Figure(
            name="read latency p50, read audit on",
            value=p50_on,
            unit="ms",
            baseline_name="audit off",
            baseline_value=p50_off,
            goal="ratio <= 1.10",
            command=COMMAND,
            higher_is_better=False,
            notes=f"{ROUNDS * READS} reads each side, rounds alternating; {written} entries written",
        ),
        Figure(
            name="read latency p99, read audit on",
            value=p99_on,
            unit="ms",
            baseline_name="audit off",
            baseline_value=p99_off,
            command=COMMAND,
            higher_is_better=False,
        ),
    ]
