"""Outages of our own servers (never the shared ones): a Kafka broker stopped and started again loses
nothing and the API keeps accepting writes meanwhile; a MongoDB server stopped makes writes fail fast
with 503 and readiness false, and the service recovers when it is back."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from homework_shared.events import (
    AssignmentCreated,
    AssignmentPaused,
    AssignmentResumed,
    CompletionRecorded,
    OccurrenceSkipped,
)
from homework_shared.service import Runtime
from tests.conftest import wait_for
from tests.infra import Infra, devstack
from tests.integration.assignment.conftest import Service, all_events, daily_mood_log, evening, service, settings_for


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def readiness(svc: Service) -> dict[str, str]:
    checks: dict[str, str] = (await svc.http.get("/readyz")).json()["checks"]
    return checks


async def test_a_broker_stopped_and_started_again_loses_no_event_and_keeps_their_order(
    infra: Infra, tmp_path: Path
) -> None:
    root = tmp_path / "kafka"
    started = devstack.start_kafka(root)
    bootstrap, pids, ports = started[0], started[1], started[2]
    stack = devstack.Stack(root=root, kafka_bootstrap=bootstrap, mongodb_uri=infra.mongodb_uri, pids=pids)
    stack.broker_ports = ports
    try:
        async with service(settings_for(bootstrap, infra.mongodb_uri)) as svc:
            rt: Runtime = svc.runtime
            await wait_for(lambda: _true(rt.kafka_ready.is_set()), timeout=60, message="Kafka connected")
            a = await svc.create()
            await wait_for(lambda: _pending(rt, 0), message="the first event sent")

            devstack.stop_pid(stack.pids["kafka-1"])
            await wait_for(lambda: _not_ready(svc, "kafka"), timeout=30, message="readiness says Kafka is down")
            svc.at(2026, 3, 21, 19, 30)
            written = [
                await svc.complete(a, evening(a, 21)),
                await svc.action(a, "pause"),
                await svc.action(a, "resume"),
            ]
            svc.at(2026, 3, 22, 19, 30)
            written.append(await svc.skip(a, evening(a, 22)))
            assert [r.status_code for r in written] == [201, 200, 200, 201], "writes go on while Kafka is down"
            assert await rt.relay.pending() == 4

            devstack.restart_broker(stack, 1)
            await wait_for(lambda: _pending(rt, 0), timeout=90, message="the backlog sent after the restart")
            assert (await readiness(svc))["kafka"] == "ok"
            events = await all_events(svc)
    finally:
        devstack.stop_pid(stack.pids["kafka-1"])
    first_seen: dict[str, Any] = {}
    for e in events:
        if e.id in first_seen:
            assert first_seen[e.id].data == e.data, "a re-sent event is the same event"
        first_seen.setdefault(e.id, e)
    assert [type(e.data) for e in first_seen.values()] == [
        AssignmentCreated,
        CompletionRecorded,
        AssignmentPaused,
        AssignmentResumed,
        OccurrenceSkipped,
    ]


async def test_with_kafka_unreachable_from_the_start_the_api_takes_writes(infra: Infra) -> None:
    settings = settings_for(f"127.0.0.1:{closed_port()}", infra.mongodb_uri)
    async with service(settings) as svc:
        a = await svc.create()
        svc.at(2026, 3, 21, 19, 30)
        assert (await svc.complete(a, evening(a, 21))).status_code == 201
        ready = await svc.http.get("/readyz")
        assert ready.status_code == 503
        # The erasure saga's consumer (the assignment service reads the three streams for it) cannot run either.
        assert ready.json()["checks"] == {"mongodb": "ok", "kafka": "failed", "consumer:assignment": "failed"}
        assert await svc.runtime.relay.pending() == 2
        assert (await svc.http.get("/healthz")).status_code == 200


async def test_with_mongodb_down_writes_fail_fast_with_503_and_recover(infra: Infra, tmp_path: Path) -> None:
    uri, pid, _ = devstack.start_mongo(tmp_path)
    stack = devstack.Stack(root=tmp_path, kafka_bootstrap=infra.kafka_bootstrap, mongodb_uri=uri, pids={"mongo": pid})
    try:
        async with service(settings_for(infra.kafka_bootstrap, uri)) as svc:
            a = await svc.create()
            devstack.stop_pid(stack.pids["mongo"])

            refused, took = [], []
            for attempt in (
                svc.http.post("/v1/assignments", json=_body(svc), headers=svc.therapist),
                svc.action(a, "pause"),
                svc.complete(a, evening(a, 21)),
                svc.http.get(f"/v1/assignments/{a['id']}", headers=svc.therapist),
            ):
                started = time.monotonic()
                refused.append(await attempt)
                took.append(time.monotonic() - started)
            assert [r.status_code for r in refused] == [503] * 4
            assert {r.json()["error"] for r in refused} == {"database_unavailable"}
            assert all(r.headers["Retry-After"] for r in refused)
            # Server selection gives up after MONGO_TIMEOUT_MS (0.5 s here). The first request after the server
            # died also finds its pooled connection dropped and tries to abort: about three timeouts. The
            # bounds leave room for a loaded machine.
            assert took[0] < 3.0, took
            assert max(took[1:]) < 2.0, took
            ready = await svc.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["mongodb"] in ("failed", "timeout")
            assert (await svc.http.get("/healthz")).status_code == 200

            devstack.restart_mongo(stack)
            await wait_for(lambda: _ready_again(svc), timeout=30, message="MongoDB back")
            paused = await svc.action(a, "pause")
            assert (paused.status_code, paused.json()["version"]) == (200, 1)
            assert (await svc.http.post("/v1/assignments", json=_body(svc), headers=svc.therapist)).status_code == 201
    finally:
        devstack.stop_pid(stack.pids["mongo"])


def _body(svc: Service) -> dict[str, Any]:
    return daily_mood_log(svc.client_id)


async def _true(value: bool) -> bool:
    return value


async def _pending(rt: Runtime, count: int) -> bool:
    return await rt.relay.pending() == count


async def _not_ready(svc: Service, check: str) -> bool:
    return (await readiness(svc)).get(check) != "ok"


async def _ready_again(svc: Service) -> bool:
    return (await readiness(svc)).get("mongodb") == "ok"
