"""The MongoDB server stopped during load and started again: readiness turns false then true on every
service, writes fail fast with 503 while it is down, and nothing is half-written: every accepted write
is stored with its outbox record and its event, and no event exists without its write."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from homework_shared.events import AssignmentCreated, CompletionRecorded, Topics
from tests.conftest import unique
from tests.e2e.faults import workload as wl
from tests.e2e.system import Deployment, deploy
from tests.infra import devstack

OUTAGE_S = 15.0
FAIL_FAST_S = 5.0  # a write refused while MongoDB is down answers within this


async def readyz(http: httpx.AsyncClient, d: Deployment) -> dict[str, tuple[int, str | None]]:
    """Per service: the readiness status code and what it says of MongoDB."""
    out: dict[str, tuple[int, str | None]] = {}
    for name, proc in d.processes.items():
        try:
            r = await http.get(f"{proc.url}/readyz", timeout=10)
            out[name] = (r.status_code, r.json().get("checks", {}).get("mongodb"))
        except (httpx.TransportError, ValueError):
            out[name] = (0, None)
    return out


@pytest.mark.timeout(600)
async def test_mongodb_stopped_during_load_fails_writes_fast_and_half_writes_nothing(tmp_path: Path) -> None:
    with (
        wl.own_stack(tmp_path / "stack", mongo_killed=True) as (stack, infra),
        deploy(infra, tmp_path / "logs", speed=wl.SPEED, **wl.fault_env(MONGO_TIMEOUT_MS="1000")) as d,
    ):
        async with httpx.AsyncClient() as http:
            work = await wl.build(
                http,
                d,
                clients=10,
                assignments_each=5,
                occurrences_each=10,
                reminded_clients=5,
                reminder_offsets=[60, 240, 420],
            )
            first_open = max(wl.real_seconds(work.completions[0].opens_at - d.clock.now()), 0.0)
            therapist = work.headers("therapist", work.therapist_id)
            create_url = f"{d.processes['assignment'].url}/v1/assignments"
            marks: dict[str, float] = {}
            probes: list[tuple[str, wl.Result]] = []

            async def stop_mongodb_for_a_while() -> None:
                await asyncio.sleep(first_open + 12)
                await asyncio.to_thread(devstack.stop_pid, stack.pids["mongo"], sig=signal.SIGKILL)
                marks["down"] = time.monotonic()
                await wl.wait_until(lambda: _all(http, d, ready=False), 30, "readiness false everywhere", 0.25)
                marks["not_ready"] = time.monotonic()
                # A therapist's write while the database is down: refused fast, then sent again once it is back.
                while time.monotonic() < marks["down"] + OUTAGE_S:
                    key = unique("probe")
                    body = wl.reminded_once(work.clients[0], [60], d.clock)
                    headers = {**therapist, "Idempotency-Key": key}
                    probes.append((key, await wl.post_retrying(http, create_url, body, headers, deadline=0)))
                    await asyncio.sleep(1.0)
                marks["restarting"] = time.monotonic()
                await asyncio.to_thread(devstack.restart_mongo, stack)
                marks["up"] = time.monotonic()
                await wl.wait_until(lambda: _all(http, d, ready=True), 60, "readiness true everywhere", 0.25)
                marks["ready"] = time.monotonic()

            load, _ = await asyncio.gather(wl.complete_all(http, d, work), stop_mongodb_for_a_while())
            down, up = marks["down"], marks["up"]
            refused = [a for a in load.attempts() if a.status == 503] + [a for _, p in probes for a in p.attempts]
            context = (
                f"load: {load.describe()}; MongoDB down {up - down:.0f}s; readiness false "
                f"{marks['not_ready'] - down:.1f}s after the kill and true {marks['ready'] - up:.1f}s after the restart"
            )
            assert not load.refused(), f"refused: {list(load.refused().items())[:5]}; {context}"
            assert probes, context
            assert all(p.status == 503 for _, p in probes), f"probes: {probes}; {context}"
            assert {a.error for a in refused} == {"database_unavailable"}, context
            slow = [a for a in refused if a.seconds > FAIL_FAST_S]
            assert not slow, f"writes refused slowly while MongoDB was down: {slow[:5]}; {context}"
            # Requests started just before the restart may wait out a server selection and find it back.
            in_window = [a for a in load.attempts() if marks["not_ready"] <= a.started <= marks["restarting"] - 4]
            assert in_window, context
            assert all(a.status == 503 for a in in_window), (
                f"completions while MongoDB was down: {sorted({a.status for a in in_window}, key=str)}; {context}"
            )

            # The probes' client sends them again, as a real client would: each is written now, once.
            for key, _ in probes:
                again = await wl.post_retrying(
                    http,
                    create_url,
                    wl.reminded_once(work.clients[0], [60], d.clock),
                    {**therapist, "Idempotency-Key": key},
                    deadline=time.monotonic() + 60,
                )
                assert again.status == 201, again
                work.assignment_ids.append(again.body["id"])

            drained = await wl.outboxes_drained(infra.mongodb_uri, d, timeout=180)
            settled = await wl.figures_settled(http, d, work, load, timeout=180)
            stored = await stored_writes(infra.mongodb_uri, d)
            published = await published_writes(infra.kafka_bootstrap, d)
            answered = {r.body["occurrence_id"]: r.body["id"] for r in load.results.values() if r.status == 201}
            assert stored["completions"] == answered, f"stored completions differ from those answered 201; {context}"
            assert published["completions"] == stored["completions"], (
                f"completions without their event or events without their completion: "
                f"{_diff(published['completions'], stored['completions'])}; {context}"
            )
            assert stored["assignments"] == set(work.assignment_ids), context
            assert published["assignments"] == stored["assignments"], (
                f"assignments and their events differ: {_diff(published['assignments'], stored['assignments'])}"
            )
            assert stored["outbox"] == {"sent": published["event_ids"]}, (
                f"outbox records and events on the topic differ: "
                f"{_diff(stored['outbox'].get('sent', set()), published['event_ids'])}; {context}"
            )
            assert await wl.dead_letters(infra.kafka_bootstrap, d) == {"reminder": 0, "insights": 0}
            fired = await wl.every_reminder_fired(infra.kafka_bootstrap, d, work)
            assert dict(fired["ids"]) == wl.expected_sent_ids(work), context
            latencies = sorted(a.seconds for a in refused)
            print(
                f"\n{context}; {len(refused)} writes refused with 503 while it was down, in "
                f"median {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
                f"outboxes drained {drained:.0f}s and figures exact {drained + settled:.0f}s after the load"
            )


async def _all(http: httpx.AsyncClient, d: Deployment, *, ready: bool) -> bool:
    states = await readyz(http, d)
    if ready:
        return all(code == 200 and db == "ok" for code, db in states.values())
    return all(code == 503 and db != "ok" for code, db in states.values())


def _diff(a: dict[str, Any] | set[str], b: dict[str, Any] | set[str]) -> dict[str, Any]:
    out = {"only_first": sorted(set(a) - set(b))[:5], "only_second": sorted(set(b) - set(a))[:5]}
    if isinstance(a, dict) and isinstance(b, dict):
        out["different"] = sorted(k for k in set(a) & set(b) if a[k] != b[k])[:5]
    return out


async def stored_writes(mongodb_uri: str, d: Deployment) -> dict[str, Any]:
    """The assignment database: completions (occurrence -> completion id), assignment ids, outbox ids by state."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        db = client[d.database("assignment")]
        completions = {r["_id"]: r["id"] async for r in db.resolutions.find({"type": "completion"}, {"id": 1})}
        assignments = {a["_id"] async for a in db.assignments.find({}, {"_id": 1})}
        outbox: dict[str, set[str]] = defaultdict(set)
        async for record in db.outbox.find({}, {"state": 1}):
            outbox[record["state"]].add(record["_id"])
        return {"completions": completions, "assignments": assignments, "outbox": dict(outbox)}
    finally:
        await client.close()


