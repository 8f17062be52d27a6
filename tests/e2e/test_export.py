"""A client's data export covers every collection of every service that holds client data, and nothing of anyone else.

The three services run as processes on the session's Kafka broker and MongoDB server. Practice A's
client ``c-1`` gets two assignments, a revision, a completion, preferences, thresholds, a summary
and a reminder that fires into a webhook delivery; A's ``c-2`` and practice B's ``c-1`` (the same id
in another practice) get an assignment each. Then each service's database is listed as it really
is: a collection that is neither exported nor declared client-free fails the test, so a collection
added later without export support is caught. For each exported collection, the documents about A's
``c-1`` are found independently of the declared filters (by the client's assignment ids, or its
practice and client id) and must all be in the bundle; a document or marker of another client or
practice in the bundle fails it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from pymongo import MongoClient

from homework_assignment.store import CLIENT_DATA as ASSIGNMENT_DATA
from homework_insights.store import CLIENT_DATA as INSIGHTS_DATA
from homework_insights.store import client_key
from homework_reminder.store import CLIENT_DATA as REMINDER_DATA
from homework_shared.auth.mint import mint_token
from homework_shared.export import OPERATIONAL, ClientData
from tests.conftest import unique
from tests.e2e.system import Deployment, deploy, wait
from tests.infra import Infra

DECLARED: dict[str, ClientData] = {
    "assignment": ASSIGNMENT_DATA,
    "reminder": REMINDER_DATA,
    "insights": INSIGHTS_DATA,
}
SEEDED: dict[str, set[str]] = {
    "assignment": {"assignments", "revisions", "resolutions", "audit_log"},
    "reminder": {"plans", "occurrences", "reminders", "preferences", "deliveries"},
    "insights": {"assignments", "days", "occurrences", "clients", "thresholds", "summaries"},
}
"""Collections the scenario certainly fills for A's c-1: the bundle must show each, not only not contradict it."""
Doc = dict[str, Any]


def bearer(role: str, sub: str, practice: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(sub=sub, role=role, practice_id=practice)}"}


def assignment_body(client_id: str, title: str) -> dict[str, Any]:
    """A daily mood log open now, with a reminder (push and webhook) a minute or two from now."""
    tz = "Europe/Berlin"
    local_now = datetime.now(UTC).astimezone(ZoneInfo(tz)).replace(second=0, microsecond=0, tzinfo=None)
    return {
        "client_id": client_id,
        "kind": "mood_log",
        "title": title,
        "instructions": f"Rate your mood each evening ({title}).",
        "schedule": {
            "type": "recurring",
            "timezone": tz,
            "rrule": "FREQ=DAILY",
            "starts_at": (local_now - timedelta(hours=1)).isoformat(),
            "count": 5,
            "window_minutes": 600,
        },
        "reminders": [{"anchor": "opens", "offset_minutes": 62, "channels": ["push", "webhook"]}],
    }


@dataclass
class World:
    deployment: Deployment
    practice_a: str
    practice_b: str
    mongo: MongoClient[Doc]
    target_ids: list[str] = field(default_factory=list)
    """Assignment ids of A's c-1."""
    other_ids: list[str] = field(default_factory=list)
    """Assignment ids and titles of A's c-2 and B's c-1."""

    def url(self, service: str) -> str:
        return self.deployment.processes[service].url

    def database(self, service: str) -> Any:
        return self.mongo[self.deployment.database(service)]


def _create(http: httpx.Client, world: World, practice: str, client_id: str) -> tuple[str, str]:
    title = f"{practice} {client_id} {unique('title')}"
    r = http.post(
        f"{world.url('assignment')}/v1/assignments",
        json=assignment_body(client_id, title),
        headers=bearer("therapist", f"t-{practice}", practice),
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], title


