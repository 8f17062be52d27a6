"""Races between a completion and a change of its assignment: never a completion recorded after a pause."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_assignment.store import AssignmentStore
from homework_assignment.usecases import AssignmentHandlers
from homework_shared.auth import Principal, Role
from homework_shared.mongo import run_in_transaction
from tests.integration.assignment.conftest import Service, evening, service
from tests.integration.conflicts import CONFLICTS


async def test_a_completion_racing_a_pause_is_never_recorded_after_it_and_is_redone_at_most_twice(
    svc: Service,
) -> None:
    races = 5
    for _ in range(races):
        a = await svc.create()
        svc.at(2026, 3, 21, 19, 30)
        with CONFLICTS.watching() as seen:
            completion, pause = await asyncio.gather(svc.complete(a, evening(a, 21)), svc.action(a, "pause"))
        print(f"a completion racing a pause: {seen}")
        # The loser of a write conflict is aborted at once and redone; the winner writes the assignment last,
        # just before its commit, so the loser's next try (20-40 ms later) normally finds it committed.
        assert seen.aborts <= 2, f"one race, the loser redone more than twice: {seen}"
        assert pause.status_code == 200
        audit = (await svc.http.get(f"/v1/assignments/{a['id']}/audit", headers=svc.therapist)).json()["items"]
        actions = [e["action"] for e in audit]
        if completion.status_code == 201:
            assert actions == ["create", "completion", "pause"]
        else:
            assert completion.json()["error"] == "assignment_not_active"
            assert actions == ["create", "pause"]
        svc.at(2026, 3, 20, 8, 0)


async def test_a_pause_committed_between_the_read_and_the_write_of_a_batch_makes_it_start_over(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    store: AssignmentStore = svc.app.state.handlers.store
    original = store.count_resolutions
    paused: list[Any] = []

    async def pause_first(counts: Mapping[str, int], session: AsyncClientSession) -> bool:
        if not paused:
            # Another request pauses the assignment after this batch has read it as active.
            therapist = Principal(sub="t", role=Role.THERAPIST, practice_id=svc.practice)
            handlers: AssignmentHandlers = svc.app.state.handlers
            paused.append(
                await run_in_transaction(
                    svc.runtime.mongo, lambda s: handlers.change_status(therapist, a["id"], "pause", s)
                )
            )
        return await original(counts, session)

    monkeypatch.setattr(store, "count_resolutions", pause_first)
    response = await svc.complete(a, evening(a, 21))
    assert paused, "the pause ran inside the batch"
    assert (response.status_code, response.json()["error"]) == (409, "assignment_not_active")
    audit = (await svc.http.get(f"/v1/assignments/{a['id']}/audit", headers=svc.therapist)).json()["items"]
    assert [e["action"] for e in audit] == ["create", "pause"]


async def test_a_batch_that_runs_into_a_unique_index_answers_that_request_and_writes_the_others_together(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    assignments = [await svc.create(title=f"Homework {n}") for n in range(4)]
    svc.at(2026, 3, 21, 19, 30)
    taken = assignments[0]
    assert (await svc.complete(taken, evening(taken, 21))).status_code == 201
    store: AssignmentStore = svc.app.state.handlers.store

    async def blind(occurrence_ids: list[str], session: AsyncClientSession) -> set[str]:
        return set()  # as if another replica resolved it after this batch looked

    monkeypatch.setattr(store, "resolved_among", blind)
    batch_sizes = svc.app.state.metrics.histogram("resolution_batch_size", "")
    batches_before = batch_sizes._sum.get()
    responses = await asyncio.gather(*(svc.complete(a, evening(a, 21)) for a in assignments))
    assert [r.status_code for r in responses] == [409, 201, 201, 201]
    assert responses[0].json()["error"] == "occurrence_already_resolved"
    assert batch_sizes._sum.get() - batches_before == 4 + 3, "one batch of four, then the three others together"
    for a in assignments:
        found = await svc.http.get(f"/v1/assignments/{a['id']}", headers=svc.therapist)
        assert found.json()["resolved_count"] == 1


async def test_one_idempotency_key_twice_in_a_batch_answers_both_without_writing_the_batch_again(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    assignments = [await svc.create(title=f"Homework {n}") for n in range(5)]
    svc.at(2026, 3, 21, 19, 30)
    monkeypatch.setattr(svc.app.state.resolutions, "linger_s", 0.5)  # the five requests below make one batch
    batch_sizes = svc.app.state.metrics.histogram("resolution_batch_size", "")
    sum_before, count_before = batch_sizes._sum.get(), _batches(batch_sizes)
    reused = {**svc.client, "Idempotency-Key": "twice"}
    with CONFLICTS.watching() as seen:
        keys = [reused, None, None, None, reused]
        pairs = zip(assignments, keys, strict=True)
        responses = await asyncio.gather(*(svc.complete(a, evening(a, 21), headers=k) for a, k in pairs))
    keyed = sorted((r.status_code, r.json().get("error")) for r in (responses[0], responses[4]))
    assert keyed == [(201, None), (422, "idempotency_key_reused")]  # the one written first is the key's answer
    assert [r.status_code for r in responses[1:4]] == [201, 201, 201]
    assert (batch_sizes._sum.get() - sum_before, _batches(batch_sizes) - count_before) == (5, 1), "one batch, once"
    assert seen.aborts == 0, seen


async def test_two_replicas_racing_for_one_occurrence_record_it_once(svc: Service) -> None:
    a = await svc.create()
    async with service(svc.settings.model_copy(update={"topic_prefix": svc.settings.topic_prefix})) as other:
        other.clock.set(datetime(2026, 3, 21, 19, 30, tzinfo=UTC))
        svc.at(2026, 3, 21, 19, 30)
        responses = await asyncio.gather(
            *(replica.complete(a, evening(a, 21), headers=svc.client) for replica in (svc, other, svc, other))
        )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert {r.json().get("error") for r in responses if r.status_code == 409} == {"occurrence_already_resolved"}
    found = await svc.http.get(f"/v1/assignments/{a['id']}", headers=svc.therapist)
    assert found.json()["resolved_count"] == 1


def _batches(histogram: Any) -> float:
    """How many batches a ``resolution_batch_size`` histogram has observed."""
    return float(sum(bucket.get() for bucket in histogram._buckets))
