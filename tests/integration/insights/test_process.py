"""The service as a real process: ready, JSON logs, graceful SIGTERM; the rebuild command's exit code."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime

import httpx

from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.insights.conftest import Service
from tests.unit.insights.builders import Assignment, daily, utc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(infra: Infra, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "MONGODB_URI": infra.mongodb_uri,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        **extra,
    }


async def test_the_process_becomes_ready_logs_json_and_stops_gracefully_on_sigterm(infra: Infra) -> None:
    port = _free_port()
    env = _env(
        infra,
        HTTP_PORT=str(port),
        MONGODB_DATABASE=unique("insights"),
        TOPIC_PREFIX=unique("proc"),
        SERVICE_NAME=unique("insights"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "homework_insights"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, timeout=60, message="insights ready")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        # uvicorn finishes the shutdown, then re-raises the signal it caught: exit by SIGTERM, after the lifespan.
        assert code in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        lines = [line for line in proc.stdout.read().decode().splitlines() if line.strip()]
        messages = [json.loads(line).get("message", "") for line in lines]
        assert any("connected to Kafka" in m for m in messages)
        assert any("Application shutdown complete" in m for m in messages), messages[-5:]
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_the_rebuild_command_exits_1_on_a_difference_and_0_when_exact(service: Service) -> None:
    a = Assignment("asg-cli", daily(datetime(2026, 3, 21, 20, 0), 14))
    sent = await service.publish(a.created(utc(2026, 3, 20, 9)), a.done(datetime(2026, 3, 21, 20, 0)))
    await service.wait_applied(*sent)
    env = _env(
        service.infra,
        MONGODB_DATABASE=service.settings.mongodb_database,
        TOPIC_PREFIX=service.settings.topic_prefix,
        CLOCK_SPEED="0.000001",
        CLOCK_ORIGIN=service.clock.now().isoformat(),
        CLOCK_REAL_ORIGIN=datetime.now().astimezone().isoformat(),
    )
    command = [sys.executable, "-m", "homework_insights.rebuild"]
    exact = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120)
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert "rebuild equals live" in exact.stdout
    await service.rt.db["assignments"].update_one({"_id": "asg-cli"}, {"$inc": {"totals.done": 1}})
    differs = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120)
    assert differs.returncode == 1
    assert "DIFFERENT client practice-1/client-1.assignments.asg-cli.done: live=2 rebuilt=1" in differs.stdout
