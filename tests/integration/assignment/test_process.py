"""The service as its own process (``python -m homework_assignment``): configuration errors name the variable,
logs are JSON with request and trace ids, SIGTERM finishes what is in flight and flushes the outbox, and
after a crash (SIGKILL) the events it had not sent yet are sent by the next start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from homework_assignment.config import AssignmentSettings
from homework_shared.events import AssignmentCreated, AssignmentPaused, CompletionRecorded
from homework_shared.settings import DEV_JWT_SECRET
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.assignment.conftest import bearer, daily_mood_log, topic_events

SERVICE_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI", "MONGODB_DATABASE", "TOPIC_PREFIX", "ENVIRONMENT")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(**values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SERVICE_VARIABLES and not k.startswith(("JWT_", "KAFKA_", "ALLOW_INSECURE"))
    }
    return {**env, **values}


def run_briefly(**values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homework_assignment"],
        env=clean_environment(**values),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, ["KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"]),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "MONGODB_URI": "mongodb://m", "HTTP_PORT": "eighty"}, ["HTTP_PORT"]),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "MONGODB_URI": "mongodb://m", "END_SWEEP_INTERVAL_S": "0"},
            ["END_SWEEP_INTERVAL_S"],
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "MONGODB_URI": "mongodb://m", "ENVIRONMENT": "production"},
            ["JWT_SECRET"],
        ),
        (
            {
                "KAFKA_BOOTSTRAP_SERVERS": "k:9093",
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "MONGODB_URI": "mongodb://m/?tls=true",
                "JWT_SECRET": DEV_JWT_SECRET,
            },
            ["JWT_SECRET: the public development default is accepted only with ENVIRONMENT=development"],
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "MONGODB_URI": "mongodb://m", "JWT_SECRET": DEV_JWT_SECRET},
            ["KAFKA_SECURITY_PROTOCOL", "MONGODB_URI: connects without TLS", "JWT_SECRET"],
        ),
    ],
    ids=[
        "missing",
        "bad port",
        "bad sweep interval",
        "production without keys",
        "no environment with the dev secret",
        "no environment with plain-text transport",
    ],
)
def test_bad_configuration_exits_naming_the_variable(values: dict[str, str], named: list[str]) -> None:
    finished = run_briefly(**values)
    assert finished.returncode == 2, finished.stderr
    for variable in named:
        assert f"configuration error: {variable}" in finished.stderr, finished.stderr


class Process:
    """One ``python -m homework_assignment`` with its settings, log file and HTTP client."""

    def __init__(self, settings: AssignmentSettings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def start(self, **overrides: str) -> None:
        env = clean_environment(
            KAFKA_BOOTSTRAP_SERVERS=overrides.get("kafka", self.settings.kafka_bootstrap_servers),
            MONGODB_URI=self.settings.mongodb_uri,
            MONGODB_DATABASE=self.settings.mongodb_database,
            TOPIC_PREFIX=self.settings.topic_prefix,
            TOPIC_PARTITIONS=str(self.settings.topic_partitions),
            HTTP_PORT=str(self.settings.http_port),
            HTTP_HOST="127.0.0.1",
            ENVIRONMENT="development",
            LOG_FORMAT="json",
            SHUTDOWN_TIMEOUT_S="20",
        )
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "homework_assignment"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def wait_ready(self, *, kafka: bool = True) -> None:
        async def ready() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
                    response = await http.get("/readyz" if kafka else "/healthz")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await wait_for(ready, timeout=60, interval=0.2, message="the service ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


@contextmanager
def process(infra: Infra, tmp_path: Path) -> Iterator[Process]:
    settings = AssignmentSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("assignment"),
        topic_prefix=unique("proc"),
        topic_partitions=1,
        http_port=free_port(),
    )
    p = Process(settings, tmp_path / "assignment.log")
    try:
        yield p
    finally:
        if p.proc is not None and p.proc.poll() is None:
            p.stop(signal.SIGKILL)


def one_off_now(client_id: str, title: str) -> dict[str, Any]:
    """A one-off reading, open from now (the process runs on the real clock) for a day."""
    due = time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(time.time() + 86_400))
    schedule = {"type": "once", "timezone": "UTC", "due_at": due}
    return daily_mood_log(client_id, kind="reading", title=title, schedule=schedule, target=None)


async def test_sigterm_finishes_requests_in_flight_and_flushes_the_outbox(infra: Infra, tmp_path: Path) -> None:
    with process(infra, tmp_path) as p:
        p.start()
        await p.wait_ready()
        practice, client_id = unique("practice"), unique("client")
        therapist, client = bearer("therapist", "t1", practice), bearer("client", client_id, practice)
        async with httpx.AsyncClient(base_url=p.url, timeout=30) as http:
            created = [
                (
                    await http.post(
                        "/v1/assignments",
                        json=one_off_now(client_id, f"Chapter {n}"),
                        headers={**therapist, "X-Request-ID": f"create-{n}"},
                    )
                ).json()
                for n in range(30)
            ]
            occurrences = [(a["id"], f"{a['id']}@{a['schedule']['opens_at'][:16]}") for a in created]

            async def complete(assignment_id: str, occurrence_id: str) -> int | str:
                try:
                    response = await http.post(
                        f"/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/completion",
                        json={"data": {"pages": 10}},
                        headers=client,
                    )
                except httpx.TransportError as error:
                    return type(error).__name__
                return response.status_code

            in_flight = [asyncio.create_task(complete(*o)) for o in occurrences]
            # SIGTERM once the server is answering the burst (a fixed pause raced a loaded machine: the
            # signal could come before the server had read any request, and then nothing was in flight).
            await asyncio.wait(in_flight, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            unanswered = sum(not task.done() for task in in_flight)
            assert p.proc is not None
            p.proc.send_signal(signal.SIGTERM)
            outcomes = await asyncio.gather(*in_flight)
        assert unanswered, "every request was answered before the SIGTERM: nothing was in flight"
        assert p.proc.wait(timeout=30) == 0, p.log.read_text()[-3000:]
    answered = [o for o in outcomes if isinstance(o, int)]
    assert answered, outcomes
    assert set(answered) == {201}, outcomes
    # A request the server had not begun to read when it stopped accepting fails on the client side
    # (refused or closed); it wrote nothing: the events below match the 201s one for one.

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    try:
        assert await mongo[p.settings.mongodb_database].outbox.count_documents({"state": "pending"}) == 0
    finally:
        await mongo.close()
    events = await topic_events(p.settings, client_id)
    assert [e.type for e in events].count(AssignmentCreated.event_type) == 30
    assert [e.type for e in events].count(CompletionRecorded.event_type) == len(answered)

    lines = p.log_lines()
    requests = [line for line in lines if line.get("route") == "/v1/assignments"]
    assert {line["request_id"] for line in requests} >= {f"create-{n}" for n in range(30)}
    assert all(len(line["trace_id"]) == 32 and line["service"] == "assignment" for line in requests)
    assert any("shutdown" in line["message"].lower() for line in lines), "uvicorn logged its shutdown as JSON"


async def test_events_committed_before_a_crash_are_sent_by_the_next_start(infra: Infra, tmp_path: Path) -> None:
    with process(infra, tmp_path) as p:
        closed = free_port()
        p.start(kafka=f"127.0.0.1:{closed}")  # Kafka unreachable: nothing can be sent
        await p.wait_ready(kafka=False)
        practice, client_id = unique("practice"), unique("client")
        therapist = bearer("therapist", "t1", practice)
        async with httpx.AsyncClient(base_url=p.url, timeout=30) as http:
            a = (await http.post("/v1/assignments", json=one_off_now(client_id, "Read"), headers=therapist)).json()
            paused = await http.post(f"/v1/assignments/{a['id']}/pause", headers=therapist)
            assert paused.status_code == 200
        p.stop(signal.SIGKILL)

        p.start()
        await p.wait_ready()

        async def sent() -> list[Any]:
            events = await topic_events(p.settings, client_id)
            return events if len(events) >= 2 else []

        events = await wait_for(sent, timeout=60, interval=0.5, message="the backlog sent after the restart")
        assert p.stop() == 0
    assert [type(e.data) for e in events] == [AssignmentCreated, AssignmentPaused]
