"""Races between a completion and a change of its assignment: never a completion recorded after a pause."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_assignment.handlers import AssignmentHandlers
from homework_assignment.store import AssignmentStore
from homework_shared.auth import Principal, Role
from homework_shared.mongo import run_in_transaction
from tests.integration.assignment.conftest import Service, evening


async def test_a_completion_racing_a_pause_is_never_recorded_after_it(svc: Service) -> None:
    for _ in range(5):
        a = await svc.create()
        svc.at(2026, 3, 21, 19, 30)
        completion, pause = await asyncio.gather(svc.complete(a, evening(a, 21)), svc.action(a, "pause"))
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
