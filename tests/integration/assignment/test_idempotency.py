"""Idempotency-Key on every POST: a retry gets the first answer, nothing is recorded twice, races write once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from homework_assignment.store import AssignmentStore
from homework_shared.events import CompletionRecorded
from homework_shared.service import Runtime
from tests.conftest import wait_for
from tests.integration.assignment.conftest import Service, bearer, daily_mood_log, evening


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def outbox_count(svc: Service, event_type: str) -> int:
    rt: Runtime = svc.runtime
    return await rt.outbox.collection.count_documents({"type": event_type, "key": svc.client_id})


async def test_a_retried_create_returns_the_first_assignment_and_creates_one(svc: Service) -> None:
    body = daily_mood_log(svc.client_id)
    first = await svc.http.post("/v1/assignments", json=body, headers=keyed(svc.therapist, "create-1"))
    again = await svc.http.post("/v1/assignments", json=body, headers=keyed(svc.therapist, "create-1"))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = await svc.http.get(f"/v1/clients/{svc.client_id}/assignments", headers=svc.therapist)
    assert len(listed.json()["items"]) == 1
    assert await outbox_count(svc, "homework.assignment.created.v1") == 1


async def test_every_post_replays_its_first_answer(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    posts: list[tuple[str, dict[str, str], dict[str, Any] | None]] = [
        (f"/v1/assignments/{a['id']}/revisions", svc.therapist, {"title": "Revised"}),
        (f"/v1/assignments/{a['id']}/occurrences/{evening(a, 21)}/completion", svc.client, {"data": {"mood": 4}}),
        (f"/v1/assignments/{a['id']}/pause", svc.therapist, None),
        (f"/v1/assignments/{a['id']}/resume", svc.therapist, None),
        (f"/v1/assignments/{a['id']}/end", svc.therapist, None),
    ]
    for n, (path, headers, body) in enumerate(posts):
        first = await svc.http.post(path, json=body, headers=keyed(headers, f"k{n}"))
        assert first.status_code in (200, 201), first.text
        again = await svc.http.post(path, json=body, headers=keyed(headers, f"k{n}"))
        assert (again.status_code, again.json()) == (first.status_code, first.json()), path
        assert again.headers.get("Idempotent-Replayed") == "true"
    final = (await svc.http.get(f"/v1/assignments/{a['id']}", headers=svc.therapist)).json()
    assert (final["version"], final["status"], final["resolved_count"]) == (2, "ended", 1)
    audit = (await svc.http.get(f"/v1/assignments/{a['id']}/audit", headers=svc.therapist)).json()
    assert [e["action"] for e in audit["items"]] == ["create", "revise", "completion", "pause", "resume", "end"]


async def test_a_retry_after_the_state_moved_on_still_gets_the_first_answer(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    path = f"/v1/assignments/{a['id']}/occurrences/{evening(a, 21)}/skip"
    first = await svc.http.post(path, json={"barrier": "no_time"}, headers=keyed(svc.client, "skip-1"))
    assert first.status_code == 201
    svc.at(2026, 3, 22, 9, 0)  # the window has closed since, and the assignment is paused
    await svc.action(a, "pause")
    again = await svc.http.post(path, json={"barrier": "no_time"}, headers=keyed(svc.client, "skip-1"))
    assert (again.status_code, again.json()) == (201, first.json())


async def test_the_same_key_for_another_request_is_refused(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    first = await svc.complete(a, evening(a, 21), headers=keyed(svc.client, "k"), data={"mood": 3})
    assert first.status_code == 201
    same_occurrence = await svc.complete(a, evening(a, 21), headers=keyed(svc.client, "k"), data={"mood": 9})
    assert (same_occurrence.status_code, same_occurrence.json()["error"]) == (422, "idempotency_key_reused")
    b = await svc.create(title="Second")
    other = await svc.complete(b, evening(b, 21), headers=keyed(svc.client, "k"))
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    store: AssignmentStore = svc.app.state.handlers.store
    assert await store.resolved_among([evening(b, 21)], None) == set()


async def test_keys_belong_to_their_caller(svc: Service) -> None:
    a = await svc.create()
    body = daily_mood_log(svc.client_id)
    other_therapist = bearer("therapist", "another-therapist", svc.practice)
    first = await svc.http.post("/v1/assignments", json=body, headers=keyed(svc.therapist, "shared-key"))
    second = await svc.http.post("/v1/assignments", json=body, headers=keyed(other_therapist, "shared-key"))
    assert first.json()["id"] != second.json()["id"] != a["id"]


async def test_concurrent_duplicates_of_one_completion_write_once_and_all_get_the_answer(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    path = f"/v1/assignments/{a['id']}/occurrences/{evening(a, 21)}/completion"
    responses = await asyncio.gather(
        *(svc.http.post(path, json={"data": {"mood": 5}}, headers=keyed(svc.client, "twin")) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6
    assert len({r.text for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 5
    await wait_for(lambda: _relayed(svc), message="outbox relayed")
    assert await outbox_count(svc, CompletionRecorded.event_type) == 1


async def test_concurrent_completions_of_one_occurrence_without_keys_record_one(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    responses = await asyncio.gather(*(svc.complete(a, evening(a, 21), data={"mood": m}) for m in range(6)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"occurrence_already_resolved"}
    assert await outbox_count(svc, CompletionRecorded.event_type) == 1


async def test_concurrent_completions_of_many_occurrences_each_get_their_own_answer(svc: Service) -> None:
    assignments = [await svc.create(title=f"Homework {n}") for n in range(5)]
    svc.at(2026, 3, 21, 19, 30)
    requests = []
    for a in assignments:
        requests.append(svc.complete(a, evening(a, 21)))  # fine
        requests.append(svc.complete(a, evening(a, 22)))  # not open yet
        requests.append(svc.complete(a, evening(a, 21), data={"mood": 99}))  # bad data or already resolved
    responses: list[httpx.Response] = await asyncio.gather(*requests)
    codes = [r.status_code for r in responses]
    assert codes[0::3] == [201] * 5
    assert [r.json()["error"] for r in responses[1::3]] == ["occurrence_not_open"] * 5
    assert all(code in (409, 422) for code in codes[2::3])
    assert await outbox_count(svc, CompletionRecorded.event_type) == 5


async def _relayed(svc: Service) -> bool:
    return await svc.runtime.relay.pending() == 0
