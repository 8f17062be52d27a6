"""An index serves every query the service makes: every command it sends while every endpoint is used is
recorded (PyMongo command monitoring) and its filter explained on the real server; none may scan a collection."""

from __future__ import annotations

import copy
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from homework_assignment.usecases import AssignmentHandlers
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.assignment.conftest import daily_mood_log, evening, service, settings_for

QUERYING = {"find", "update", "delete", "aggregate", "count", "findAndModify"}


class Recorder(monitoring.CommandListener):
    """Keeps the query commands sent to one database while ``database`` is set."""

    def __init__(self) -> None:
        self.database: str | None = None
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database and event.command_name in QUERYING:
            self.commands.append(copy.deepcopy(dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


RECORDER = Recorder()
monitoring.register(RECORDER)  # only clients created from now on report to it; it records one database only


def filters_of(command: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(collection, filter, sort) of each query in a command."""
    name = next(iter(command))
    collection = command[name]
    if name == "find":
        return [(collection, command.get("filter", {}), command.get("sort"))]
    if name == "update":
        return [(collection, u["q"], None) for u in command["updates"]]
    if name == "delete":
        return [(collection, d["q"], None) for d in command["deletes"]]
    if name == "aggregate":
        first = command["pipeline"][0] if command["pipeline"] else {}
        return [(collection, first.get("$match", {}), None)]
    if name == "count":
        return [(collection, command.get("query", {}), None)]
    return [(collection, command.get("query", {}), command.get("sort"))]


# Stages that read through an index: IXSCAN; EXPRESS_IXSCAN, mongod 8's express path for an equality
# on _id or a unique index (the Rust SecantusDB names it too); IDHACK, the _id look-up of mongod 7.
INDEX_SCANS = {"IXSCAN", "EXPRESS_IXSCAN", "IDHACK"}


def served_by_an_index(found: list[str]) -> bool:
    """A plan uses an index when one of its stages scans one and none scans the collection."""
    return "COLLSCAN" not in found and bool(INDEX_SCANS.intersection(found))


def stages(plan: dict[str, Any]) -> list[str]:
    found = [plan.get("stage", "")]
    for key in ("inputStage", "queryPlan"):
        if key in plan:
            found += stages(plan[key])
    for child in plan.get("inputStages", []):
        found += stages(child)
    return found


async def test_every_query_of_every_endpoint_is_served_by_an_index(infra: Infra) -> None:
    settings = settings_for(infra.kafka_bootstrap, infra.mongodb_uri, end_sweep_interval_s=0.05)
    RECORDER.database, RECORDER.commands = settings.mongodb_database, []
    try:
        async with service(settings) as svc:
            await wait_for(lambda: _true(svc.runtime.kafka_ready.is_set()), timeout=60, message="Kafka connected")
            a = await svc.create()
            b = (
                await svc.http.post(
                    "/v1/assignments",
                    json=daily_mood_log(svc.client_id, title="Second"),
                    headers={**svc.therapist, "Idempotency-Key": "k"},
                )
            ).json()
            for status in (None, "active"):
                params = {"limit": 1, **({"status": status} if status else {})}
                first = await svc.http.get(
                    f"/v1/clients/{svc.client_id}/assignments", params=params, headers=svc.therapist
                )
                cursor = first.json()["next_cursor"]
                await svc.http.get(
                    f"/v1/clients/{svc.client_id}/assignments",
                    params={**params, "cursor": cursor},
                    headers=svc.therapist,
                )
                await svc.http.get("/v1/me/assignments", params=params, headers=svc.client)
            await svc.http.get(f"/v1/assignments/{a['id']}", headers=svc.client)
            await svc.http.post(f"/v1/assignments/{a['id']}/revisions", json={"title": "New"}, headers=svc.therapist)
            await svc.http.get(f"/v1/assignments/{a['id']}/revisions", headers=svc.therapist)
            svc.at(2026, 3, 21, 19, 30)
            await svc.complete(a, evening(a, 21), headers={**svc.client, "Idempotency-Key": "c"})
            await svc.complete(a, evening(a, 21))  # already resolved
            await svc.skip(b, evening(b, 21))
            await svc.http.get(f"/v1/assignments/{a['id']}/occurrences", headers=svc.client)
            for extra in ({}, {"assignment_id": a["id"]}):
                page = await svc.http.get("/v1/me/history", params={"limit": 1, **extra}, headers=svc.client)
                await svc.http.get(
                    "/v1/me/history", params={"cursor": page.json()["next_cursor"], **extra}, headers=svc.client
                )
            audit = await svc.http.get(f"/v1/assignments/{a['id']}/audit", params={"limit": 1}, headers=svc.therapist)
            await svc.http.get(
                f"/v1/assignments/{a['id']}/audit",
                params={"cursor": audit.json()["next_cursor"]},
                headers=svc.therapist,
            )
            for action in ("pause", "resume", "cancel"):
                await svc.action(a, action)
            svc.at(2026, 4, 5, 0, 0)  # b's schedule is over: the sweep ends it
            handlers: AssignmentHandlers = svc.app.state.handlers
            await handlers.end_finished_assignments()
            await wait_for(lambda: _relayed(svc), message="outbox relayed")
            db = svc.runtime.db
            checked: set[str] = set()
            problems = []
            for command in RECORDER.commands:
                for collection, query, sort in filters_of(command):
                    shape = f"{collection} {sorted(query)} {sort}"
                    if shape in checked:
                        continue
                    checked.add(shape)
                    if "_id" in query and not isinstance(query["_id"], dict):
                        continue  # an _id equality is always the _id index (IDHACK)
                    explain = {"find": collection, "filter": query, **({"sort": sort} if sort else {})}
                    plan = (await db.command({"explain": explain, "verbosity": "queryPlanner"}))["queryPlanner"]
                    found = stages(plan["winningPlan"])
                    if not served_by_an_index(found):
                        problems.append((shape, found))
    finally:
        RECORDER.database = None
    assert len(checked) >= 15, checked
    assert not problems, problems
    touched = {shape.split()[0] for shape in checked}
    assert {"assignments", "revisions", "resolutions", "audit_log", "outbox", "idempotency_keys"} <= touched


async def _true(value: bool) -> bool:
    return value


async def _relayed(svc: Any) -> bool:
    return bool(await svc.runtime.relay.pending() == 0)


async def test_a_query_on_an_unindexed_field_is_reported_as_a_collection_scan(infra: Infra) -> None:
    """The check above can fail: on the same server a query no index serves is caught, an _id look-up is not."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    db = client[unique("indexes")]
    try:
        await db.things.insert_many([{"_id": f"t{i}", "colour": "red", "size": i} for i in range(20)])
        await db.things.create_index("size")

        async def plan_of(query: dict[str, Any]) -> list[str]:
            explain = {"find": "things", "filter": query}
            plan = await db.command({"explain": explain, "verbosity": "queryPlanner"})
            return stages(plan["queryPlanner"]["winningPlan"])

        unindexed = await plan_of({"colour": "red"})
        assert "COLLSCAN" in unindexed, unindexed
        assert not served_by_an_index(unindexed), unindexed
        assert served_by_an_index(await plan_of({"size": 3}))
        assert served_by_an_index(await plan_of({"_id": "t3"}))
        assert served_by_an_index(await plan_of({"_id": {"$in": ["t3", "t4"]}}))
    finally:
        await client.drop_database(db.name)
        await client.close()
