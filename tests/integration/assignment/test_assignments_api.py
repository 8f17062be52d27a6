"""Every endpoint of the assignment service against the real MongoDB server and Kafka broker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from homework_assignment.usecases import AssignmentHandlers
from tests.conftest import wait_for
from tests.integration.assignment.conftest import Service, bearer, daily_mood_log, evening


async def get(svc: Service, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    response = await svc.http.get(path, headers=headers or svc.therapist, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------- creating and reading


async def test_a_therapist_assigns_homework_and_both_sides_read_it(svc: Service) -> None:
    a = await svc.create()
    assert a["id"].startswith("asg-")
    assert (a["status"], a["version"], a["kind"], a["client_id"]) == ("active", 1, "mood_log", svc.client_id)
    assert a["practice_id"] == svc.practice
    assert a["created_at"] == "2026-03-20T08:00:00Z"
    assert a["ends_at"] == "2026-04-03T20:00:00Z"  # 3 April 20:00 CEST + 2 hours
    assert a["rationale"].startswith("Seeing patterns")
    for headers in (svc.therapist, svc.client):
        assert await get(svc, f"/v1/assignments/{a['id']}", headers) == a


async def test_a_one_off_without_an_opening_opens_now_in_the_clients_zone(svc: Service) -> None:
    svc.at(2026, 3, 20, 8, 0, 42)
    schedule = {"type": "once", "timezone": "America/New_York", "due_at": "2026-03-20T21:00:00"}
    a = await svc.create(kind="reading", title="Read chapter 3", schedule=schedule, target=None)
    assert a["schedule"]["opens_at"] == "2026-03-20T04:00:00"
    occurrences = await get(svc, f"/v1/assignments/{a['id']}/occurrences")
    [only] = occurrences["items"]
    assert only["occurrence_id"] == f"{a['id']}@2026-03-20T04:00"
    assert only["status"] == "open"


async def test_an_exposure_keeps_its_hierarchy_and_resources(svc: Service) -> None:
    steps = [
        {"number": 1, "description": "Stand near the lift", "expected_suds": 30},
        {"number": 2, "description": "Ride one floor", "expected_suds": 60},
    ]
    resources = [{"title": "Why exposure works", "url": "https://example.org/exposure"}]
    a = await svc.create(kind="exposure", title="Lift exposure", steps=steps, resources=resources)
    assert a["steps"] == steps
    assert a["resources"] == resources


async def test_a_clients_assignments_come_newest_first_page_by_page_and_by_status(svc: Service) -> None:
    made = [await svc.create(title=f"Homework {n}") for n in range(3)]
    await svc.action(made[0], "pause")
    path = f"/v1/clients/{svc.client_id}/assignments"
    first = await get(svc, path, limit=2)
    assert [a["id"] for a in first["items"]] == [made[2]["id"], made[1]["id"]]
    second = await get(svc, path, limit=2, cursor=first["next_cursor"])
    assert [a["id"] for a in second["items"]] == [made[0]["id"]]
    assert second["next_cursor"] is None
    paused = await get(svc, path, status="paused")
    assert [a["id"] for a in paused["items"]] == [made[0]["id"]]
    mine = await get(svc, "/v1/me/assignments", svc.client, status="active")
    assert [a["id"] for a in mine["items"]] == [made[2]["id"], made[1]["id"]]


async def test_an_unknown_client_has_no_assignments(svc: Service) -> None:
    assert await get(svc, "/v1/clients/nobody-here/assignments") == {"items": [], "next_cursor": None}


# ---------------------------------------------------------------- revisions


async def test_revisions_are_paged_oldest_first_and_the_limit_is_bounded(svc: Service) -> None:
    a = await svc.create()
    for n in range(2, 6):
        revised = await svc.http.post(
            f"/v1/assignments/{a['id']}/revisions", json={"title": f"Version {n}"}, headers=svc.therapist
        )
        assert revised.status_code == 201, revised.text
    path = f"/v1/assignments/{a['id']}/revisions"
    first = await get(svc, path, limit=2)
    second = await get(svc, path, svc.client, limit=2, cursor=first["next_cursor"])
    third = await get(svc, path, limit=2, cursor=second["next_cursor"])
    pages = [[r["version"] for r in page["items"]] for page in (first, second, third)]
    assert pages == [[1, 2], [3, 4], [5]]
    assert third["next_cursor"] is None
    assert [r["version"] for r in (await get(svc, path))["items"]] == [1, 2, 3, 4, 5]
    too_many = await svc.http.get(path, params={"limit": 201}, headers=svc.therapist)
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["field"] == "query.limit"
    for bad in ("not-ours", "OTk5OTk5OTk5OTk5", "YWJj"):  # not base64 of a key; 12 digits; "abc"
        refused = await svc.http.get(path, params={"cursor": bad}, headers=svc.therapist)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["detail"][0]["field"] == "query.cursor"


async def test_a_revision_is_a_new_version_with_its_history_kept(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 23, 19, 30)
    morning = {**daily_mood_log(svc.client_id)["schedule"], "starts_at": "2026-03-21T08:00:00", "window_minutes": 60}
    response = await svc.http.post(
        f"/v1/assignments/{a['id']}/revisions",
        json={"title": "Morning mood rating", "schedule": morning, "rationale": None},
        headers=svc.therapist,
    )
    assert response.status_code == 201, response.text
    revision = response.json()
    assert (revision["version"], revision["changed"]) == (2, ["title", "rationale", "schedule"])
    assert revision["revised_at"] == "2026-03-23T19:30:00Z"
    history = (await get(svc, f"/v1/assignments/{a['id']}/revisions", svc.client))["items"]
    assert [(r["version"], r["content"]["title"]) for r in history] == [
        (1, "Evening mood rating"),
        (2, "Morning mood rating"),
    ]
    current = await get(svc, f"/v1/assignments/{a['id']}")
    assert (current["version"], current["title"], current["rationale"]) == (2, "Morning mood rating", None)
    # The evening of the 23rd opened before the revision and stays; from the 24th, mornings.
    window = await get(
        svc, f"/v1/assignments/{a['id']}/occurrences", **{"from": "2026-03-23T00:00:00Z", "to": "2026-03-25T00:00:00Z"}
    )
    assert [o["occurrence_id"].split("@")[1] for o in window["items"]] == ["2026-03-23T20:00", "2026-03-24T08:00"]


async def test_a_revision_that_changes_nothing_is_refused(svc: Service) -> None:
    a = await svc.create()
    response = await svc.http.post(
        f"/v1/assignments/{a['id']}/revisions", json={"title": "Evening mood rating"}, headers=svc.therapist
    )
    assert response.status_code == 422
    assert response.json()["error"] == "revision_changes_nothing"


# ---------------------------------------------------------------- status


async def test_pause_resume_cancel_and_their_conflicts_name_the_status(svc: Service) -> None:
    a = await svc.create()
    paused = await svc.action(a, "pause")
    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["paused_at"]) == ("paused", "2026-03-20T08:00:00Z")
    again = await svc.action(a, "pause")
    assert again.status_code == 409
    assert again.json() == {
        "error": "invalid_status_transition",
        "message": "cannot pause an assignment that is paused",
    }
    assert (await svc.action(a, "resume")).json()["status"] == "active"
    cancelled = await svc.action(a, "cancel")
    assert (cancelled.json()["status"], cancelled.json()["closed_at"]) == ("cancelled", "2026-03-20T08:00:00Z")
    for action in ("pause", "resume", "cancel", "end"):
        refused = await svc.action(a, action)
        assert refused.status_code == 409
        assert "cancelled" in refused.json()["message"]
    revise = await svc.http.post(f"/v1/assignments/{a['id']}/revisions", json={"title": "x"}, headers=svc.therapist)
    assert revise.status_code == 409
    assert revise.json()["error"] == "assignment_not_active"


async def test_a_therapist_ends_an_assignment(svc: Service) -> None:
    a = await svc.create()
    ended = (await svc.action(a, "end")).json()
    assert (ended["status"], ended["end_reason"]) == ("ended", "ended_by_therapist")


async def test_an_assignment_whose_last_occurrence_closed_is_ended_by_the_sweep(svc: Service) -> None:
    a = await svc.create(schedule={**daily_mood_log("x")["schedule"], "count": 2})
    svc.at(2026, 3, 22, 20, 59)
    assert (await get(svc, f"/v1/assignments/{a['id']}"))["status"] == "active"
    svc.at(2026, 3, 22, 21, 0)

    async def ended() -> Any:
        found = await get(svc, f"/v1/assignments/{a['id']}")
        return found if found["status"] == "ended" else None

    found = await wait_for(ended, timeout=10, message="the sweep ended the assignment")
    assert (found["end_reason"], found["closed_at"]) == ("schedule_finished", "2026-03-22T21:00:00Z")
    audit = await get(svc, f"/v1/assignments/{a['id']}/audit")
    assert audit["items"][-1]["actor"] == {"sub": "system:schedule", "role": "system"}
    handlers: AssignmentHandlers = svc.app.state.handlers
    assert await handlers.end_finished_assignments() == 0  # never twice


# ---------------------------------------------------------------- occurrences, completions, skips


async def test_occurrences_show_where_each_stands(svc: Service) -> None:
    a = await svc.create(allow_late_completion=False)
    svc.at(2026, 3, 21, 19, 30)
    assert (await svc.complete(a, evening(a, 21), quality_rating=8)).status_code == 201
    svc.at(2026, 3, 22, 19, 30)
    assert (await svc.skip(a, evening(a, 22), barrier="too_hard")).status_code == 201
    svc.at(2026, 3, 24, 19, 30)
    await svc.action(a, "pause")
    svc.at(2026, 3, 25, 12, 0)
    await svc.action(a, "resume")
    svc.at(2026, 3, 26, 19, 30)
    found = await get(
        svc, f"/v1/assignments/{a['id']}/occurrences", **{"from": "2026-03-21T00:00:00Z", "to": "2026-03-28T00:00:00Z"}
    )
    statuses = {o["occurrence_id"].split("@")[1][:10]: o["status"] for o in found["items"]}
    assert statuses == {
        "2026-03-21": "done",
        "2026-03-22": "skipped",
        "2026-03-23": "missed",
        "2026-03-24": "void",
        "2026-03-25": "missed",
        "2026-03-26": "open",
        "2026-03-27": "upcoming",
    }
    first = found["items"][0]
    assert first["resolution"]["quality_rating"] == 8
    assert (first["opens_at"], first["closes_at"], first["local_start"]) == (
        "2026-03-21T19:00:00Z",
        "2026-03-21T21:00:00Z",
        "2026-03-21T20:00:00",
    )
    assert found["timezone"] == "Europe/Berlin"


async def test_a_completion_records_its_data_and_the_client_sees_it_in_history(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 45)
    done = await svc.complete(
        a, evening(a, 21), data={"mood": 7, "trigger": "a walk"}, quality_rating=9, note="Felt lighter"
    )
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["type"] == "completion"
    assert (body["status"], body["percent"], body["late"], body["completed_at"]) == (
        "done",
        100,
        False,
        "2026-03-21T19:45:00Z",
    )
    assert body["data"] == {"kind": "mood_log", "mood": 7, "trigger": "a walk"}
    svc.at(2026, 3, 22, 19, 45)
    partial = await svc.complete(a, evening(a, 22), status="partial", percent=40)
    assert partial.json()["percent"] == 40
    svc.at(2026, 3, 23, 19, 45)
    await svc.skip(a, evening(a, 23), barrier="other", barrier_text="Visitors all evening")
    history = await get(svc, "/v1/me/history", svc.client, limit=2)
    assert [(h["type"], h["occurrence_id"][-16:]) for h in history["items"]] == [
        ("skip", "2026-03-23T20:00"),
        ("completion", "2026-03-22T20:00"),
    ]
    assert history["items"][0]["barrier_text"] == "Visitors all evening"
    rest = await get(svc, "/v1/me/history", svc.client, cursor=history["next_cursor"])
    assert [h["note"] for h in rest["items"]] == ["Felt lighter"]
    assert rest["next_cursor"] is None
    by_assignment = await get(svc, "/v1/me/history", svc.client, assignment_id="asg-other")
    assert by_assignment["items"] == []
    assert (await get(svc, f"/v1/assignments/{a['id']}"))["resolved_count"] == 3


async def test_each_refusal_names_its_problem(svc: Service) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 18, 59)
    cases = [
        (evening(a, 21), "occurrence_not_open", 409),
        (f"{a['id']}@2026-03-21T19:00", "occurrence_not_found", 404),
        (f"{a['id']}@yesterday", "occurrence_not_found", 404),
        ("asg-other@2026-03-21T20:00", "occurrence_not_found", 404),
    ]
    for occurrence_id, code, status in cases:
        response = await svc.complete(a, occurrence_id)
        assert (response.status_code, response.json()["error"]) == (status, code), occurrence_id
    svc.at(2026, 3, 21, 19, 30)
    assert (await svc.complete(a, evening(a, 21))).status_code == 201
    for attempt in (svc.complete(a, evening(a, 21)), svc.skip(a, evening(a, 21))):
        response = await attempt
        assert (response.status_code, response.json()["error"]) == (409, "occurrence_already_resolved")
    svc.at(2026, 3, 22, 21, 0)
    closed = await svc.complete(a, evening(a, 22))
    assert (closed.status_code, closed.json()["error"]) == (409, "occurrence_closed")
    svc.at(2026, 3, 23, 19, 10)
    await svc.action(a, "pause")
    paused = await svc.complete(a, evening(a, 23))
    assert (paused.status_code, paused.json()["error"]) == (409, "assignment_not_active")
    assert "paused" in paused.json()["message"]
    await svc.action(a, "resume")
    void = await svc.skip(a, evening(a, 23))
    assert (void.status_code, void.json()["error"]) == (409, "occurrence_void")
    svc.at(2026, 3, 24, 21, 30)
    resolved_and_closed = await svc.complete(a, evening(a, 21))
    assert resolved_and_closed.json()["error"] == "occurrence_already_resolved"


async def test_a_late_completion_where_allowed_is_marked_late(svc: Service) -> None:
    a = await svc.create(allow_late_completion=True)
    svc.at(2026, 3, 23, 9, 0)
    response = await svc.complete(a, evening(a, 21), completed_at="2026-03-21T19:50:00Z")
    assert response.status_code == 201, response.text
    assert (response.json()["late"], response.json()["completed_at"]) == (True, "2026-03-21T19:50:00Z")


async def test_an_exposure_completion_names_a_step_of_the_hierarchy(svc: Service) -> None:
    steps = [{"number": 1, "description": "Stand near the lift", "expected_suds": 30}]
    a = await svc.create(kind="exposure", title="Lift", steps=steps)
    svc.at(2026, 3, 21, 19, 30)
    data = {"step": 2, "suds_before": 40, "suds_peak": 70, "suds_after": 30, "duration_minutes": 20}
    wrong = await svc.complete(a, evening(a, 21), data=data)
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == [
        {"field": "body.data.step", "message": "step 2 is not in the hierarchy (steps 1-1)"}
    ]
    right = await svc.complete(a, evening(a, 21), data={**data, "step": 1})
    assert right.json()["data"]["step"] == 1


# ---------------------------------------------------------------- audit and operations


async def test_every_change_is_in_the_audit_log_with_who_and_when(svc: Service) -> None:
    a = await svc.create()
    await svc.http.post(f"/v1/assignments/{a['id']}/revisions", json={"title": "New"}, headers=svc.therapist)
    svc.at(2026, 3, 21, 19, 30)
    await svc.complete(a, evening(a, 21))
    await svc.action(a, "pause")
    audit = await get(svc, f"/v1/assignments/{a['id']}/audit", limit=3)
    rest = await get(svc, f"/v1/assignments/{a['id']}/audit", cursor=audit["next_cursor"])
    entries = audit["items"] + rest["items"]
    assert [(e["action"], e["actor"]["role"], e["before"], e["after"]) for e in entries] == [
        ("create", "therapist", None, {"version": 1, "status": "active"}),
        ("revise", "therapist", {"version": 1, "status": "active"}, {"version": 2, "status": "active"}),
        ("completion", "client", {"version": 2, "status": "active"}, {"version": 2, "status": "active"}),
        ("pause", "therapist", {"version": 2, "status": "active"}, {"version": 2, "status": "paused"}),
    ]
    assert entries[1]["changed"] == ["title"]
    assert entries[2]["occurrence_id"] == evening(a, 21)
    assert entries[2]["actor"]["sub"] == svc.client_id
    assert entries[3]["at"] == "2026-03-21T19:30:00Z"
    assert all(e["request_id"] and e["trace_id"] for e in entries)


async def test_health_readiness_metrics_and_documents(svc: Service) -> None:
    assert (await svc.http.get("/healthz")).json() == {"status": "ok"}

    async def ready() -> httpx.Response | None:
        # Each check has 2 s; with both cores busy a Kafka ping can miss that once: 503, then ready again.
        answer = await svc.http.get("/readyz")
        return answer if answer.status_code == 200 else None

    answer = await wait_for(ready, timeout=60, interval=0.5, message="/readyz 200")
    ready_body = answer.json()
    # The assignment service consumes the erasure saga's events: its consumer group is a check too.
    assert ready_body["status"] == "ready"
    assert ready_body["checks"] == {"mongodb": "ok", "kafka": "ok", "consumer:assignment": "ok"}
    assert set(ready_body["consumers"]) == {"assignment"}
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    assert (await svc.complete(a, evening(a, 21))).status_code == 201
    metrics = (await svc.http.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/v1/assignments",status="201"}' in metrics
    assert 'route="/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/completion"' in metrics
    for name in ("outbox_backlog", "outbox_oldest_unsent_age_seconds", "outbox_relay_lag_seconds_bucket"):
        assert name in metrics
    assert 'homework_resolutions_total{type="completion"}' in metrics
    assert "resolution_batch_size_bucket" in metrics
    openapi = (await svc.http.get("/openapi.json")).json()
    assert "/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/completion" in openapi["paths"]
    assert (await svc.http.get("/docs")).status_code == 200
    asyncapi = (await svc.http.get("/asyncapi.json")).json()
    assert "homework.completion.recorded.v1" in asyncapi["components"]["schemas"]


async def test_the_request_and_trace_ids_come_back_and_reach_the_event(svc: Service) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await svc.http.post(
        "/v1/assignments",
        json=daily_mood_log(svc.client_id),
        headers={**svc.therapist, "X-Request-ID": "req-42", "traceparent": traceparent},
    )
    assert response.headers["X-Request-ID"] == "req-42"
    [created] = await svc.events(1)
    assert created.traceparent is not None
    assert created.traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_therapist_of_the_practice_who_did_not_assign_it_also_sees_it(svc: Service) -> None:
    a = await svc.create()
    colleague = bearer("therapist", "colleague", svc.practice)
    assert (await get(svc, f"/v1/assignments/{a['id']}", colleague))["id"] == a["id"]
    svc.clock.advance(timedelta(minutes=1))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "0001-01-01T02:00:00Z"}, "query.from"),
        ({"to": "9999-12-31T23:00:00Z"}, "query.to"),
        ({"from": "9999-12-20T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, "query.from"),
    ],
    ids=["year 1", "year 9999", "both near the end of time"],
)
async def test_an_occurrence_range_near_the_limits_of_time_is_422_not_500(
    svc: Service, params: dict[str, str], field: str
) -> None:
    a = await svc.create()
    response = await svc.http.get(f"/v1/assignments/{a['id']}/occurrences", params=params, headers=svc.therapist)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == field
