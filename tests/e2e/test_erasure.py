"""Erasing a client across the three services: the saga, late events, a kill in the middle, crypto-shredding.

The three services run as processes on the session's Kafka broker and MongoDB server, with
``INCLUDE_FREE_TEXT=true`` so free text leaves in events, sealed with the client's key. Practice
A's clients and practice B's ``c-1`` (the same id in another practice) are seeded through the
APIs and the real event flow; each test erases one client of A and checks, in every service's
database as it really is, that nothing of that client is left while the bystanders keep theirs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.fernet import Fernet
from pymongo import MongoClient

from homework_assignment.store import CLIENT_DATA as ASSIGNMENT_DATA
from homework_insights.store import CLIENT_DATA as INSIGHTS_DATA
from homework_insights.store import client_key
from homework_reminder.store import CLIENT_DATA as REMINDER_DATA
from homework_shared.erasure import pseudonym
from homework_shared.events import AssignmentCreated, CompletionRecorded, encode, envelope
from homework_shared.events.examples import EXAMPLES
from homework_shared.export import ClientData
from tests.conftest import unique
from tests.e2e.scenario import read
from tests.e2e.system import Deployment, deploy, wait
from tests.e2e.test_export import assignment_body, bearer
from tests.infra import Infra

DECLARED: dict[str, ClientData] = {
    "assignment": ASSIGNMENT_DATA,
    "reminder": REMINDER_DATA,
    "insights": INSIGHTS_DATA,
}
SERVICES = tuple(DECLARED)
NOTE = "Walked past the bridge without stopping"
Doc = dict[str, Any]


@dataclass
class World:
    deployment: Deployment
    practice_a: str
    practice_b: str
    mongo: MongoClient[Doc]
    assignments: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(practice, client) -> assignment ids."""

    def url(self, service: str) -> str:
        return self.deployment.processes[service].url

    def database(self, service: str) -> Any:
        return self.mongo[self.deployment.database(service)]

    def admin(self, practice: str | None = None) -> dict[str, str]:
        return bearer("admin", "admin-a", practice or self.practice_a)

    def therapist(self, practice: str | None = None) -> dict[str, str]:
        return bearer("therapist", "t-a", practice or self.practice_a)

    def client(self, client_id: str, practice: str | None = None) -> dict[str, str]:
        return bearer("client", client_id, practice or self.practice_a)

    def stored_about(self, practice: str, client_id: str) -> dict[str, list[str]]:
        """Documents about (practice, client) in every collection of every service, found without the declared filters.

        The outbox is left out: its records are the events as sent (kept 7 days, free text sealed).
        """
        ids = self.assignments.get((practice, client_id), [])
        found: dict[str, list[str]] = {}
        for service in SERVICES:
            db = self.database(service)
            for name in db.list_collection_names():
                for doc in db[name].find():
                    text = json.dumps(doc, default=str)
                    event = doc.get("event") if isinstance(doc.get("event"), dict) else {}
                    client = doc.get("client_id") or event.get("client_id")
                    if (
                        (doc.get("practice_id") or event.get("practice_id"), client) == (practice, client_id)
                        or doc.get("_id") == client_key(practice, client_id)
                        or any(aid in text for aid in ids)
                    ):
                        if name == "outbox":
                            continue  # checked on its own: events in flight, sealed (see the crypto test)
                        found.setdefault(f"{service}.{name}", []).append(str(doc["_id"]))
        return found


