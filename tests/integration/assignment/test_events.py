"""Exactly the expected events reach Kafka, in order, read back with a raw consumer and ``decode``."""

from __future__ import annotations

from homework_assignment.erasure import unseal
from homework_shared.events import (
    AssignmentCancelled,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    CompletionRecorded,
    OccurrenceSkipped,
)
from tests.conftest import wait_for
from tests.integration.assignment.conftest import Service, all_events, daily_mood_log, evening


async def test_a_life_of_an_assignment_publishes_exactly_its_events_in_order(svc: Service) -> None:
    a = await svc.create()
    await svc.http.post(f"/v1/assignments/{a['id']}/revisions", json={"title": "Mood"}, headers=svc.therapist)
    svc.at(2026, 3, 21, 19, 30)
    completion = (await svc.complete(a, evening(a, 21), data={"mood": 7}, quality_rating=6, note="ok")).json()
    await svc.complete(a, evening(a, 22))  # refused: not open yet; publishes nothing
    svc.at(2026, 3, 22, 19, 30)
    skip = (await svc.skip(a, evening(a, 22), barrier="too_hard")).json()
    await svc.action(a, "pause")
    await svc.action(a, "pause")  # refused: publishes nothing
    svc.at(2026, 3, 23, 8, 0)
    await svc.action(a, "resume")
    await svc.action(a, "cancel")

    events = await all_events(svc)

    assert [type(e.data) for e in events] == [
        AssignmentCreated,
        AssignmentRevised,
        CompletionRecorded,
        OccurrenceSkipped,
        AssignmentPaused,
        AssignmentResumed,
        AssignmentCancelled,
    ]
    assert len({e.id for e in events}) == len(events)
    assert {e.source for e in events} == {"/homework/assignment"}
    assert all(e.data.client_id == svc.client_id and e.data.practice_id == svc.practice for e in events)
    created, revised, recorded, skipped, paused, resumed, cancelled = (e.data for e in events)
    assert isinstance(created, AssignmentCreated)
    assert (created.assignment_id, created.version, created.has_rationale) == (a["id"], 1, True)
    assert created.schedule.timezone == "Europe/Berlin"
    assert "instructions" not in created.model_dump()
    assert "rationale" not in created.model_dump()
    assert isinstance(revised, AssignmentRevised)
    assert (revised.version, revised.changed, revised.title) == (2, ["title"], "Mood")
    assert isinstance(recorded, CompletionRecorded)
    assert recorded.completion_id == completion["id"]
    assert recorded.occurrence_id == evening(a, 21)
    assert events[2].subject == evening(a, 21)
    assert (recorded.kind, recorded.status, recorded.percent, recorded.quality_rating) == ("mood_log", "done", 100, 6)
    assert recorded.data is not None
    assert recorded.data.model_dump()["mood"] == 7
    # This deployment runs with INCLUDE_FREE_TEXT=true: the note travels sealed with the client's key, never plain.
    assert recorded.note is None
    assert recorded.note_sealed is not None
    cipher = await svc.app.state.erasures.cipher(svc.practice, svc.client_id)
    assert unseal(recorded.note_sealed, cipher) == "ok"
    assert (recorded.opens_at.isoformat(), recorded.closes_at.isoformat()) == (
        "2026-03-21T19:00:00+00:00",
        "2026-03-21T21:00:00+00:00",
    )
    assert isinstance(skipped, OccurrenceSkipped)
    assert (skipped.skip_id, skipped.barrier) == (skip["id"], "too_hard")
    assert isinstance(paused, AssignmentPaused)
    assert paused.paused_at.isoformat() == "2026-03-22T19:30:00+00:00"
    assert isinstance(resumed, AssignmentResumed)
    assert resumed.resumed_at.isoformat() == "2026-03-23T08:00:00+00:00"
    assert isinstance(cancelled, AssignmentCancelled)
    assert [e.time.isoformat() for e in events[-3:]] == [
        "2026-03-22T19:30:00+00:00",
        "2026-03-23T08:00:00+00:00",
        "2026-03-23T08:00:00+00:00",
    ]


async def test_the_end_of_a_schedule_publishes_one_ended_event(svc: Service) -> None:
    a = await svc.create(schedule={**daily_mood_log("x")["schedule"], "count": 1})
    svc.at(2026, 3, 21, 21, 0)

    async def ended() -> bool:
        response = await svc.http.get(f"/v1/assignments/{a['id']}", headers=svc.therapist)
        return bool(response.json()["status"] == "ended")

    await wait_for(ended, timeout=10, message="ended by the sweep")
    events = await all_events(svc)
    assert [e.type for e in events] == [AssignmentCreated.event_type, AssignmentEnded.event_type]
    end = events[1]
    assert isinstance(end.data, AssignmentEnded)
    assert (end.id, end.data.reason, end.data.ended_at.isoformat()) == (
        f"ended:{a['id']}",
        "schedule_finished",
        "2026-03-21T21:00:00+00:00",
    )


async def test_events_of_one_client_share_a_key_and_so_a_partition(svc: Service) -> None:
    first = await svc.create()
    second = await svc.create(title="Second")
    await svc.action(first, "cancel")
    await svc.action(second, "end")
    events = await all_events(svc)
    assert [e.type for e in events] == [
        AssignmentCreated.event_type,
        AssignmentCreated.event_type,
        AssignmentCancelled.event_type,
        AssignmentEnded.event_type,
    ]
    assert [e.subject for e in events] == [first["id"], second["id"], first["id"], second["id"]]