@pytest.fixture(scope="module")
def world(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("export") / "logs"
    with deploy(infra, logs, WEBHOOK_ALLOW_PRIVATE_NETWORKS="true") as d, httpx.Client(timeout=60) as http:
        w = World(d, unique("practice-a"), unique("practice-b"), MongoClient(infra.mongodb_uri, tz_aware=True))
        a, b = w.practice_a, w.practice_b
        therapist_a, admin_a, client_a = (
            bearer("therapist", "t-a", a),
            bearer("admin", "admin-a", a),
            bearer("client", "c-1", a),
        )
        r = http.put(
            f"{w.url('reminder')}/v1/practices/{quote(a)}/webhook",
            json={"url": "http://127.0.0.1:9/export-hook", "secret": "a-webhook-secret-of-the-export"},
            headers=admin_a,
        )
        assert r.status_code == 200, r.text
        first, _ = _create(http, w, a, "c-1")
        second, _ = _create(http, w, a, "c-1")
        w.target_ids = [first, second]
        for practice, client_id in ((a, "c-2"), (b, "c-1")):
            w.other_ids += _create(http, w, practice, client_id)

        r = http.post(
            f"{w.url('assignment')}/v1/assignments/{first}/revisions", json={"title": "Revised"}, headers=therapist_a
        )
        assert r.status_code == 201, r.text
        occurrences = http.get(f"{w.url('assignment')}/v1/assignments/{second}/occurrences", headers=client_a)
        assert occurrences.status_code == 200, occurrences.text
        occurrence = occurrences.json()["items"][0]["occurrence_id"]
        r = http.post(
            f"{w.url('assignment')}/v1/assignments/{second}/occurrences/{occurrence}/completion",
            json={"data": {"mood": 6}, "note": "Felt calmer after the walk"},
            headers=client_a,
        )
        assert r.status_code == 201, r.text
        r = http.put(
            f"{w.url('reminder')}/v1/clients/c-1/preferences",
            json={"channels": ["push", "webhook"]},
            headers=client_a,
        )
        assert r.status_code == 200, r.text

        def figures_show_the_completion() -> bool:
            found = w.database("insights")["occurrences"].find_one({"_id": occurrence, "resolution": {"$ne": None}})
            return found is not None

        wait(figures_show_the_completion, 120, message="the completion in the insights service")
        r = http.put(
            f"{w.url('insights')}/v1/clients/c-1/thresholds",
            json={"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]},
            headers=therapist_a,
        )
        assert r.status_code == 200, r.text
        r = http.post(f"{w.url('insights')}/v1/clients/c-1/summaries", json={}, headers=therapist_a)
        assert r.status_code == 201, r.text

        def a_delivery_for_the_client() -> bool:
            return w.database("reminder")["deliveries"].find_one({"practice_id": a}) is not None

        wait(a_delivery_for_the_client, 240, interval=1, message="a reminder fired into a webhook delivery")
        yield w
        for name, proc in d.processes.items():
            assert proc.alive(), f"{name} died during the export tests; see {proc.logfile}"
        w.mongo.close()


def _text(doc: Any) -> str:
    return json.dumps(doc, default=str, sort_keys=True)


def about_target(world: World, doc: Doc) -> bool:
    """Whether a stored document is about A's c-1, judged without the declared filters."""
    if any(aid in _text(doc) for aid in world.target_ids):
        return True
    client = doc.get("client_id") or (doc.get("event") or {}).get("client_id")
    return (doc.get("practice_id"), client) == (world.practice_a, "c-1") or doc.get("_id") == client_key(
        world.practice_a, "c-1"
    )


def about_others(world: World, doc: Doc) -> list[str]:
    """Markers of another client or practice in a document."""
    text = _text(doc)
    found = [marker for marker in world.other_ids if marker in text]
    if world.practice_b in text:
        found.append(world.practice_b)
    if (doc.get("practice_id"), doc.get("client_id")) == (world.practice_a, "c-2"):
        found.append("A's c-2")
    return found


def export(world: World, headers: dict[str, str], path: str = "/v1/clients/c-1/export") -> httpx.Response:
    with httpx.Client(timeout=120) as http:
        return http.get(f"{world.url('assignment')}{path}", headers=headers)


@pytest.mark.parametrize("service", list(DECLARED))
def test_every_collection_is_exported_or_declared_client_free_and_the_bundle_covers_the_client(
    world: World, service: str
) -> None:
    response = export(world, bearer("therapist", "t-a", world.practice_a))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert (bundle["client_id"], bundle["practice_id"]) == ("c-1", world.practice_a)
    part = bundle["services"][service]
    assert part["schema_version"] == 1
    assert datetime.fromisoformat(part["generated_at"]).tzinfo is not None

    declared = DECLARED[service]
    db = world.database(service)
    collections = sorted(name for name in db.list_collection_names() if not name.startswith("system."))
    undeclared = [name for name in collections if name not in declared.exported and name not in declared.client_free]
    assert undeclared == [], (
        f"{service} keeps {undeclared} but its CLIENT_DATA neither exports them nor says why they hold no client data"
    )
    assert set(part["collections"]) == set(declared.exported)

    problems: list[str] = []
    for name in declared.exported:
        exported = {str(doc["_id"]): doc for doc in part["collections"][name]}
        stored = [doc for doc in db[name].find() if about_target(world, doc)]
        missing = sorted(str(doc["_id"]) for doc in stored if str(doc["_id"]) not in exported)
        if missing:
            problems.append(f"{name}: the client's documents {missing[:5]} are not in the bundle")
        if name in SEEDED[service] and not exported:
            problems.append(f"{name}: the scenario wrote the client's data here, the bundle shows none")
        for doc_id, doc in exported.items():
            if others := about_others(world, doc):
                problems.append(f"{name}: {doc_id} is about someone else ({others})")
    for name in set(declared.client_free) - set(OPERATIONAL):
        # Declared to hold nothing about a client: checked, not trusted.
        if about := [str(doc["_id"]) for doc in db[name].find() if about_target(world, doc)]:
            problems.append(f"{name} is declared client-free but holds {about[:5]} about the client")
    assert problems == []


def test_the_bundle_holds_ids_timestamps_and_free_text_and_nothing_of_other_tenants(world: World) -> None:
    response = export(world, bearer("admin", "admin-a", world.practice_a))
    assert response.status_code == 200, response.text
    text = response.text
    assert "Felt calmer after the walk" in text  # the completion's note (free text)
    assert "Revised" in text
    assert all(aid in text for aid in world.target_ids)
    assert [marker for marker in [*world.other_ids, world.practice_b] if marker in text] == []
    resolution = response.json()["services"]["assignment"]["collections"]["resolutions"][0]
    assert datetime.fromisoformat(resolution["recorded_at"]).utcoffset() == timedelta(0)


def test_the_client_gets_the_same_record_from_me_export(world: World) -> None:
    mine = export(world, bearer("client", "c-1", world.practice_a), "/v1/me/export")
    theirs = export(world, bearer("therapist", "t-a", world.practice_a))
    assert mine.status_code == theirs.status_code == 200, mine.text
    # The read audit is left out: the therapist's export is itself a recorded read, the client's own is not.
    ids = {
        name: sorted(d["_id"] for d in docs)
        for name, docs in mine.json()["services"]["assignment"]["collections"].items()
        if name != "read_audit"
    }
    assert ids == {
        name: sorted(d["_id"] for d in docs)
        for name, docs in theirs.json()["services"]["assignment"]["collections"].items()
        if name != "read_audit"
    }
    assert ids["assignments"] == sorted(world.target_ids)


def test_a_client_nobody_in_the_practice_knows_is_404(world: World) -> None:
    response = export(world, bearer("therapist", "t-a", world.practice_a), "/v1/clients/nobody-here/export")
    assert response.status_code == 404, response.text


def test_a_service_that_cannot_be_reached_fails_the_export_with_503_naming_it(world: World) -> None:
    insights = world.deployment.processes["insights"]
    insights.stop()
    try:
        response = export(world, bearer("therapist", "t-a", world.practice_a))
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "export_part_unavailable"
        assert "insights" in response.json()["message"]
        assert "services" not in response.json()  # never a partial bundle
    finally:
        insights.start()
        insights.wait_ready(90)
    assert export(world, bearer("therapist", "t-a", world.practice_a)).status_code == 200