def _seed(http: httpx.Client, w: World, practice: str, client_id: str) -> None:
    """An assignment, a completion with a note, preferences and thresholds, known to every service."""
    therapist = w.therapist(practice)
    r = http.post(
        f"{w.url('assignment')}/v1/assignments",
        json=assignment_body(client_id, f"{practice} {client_id} {unique('title')}"),
        headers=therapist,
    )
    assert r.status_code == 201, r.text
    assignment_id = r.json()["id"]
    w.assignments.setdefault((practice, client_id), []).append(assignment_id)
    occurrences = http.get(
        f"{w.url('assignment')}/v1/assignments/{assignment_id}/occurrences", headers=w.client(client_id, practice)
    )
    assert occurrences.status_code == 200, occurrences.text
    occurrence = occurrences.json()["items"][0]["occurrence_id"]
    r = http.post(
        f"{w.url('assignment')}/v1/assignments/{assignment_id}/occurrences/{occurrence}/completion",
        json={"data": {"mood": 6}, "note": NOTE},
        headers=w.client(client_id, practice),
    )
    assert r.status_code == 201, r.text

    def in_insights() -> bool:
        found = w.database("insights")["occurrences"].find_one({"_id": occurrence, "resolution": {"$ne": None}})
        return found is not None

    def in_reminder() -> bool:
        return w.database("reminder")["plans"].find_one({"practice_id": practice, "client_id": client_id}) is not None

    wait(in_insights, 120, message=f"{client_id}'s completion in the insights service")
    wait(in_reminder, 120, message=f"{client_id}'s plan in the reminder service")
    r = http.put(
        f"{w.url('reminder')}/v1/clients/{quote(client_id)}/preferences",
        json={"channels": ["push"]},
        headers=w.client(client_id, practice),
    )
    assert r.status_code == 200, r.text
    r = http.put(
        f"{w.url('insights')}/v1/clients/{quote(client_id)}/thresholds",
        json={"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]},
        headers=therapist,
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def world(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("erasure") / "logs"
    with deploy(infra, logs, INCLUDE_FREE_TEXT="true") as d, httpx.Client(timeout=60) as http:
        w = World(d, unique("practice-a"), unique("practice-b"), MongoClient(infra.mongodb_uri, tz_aware=True))
        for practice, client_id in ((w.practice_a, "c-1"), (w.practice_a, "c-2"), (w.practice_b, "c-1")):
            _seed(http, w, practice, client_id)
        yield w
        for name, proc in d.processes.items():
            assert proc.alive(), f"{name} died during the erasure tests; see {proc.logfile}"
        w.mongo.close()


def erase(w: World, client_id: str) -> dict[str, Any]:
    with httpx.Client(timeout=60) as http:
        r = http.post(f"{w.url('assignment')}/v1/clients/{quote(client_id)}/erasure", headers=w.admin())
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def erasure_completed(w: World, client_id: str, timeout: float = 120) -> dict[str, Any]:
    def state() -> dict[str, Any] | None:
        r = httpx.get(f"{w.url('assignment')}/v1/clients/{quote(client_id)}/erasure", headers=w.therapist())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["state"] == "completed" else None

    result: dict[str, Any] = wait(state, timeout, message=f"the erasure of {client_id} completed in every service")
    return result


def export_status(w: World, client_id: str, practice: str | None = None) -> int:
    r = httpx.get(
        f"{w.url('assignment')}/v1/clients/{quote(client_id)}/export", headers=w.therapist(practice), timeout=120
    )
    return r.status_code


def test_export_erase_export_shows_nothing_of_the_client_in_any_service(world: World) -> None:
    w = world
    with httpx.Client(timeout=120) as http:
        before = http.get(f"{w.url('assignment')}/v1/clients/c-1/export", headers=w.therapist())
    assert before.status_code == 200, before.text
    assert NOTE in before.text
    assert w.stored_about(w.practice_a, "c-1"), "the scenario stored nothing about the client"

    requested = erase(w, "c-1")
    assert requested["state"] == "pending"
    assert set(requested["services"]) == set(SERVICES)
    with httpx.Client(timeout=60) as http:
        again = http.post(f"{w.url('assignment')}/v1/clients/c-1/erasure", headers=w.admin())
    assert again.status_code == 200, again.text
    assert again.json()["erasure_id"] == requested["erasure_id"]  # a replayed request changes nothing

    done = erasure_completed(w, "c-1")
    assert done["requested_by"] == "admin-a"
    assert done["services"]["assignment"]["counts"]["assignments"] == 1
    assert done["services"]["reminder"]["counts"]["plans"] == 1
    assert done["services"]["insights"]["counts"]["assignments"] == 1
    assert all(done["services"][s]["completed_at"] for s in SERVICES)

    assert export_status(w, "c-1") == 404  # nothing of the client in any service
    assert w.stored_about(w.practice_a, "c-1") == {}
    # The bystanders keep everything: another client of A, and B's client of the same id.
    assert export_status(w, "c-2") == 200
    assert export_status(w, "c-1", w.practice_b) == 200
    assert w.stored_about(w.practice_b, "c-1")
    # The erasure record stays, with the client pseudonymised.
    record = w.database("assignment")["erasures"].find_one({"_id": pseudonym(w.practice_a, "c-1")})
    assert record is not None
    assert "c-1" not in json.dumps(record, default=str).replace(w.practice_a, "")


def test_writes_about_an_erased_client_are_refused_with_410(world: World) -> None:
    w = world
    erase(w, "c-2")
    erasure_completed(w, "c-2")  # the reminder and insights services refuse once they hold the tombstone
    calls = [
        ("POST", "assignment", "/v1/assignments", w.therapist(), assignment_body("c-2", "after erasure")),
        ("PUT", "reminder", "/v1/clients/c-2/preferences", w.client("c-2"), {"channels": ["push"]}),
        ("PUT", "reminder", "/v1/clients/c-2/preferences", w.therapist(), {"channels": ["push"]}),
        (
            "PUT",
            "insights",
            "/v1/clients/c-2/thresholds",
            w.therapist(),
            {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]},
        ),
        ("POST", "insights", "/v1/clients/c-2/summaries", w.therapist(), {}),
    ]
    answers = []
    with httpx.Client(timeout=60) as http:
        for method, service, path, headers, body in calls:
            r = http.request(method, f"{w.url(service)}{path}", json=body, headers=headers)
            answers.append((method, path, r.status_code, r.json().get("error")))
        aid = w.assignments[(w.practice_a, "c-2")][0]
        r = http.post(
            f"{w.url('assignment')}/v1/assignments/{aid}/occurrences/{quote(aid + '@2026-01-01T20:00')}/completion",
            json={"data": {"mood": 5}},
            headers=w.client("c-2"),
        )
        answers.append(("POST", "completion", r.status_code, r.json().get("error")))
    assert [a for a in answers if a[2:] != (410, "client_erased")] == []
    assert w.stored_about(w.practice_a, "c-2") == {}


async def _publish_late(w: World, client_id: str) -> list[str]:
    """A creation and a completion about the erased client, as if they had been on the topic all along."""
    aid = f"asg-late-{unique('x')}"
    created = EXAMPLES[AssignmentCreated].model_copy(
        update={"client_id": client_id, "practice_id": w.practice_a, "assignment_id": aid}
    )
    completion = EXAMPLES[CompletionRecorded].model_copy(
        update={"client_id": client_id, "practice_id": w.practice_a, "assignment_id": aid, "note": None}
    )
    producer = AIOKafkaProducer(bootstrap_servers=w.deployment.infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event in (created, completion):
            record = encode(envelope(event, source="/homework/assignment", time=datetime.now(UTC)))
            topic = w.deployment.system_topics.assignment
            await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()
    return [aid]


def _dropped(w: World, service: str) -> float:
    text = httpx.get(f"{w.url(service)}/metrics").text
    return sum(
        float(m.group(1))
        for m in re.finditer(r'^erased_client_events_dropped_total\{type="[^"]+"\} ([0-9.e+]+)$', text, re.M)
    )


def test_a_late_event_about_an_erased_client_is_dropped_and_recreates_nothing(world: World) -> None:
    w = world
    erase(w, "c-3")  # a client who never had data: the tombstones are written all the same
    erasure_completed(w, "c-3")
    before = {s: _dropped(w, s) for s in ("reminder", "insights")}
    late_ids = asyncio.run(_publish_late(w, "c-3"))
    w.assignments[(w.practice_a, "c-3")] = late_ids
    wait(
        lambda: all(_dropped(w, s) >= before[s] + 2 for s in ("reminder", "insights")),
        90,
        message="both consumers dropped the two late events",
    )
    assert w.stored_about(w.practice_a, "c-3") == {}


def test_a_service_killed_as_the_erasure_arrives_finishes_it_after_restart(world: World) -> None:
    w = world
    with httpx.Client(timeout=60) as http:
        _seed(http, w, w.practice_a, "c-4")
    assert w.stored_about(w.practice_a, "c-4")
    erase(w, "c-4")
    for service in ("reminder", "insights"):
        w.deployment.processes[service].kill()  # SIGKILL, at once: whatever the step had begun rolls back
    for service in ("reminder", "insights"):
        w.deployment.processes[service].start()
    for service in ("reminder", "insights"):
        w.deployment.processes[service].wait_ready(120)
    done = erasure_completed(w, "c-4", timeout=180)
    assert done["services"]["insights"]["counts"]["assignments"] == 1
    assert w.stored_about(w.practice_a, "c-4") == {}


def test_erasure_while_completions_are_arriving_leaves_nothing_and_refuses_the_rest(world: World) -> None:
    w = world
    with httpx.Client(timeout=60) as http:
        for _ in range(6):
            r = http.post(
                f"{w.url('assignment')}/v1/assignments",
                json=assignment_body("c-5", f"busy {unique('title')}"),
                headers=w.therapist(),
            )
            assert r.status_code == 201, r.text
            w.assignments.setdefault((w.practice_a, "c-5"), []).append(r.json()["id"])
        targets = []
        for aid in w.assignments[(w.practice_a, "c-5")]:
            items = http.get(f"{w.url('assignment')}/v1/assignments/{aid}/occurrences", headers=w.client("c-5"))
            targets.append((aid, items.json()["items"][0]["occurrence_id"]))

    def complete(target: tuple[str, str]) -> int:
        aid, occurrence = target
        r = httpx.post(
            f"{w.url('assignment')}/v1/assignments/{aid}/occurrences/{quote(occurrence)}/completion",
            json={"data": {"mood": 4}, "note": NOTE},
            headers=w.client("c-5"),
            timeout=60,
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = list(pool.map(complete, targets[:2]))
        racing = pool.map(complete, targets[2:])
        erase(w, "c-5")
        statuses = first + list(racing)
    assert first == [201, 201]
    assert set(statuses) <= {201, 410}, statuses
    erasure_completed(w, "c-5")
    assert w.stored_about(w.practice_a, "c-5") == {}


def test_sealed_free_text_on_the_topic_is_unreadable_after_erasure(world: World) -> None:
    w = world
    with httpx.Client(timeout=60) as http:
        _seed(http, w, w.practice_a, "c-6")
    key_doc = w.database("assignment")["client_keys"].find_one({"_id": pseudonym(w.practice_a, "c-6")})
    assert key_doc is not None
    key = Fernet(key_doc["key"].encode())

    def sealed_on_topic() -> list[str]:
        events = read(w.deployment, w.deployment.system_topics.assignment)
        return [
            e.envelope.data.note_sealed
            for e in events
            if e.envelope is not None
            and isinstance(e.envelope.data, CompletionRecorded)
            and (e.envelope.data.practice_id, e.envelope.data.client_id) == (w.practice_a, "c-6")
        ]

    copies = sealed_on_topic()
    assert len(copies) == 1
    assert copies[0]
    assert NOTE not in copies[0]
    assert key.decrypt(copies[0].encode()).decode() == NOTE  # readable with the client's key

    erase(w, "c-6")
    erasure_completed(w, "c-6")
    assert w.database("assignment")["client_keys"].find_one({"_id": pseudonym(w.practice_a, "c-6")}) is None
    assert sealed_on_topic() == copies  # still on the topic: Kafka keeps it for its retention...
    assert all(NOTE not in str(d) for d in w.database("assignment")["outbox"].find())
    # ...and nothing in any service can decrypt it any more: the only key is gone.