async def published_writes(bootstrap: str, d: Deployment) -> dict[str, Any]:
    """What the assignment topic holds: completions (occurrence -> completion id), created assignments, event ids.

    A record sent twice (a relay that crashed between publishing and marking it sent) is one event id;
    two different event ids for one completion would be a duplicate and are refused here.
    """
    records = await wl.read_topic(bootstrap, Topics(prefix=d.prefix).assignment, wl.partitions(d))
    completions: dict[str, str] = {}
    assignments: set[str] = set()
    event_ids: set[str] = set()
    ids_by_fact: dict[str, set[str]] = defaultdict(set)
    for env, _ in records:
        if env is None:
            continue
        event_ids.add(env.id)
        if isinstance(env.data, CompletionRecorded):
            completions[env.data.occurrence_id] = env.data.completion_id
            ids_by_fact[env.data.occurrence_id].add(env.id)
        elif isinstance(env.data, AssignmentCreated):
            assignments.add(env.data.assignment_id)
            ids_by_fact[env.data.assignment_id].add(env.id)
    doubled = {fact: ids for fact, ids in ids_by_fact.items() if len(ids) > 1}
    assert not doubled, f"one write published as several events: {list(doubled.items())[:5]}"
    return {"completions": completions, "assignments": assignments, "event_ids": event_ids}
