"""Bad input for every field answers 422 naming the field, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.assignment.conftest import Service, daily_mood_log, evening

RECURRING = daily_mood_log("x")["schedule"]
STEP = {"number": 1, "description": "Stand near the lift", "expected_suds": 30}


def fields_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_failed", body
    return [problem["field"] for problem in body["detail"]]


CREATE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("client_id missing", {"client_id": None}, "body.client_id"),
    ("client_id with a space", {"client_id": "a b"}, "body.client_id"),
    ("kind unknown", {"kind": "journaling"}, "body.kind"),
    ("title empty", {"title": ""}, "body.title"),
    ("title blank", {"title": "   "}, "body.title"),
    ("title too long", {"title": "x" * 201}, "body.title"),
    ("instructions missing", {"instructions": None}, "body.instructions"),
    ("instructions too long", {"instructions": "x" * 10_001}, "body.instructions"),
    ("rationale too long", {"rationale": "x" * 4001}, "body.rationale"),
    ("schedule missing", {"schedule": None}, "body.schedule"),
    ("schedule type unknown", {"schedule": {**RECURRING, "type": "weekly"}}, "body.schedule"),
    ("timezone unknown", {"schedule": {**RECURRING, "timezone": "Mars/Olympus"}}, "body.schedule.recurring.timezone"),
    ("rrule not RFC 5545", {"schedule": {**RECURRING, "rrule": "EVERY=DAY"}}, "body.schedule"),
    ("rrule with COUNT", {"schedule": {**RECURRING, "rrule": "FREQ=DAILY;COUNT=3"}}, "body.schedule"),
    (
        "starts_at with offset",
        {"schedule": {**RECURRING, "starts_at": "2026-03-21T20:00:00+01:00"}},
        "body.schedule.recurring.starts_at",
    ),
    ("starts_at not a date", {"schedule": {**RECURRING, "starts_at": "soon"}}, "body.schedule.recurring.starts_at"),
    ("count and until", {"schedule": {**RECURRING, "until": "2026-04-30T00:00:00"}}, "body.schedule.recurring"),
    ("count zero", {"schedule": {**RECURRING, "count": 0}}, "body.schedule.recurring.count"),
    ("window zero", {"schedule": {**RECURRING, "window_minutes": 0}}, "body.schedule.recurring.window_minutes"),
    ("windows overlap", {"schedule": {**RECURRING, "window_minutes": 1500}}, "body.schedule"),
    ("schedule over", {"schedule": {**RECURRING, "starts_at": "2026-03-01T20:00:00", "count": 2}}, "body.schedule"),
    ("schedule field unknown", {"schedule": {**RECURRING, "every": 2}}, "body.schedule.recurring.every"),
    (
        "once due before opening",
        {
            "schedule": {
                "type": "once",
                "timezone": "UTC",
                "opens_at": "2026-03-22T10:00:00",
                "due_at": "2026-03-22T09:00:00",
            }
        },
        "body.schedule.due_at",
    ),
    ("once without due_at", {"schedule": {"type": "once", "timezone": "UTC"}}, "body.schedule.once.due_at"),
    (
        "once due before now",
        {"schedule": {"type": "once", "timezone": "UTC", "due_at": "2026-03-20T07:00:00"}},
        "body.schedule.due_at",
    ),
    ("target times zero", {"target": {"times": 0, "per_days": 7}}, "body.target.times"),
    ("target per_days zero", {"target": {"times": 1, "per_days": 0}}, "body.target.per_days"),
    ("target too dense", {"target": {"times": 200, "per_days": 1}}, "body.target"),
    ("steps on a mood log", {"steps": [STEP]}, "body.steps"),
    ("exposure without steps", {"kind": "exposure"}, "body.steps"),
    ("steps not from one", {"kind": "exposure", "steps": [{**STEP, "number": 2}]}, "body.steps"),
    (
        "step suds over 100",
        {"kind": "exposure", "steps": [{**STEP, "expected_suds": 101}]},
        "body.steps.0.expected_suds",
    ),
    (
        "step without description",
        {"kind": "exposure", "steps": [{**STEP, "description": ""}]},
        "body.steps.0.description",
    ),
    ("resource not a link", {"resources": [{"title": "x", "url": "not a url"}]}, "body.resources.0.url"),
    ("resource not on the web", {"resources": [{"title": "x", "url": "javascript:alert(1)"}]}, "body.resources.0.url"),
    ("resource without title", {"resources": [{"title": "", "url": "https://example.org"}]}, "body.resources.0.title"),
    ("reminder channel unknown", {"reminders": [{"channels": ["pigeon"]}]}, "body.reminders.0.channels.0"),
    ("reminder without channel", {"reminders": [{"channels": []}]}, "body.reminders.0.channels"),
    ("reminder a month off", {"reminders": [{"offset_minutes": 50_000}]}, "body.reminders.0.offset_minutes"),
    ("reminder anchor unknown", {"reminders": [{"anchor": "noon"}]}, "body.reminders.0.anchor"),
    ("too many reminders", {"reminders": [{}] * 11}, "body.reminders"),
    ("allow_late_completion not a bool", {"allow_late_completion": "sometimes"}, "body.allow_late_completion"),
    ("unknown field", {"colour": "blue"}, "body.colour"),
]


@pytest.mark.parametrize(("case", "change", "field"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
async def test_a_bad_assignment_field_is_named(svc: Service, case: str, change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**daily_mood_log(svc.client_id), **change}.items() if v is not None}
    response = await svc.http.post("/v1/assignments", json=body, headers=svc.therapist)
    assert field in fields_of(response), case
    listed = await svc.http.get(f"/v1/clients/{svc.client_id}/assignments", headers=svc.therapist)
    assert listed.json()["items"] == []


async def test_a_body_that_is_not_json_is_refused(svc: Service) -> None:
    response = await svc.http.post(
        "/v1/assignments", content=b"{not json", headers={**svc.therapist, "Content-Type": "application/json"}
    )
    assert fields_of(response) == ["body.1"]


REVISE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("title null", {"title": None}, "body.title"),
    ("instructions empty", {"instructions": ""}, "body.instructions"),
    ("schedule null", {"schedule": None}, "body.schedule"),
    ("schedule invalid", {"schedule": {**RECURRING, "rrule": "FREQ=SOMETIMES"}}, "body.schedule"),
    (
        "schedule without future",
        {"schedule": {**RECURRING, "starts_at": "2026-03-10T20:00:00", "count": 1}},
        "body.schedule",
    ),
    ("steps on a mood log", {"steps": [STEP]}, "body.steps"),
    ("target invalid", {"target": {"times": 0, "per_days": 1}}, "body.target.times"),
    ("kind cannot be revised", {"kind": "reading"}, "body.kind"),
    ("late completion cannot be revised", {"allow_late_completion": True}, "body.allow_late_completion"),
]


@pytest.mark.parametrize(("case", "change", "field"), REVISE_CASES, ids=[c[0] for c in REVISE_CASES])
async def test_a_bad_revision_field_is_named(svc: Service, case: str, change: dict[str, Any], field: str) -> None:
    a = await svc.create()
    response = await svc.http.post(f"/v1/assignments/{a['id']}/revisions", json=change, headers=svc.therapist)
    assert field in fields_of(response), case
    history = await svc.http.get(f"/v1/assignments/{a['id']}/revisions", headers=svc.therapist)
    assert len(history.json()["items"]) == 1


COMPLETION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("status unknown", {"status": "mostly"}, "body.status"),
    ("percent zero", {"status": "partial", "percent": 0}, "body.percent"),
    ("percent over 100", {"status": "partial", "percent": 101}, "body.percent"),
    ("partial without percent", {"status": "partial"}, "body.percent"),
    ("partial at 100", {"status": "partial", "percent": 100}, "body.percent"),
    ("done at 50", {"percent": 50}, "body.percent"),
    ("quality over 10", {"quality_rating": 11}, "body.quality_rating"),
    ("quality negative", {"quality_rating": -1}, "body.quality_rating"),
    ("data missing for a mood log", {"data": None}, "body.data"),
    ("data not an object", {"data": [1, 2]}, "body.data"),
    ("data of another kind", {"data": {"kind": "reading", "pages": 3}}, "body.data.kind"),
    ("mood over 10", {"data": {"mood": 11}}, "body.data.mood"),
    ("mood missing", {"data": {"trigger": "x"}}, "body.data.mood"),
    ("data field unknown", {"data": {"mood": 5, "colour": "blue"}}, "body.data.colour"),
    ("felt_at without offset", {"data": {"mood": 5, "felt_at": "2026-03-21T19:00:00"}}, "body.data.felt_at"),
    ("note empty", {"note": ""}, "body.note"),
    ("note too long", {"note": "x" * 4001}, "body.note"),
    ("completed_at without offset", {"completed_at": "2026-03-21T19:00:00"}, "body.completed_at"),
    ("completed_at in the future", {"completed_at": "2026-03-21T20:00:00Z"}, "body.completed_at"),
    ("completed_at before opening", {"completed_at": "2026-03-21T18:00:00Z"}, "body.completed_at"),
    ("unknown field", {"mood": 5}, "body.mood"),
]


@pytest.mark.parametrize(("case", "change", "field"), COMPLETION_CASES, ids=[c[0] for c in COMPLETION_CASES])
async def test_a_bad_completion_field_is_named(svc: Service, case: str, change: dict[str, Any], field: str) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    body = {"data": {"mood": 6}, **change}
    response = await svc.http.post(
        f"/v1/assignments/{a['id']}/occurrences/{evening(a, 21)}/completion", json=body, headers=svc.client
    )
    assert field in fields_of(response), case
    assert (await svc.complete(a, evening(a, 21))).status_code == 201, "nothing was recorded by the bad request"


SKIP_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("barrier missing", {}, "body.barrier"),
    ("barrier unknown", {"barrier": "tired"}, "body.barrier"),
    ("other without text", {"barrier": "other"}, "body.barrier_text"),
    ("text too long", {"barrier": "other", "barrier_text": "x" * 4001}, "body.barrier_text"),
    ("unknown field", {"barrier": "forgot", "why": "x"}, "body.why"),
]


@pytest.mark.parametrize(("case", "body", "field"), SKIP_CASES, ids=[c[0] for c in SKIP_CASES])
async def test_a_bad_skip_field_is_named(svc: Service, case: str, body: dict[str, Any], field: str) -> None:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)
    response = await svc.http.post(
        f"/v1/assignments/{a['id']}/occurrences/{evening(a, 21)}/skip", json=body, headers=svc.client
    )
    assert field in fields_of(response), case


QUERY_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("status unknown", "clients", {"status": "lost"}, "query.status"),
    ("limit zero", "clients", {"limit": 0}, "query.limit"),
    ("limit too big", "clients", {"limit": 201}, "query.limit"),
    ("cursor not ours", "clients", {"cursor": "%%%"}, "query.cursor"),
    ("from without offset", "occurrences", {"from": "2026-03-21T00:00:00"}, "query.from"),
    ("to not a date", "occurrences", {"to": "tomorrow"}, "query.to"),
    ("to before from", "occurrences", {"from": "2026-03-22T00:00:00Z", "to": "2026-03-21T00:00:00Z"}, "query.to"),
    ("range over a year", "occurrences", {"from": "2026-01-01T00:00:00Z", "to": "2027-03-01T00:00:00Z"}, "query.to"),
    ("history limit zero", "history", {"limit": 0}, "query.limit"),
    ("audit cursor not ours", "audit", {"cursor": "%%%"}, "query.cursor"),
]


@pytest.mark.parametrize(("case", "route", "params", "field"), QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
async def test_a_bad_query_parameter_is_named(
    svc: Service, case: str, route: str, params: dict[str, Any], field: str
) -> None:
    a = await svc.create()
    path, headers = {
        "clients": (f"/v1/clients/{svc.client_id}/assignments", svc.therapist),
        "occurrences": (f"/v1/assignments/{a['id']}/occurrences", svc.therapist),
        "history": ("/v1/me/history", svc.client),
        "audit": (f"/v1/assignments/{a['id']}/audit", svc.therapist),
    }[route]
    response = await svc.http.get(path, params=params, headers=headers)
    assert field in fields_of(response), case


async def test_an_idempotency_key_too_long_is_named(svc: Service) -> None:
    response = await svc.http.post(
        "/v1/assignments", json=daily_mood_log(svc.client_id), headers={**svc.therapist, "Idempotency-Key": "k" * 256}
    )
    assert fields_of(response) == ["header.Idempotency-Key"]
