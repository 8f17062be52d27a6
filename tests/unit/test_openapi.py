"""Each service's OpenAPI says what it really answers (regressions found by the schemathesis fuzz).

One set of checks, run against the three services' apps in-process without their lifespan (so
without MongoDB or Kafka): every error answer is documented with the one shared ``ErrorBody``,
and what a route answers before any database access is documented.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from homework_assignment.app import create as create_assignment
from homework_assignment.config import AssignmentSettings
from homework_assignment.domain import OccurrenceStatus
from homework_assignment.models import OccurrencePublic
from homework_insights.app import create as create_insights
from homework_insights.config import InsightsSettings
from homework_reminder.app import create as create_reminder
from homework_reminder.config import ReminderSettings
from homework_shared.auth.mint import mint_token
from homework_shared.schedule import Occurrence
from homework_shared.settings import DEV_JWT_SECRET

UNREACHABLE = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
APPS: dict[str, Callable[[], Any]] = {
    "assignment": lambda: create_assignment(AssignmentSettings(jwt_secret=DEV_JWT_SECRET, **UNREACHABLE)),
    "reminder": lambda: create_reminder(ReminderSettings(jwt_secret=DEV_JWT_SECRET, **UNREACHABLE)),
    "insights": lambda: create_insights(InsightsSettings(jwt_secret=DEV_JWT_SECRET, **UNREACHABLE)),
}
# The error answers every /v1 route of a service documents.
ALWAYS = {
    "assignment": {"401", "422", "503"},
    "reminder": {"401", "422", "503"},
    "insights": {"401", "404", "422", "503"},
}


def app_and_openapi(service: str) -> tuple[Any, dict[str, Any]]:
    app = APPS[service]()  # nothing connects without the lifespan
    return app, app.openapi()


async def send(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the app in-process, without its lifespan (so without MongoDB or Kafka)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        return await http.request(method, path, **kwargs)


def v1_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [(m, p, op) for p, ops in doc["paths"].items() if p.startswith("/v1/") for m, op in ops.items()]
    assert found, "no /v1 route documented"
    return found


@pytest.mark.parametrize("service", list(APPS))
def test_every_route_documents_its_errors_as_json_with_the_one_shared_error_body(service: str) -> None:
    _, doc = app_and_openapi(service)
    for method, path, op in v1_operations(doc):
        responses = op["responses"]
        assert ALWAYS[service] <= set(responses), f"{method} {path}: {sorted(responses)}"
        if "requestBody" in op:
            assert "400" in responses, f"{method} {path} reads a body but does not document 400"
        for code, answer in responses.items():
            if code.startswith(("4", "5")):
                assert answer["content"] == {"application/json": {"schema": ERROR_BODY}}, f"{method} {path} {code}"
    assert set(doc["components"]["schemas"]["ErrorBody"]["properties"]) == {"error", "message", "detail"}


@pytest.mark.parametrize("service", list(APPS))
def test_every_json_success_answer_has_a_schema_not_an_empty_object(service: str) -> None:
    _, doc = app_and_openapi(service)
    for method, path, op in v1_operations(doc):
        for code, answer in op["responses"].items():
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            if code.startswith("2") and schema is not None:
                assert schema != {}, f"{method} {path} {code} documents no schema"


@pytest.mark.parametrize(
    ("path", "method", "code", "model"),
    [
        ("/v1/clients/{client_id}/figures", "get", "200", "ClientFigures"),
        ("/v1/clients/{client_id}/summaries", "post", "201", "SummaryPublic"),
        ("/v1/clients/{client_id}/summaries", "get", "200", "SummaryPage"),
        ("/v1/summaries/{summary_id}", "get", "200", "SummaryPublic"),
    ],
)
def test_insights_figures_and_summaries_document_their_typed_models(
    path: str, method: str, code: str, model: str
) -> None:
    _, doc = app_and_openapi("insights")
    schema = doc["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{model}"}
    assert doc["components"]["schemas"][model]["properties"]


@pytest.mark.parametrize(
    ("service", "method", "path", "template", "role", "status"),
    [
        ("insights", "get", "/v1/clients/c1/figures", "/v1/clients/{client_id}/figures", None, 401),
        ("insights", "get", "/v1/summaries/s1", "/v1/summaries/{summary_id}", "client", 403),
        ("insights", "get", "/v1/summaries/s1/html", "/v1/summaries/{summary_id}/html", "client", 403),
        ("insights", "get", "/v1/summaries/s1/html", "/v1/summaries/{summary_id}/html", None, 401),
        ("insights", "put", "/v1/clients/c1/thresholds", "/v1/clients/{client_id}/thresholds", "client", 403),
        ("reminder", "get", "/v1/me/reminders", "/v1/me/reminders", None, 401),
        ("reminder", "get", "/v1/me/reminders", "/v1/me/reminders", "therapist", 403),
        ("reminder", "get", "/v1/practices/p1/webhook", "/v1/practices/{practice_id}/webhook", "client", 403),
        ("reminder", "get", "/v1/practices/p2/webhook", "/v1/practices/{practice_id}/webhook", "therapist", 404),
        ("reminder", "delete", "/v1/practices/p2/webhook", "/v1/practices/{practice_id}/webhook", "admin", 404),
        # only an admin sets or deletes the webhook
        ("reminder", "delete", "/v1/practices/p1/webhook", "/v1/practices/{practice_id}/webhook", "therapist", 403),
        ("reminder", "put", "/v1/practices/p1/webhook", "/v1/practices/{practice_id}/webhook", "therapist", 403),
        ("reminder", "get", "/v1/clients/c1/preferences", "/v1/clients/{client_id}/preferences", None, 401),
        ("assignment", "get", "/v1/assignments/a1", "/v1/assignments/{assignment_id}", None, 401),
        ("assignment", "get", "/v1/clients/c1/assignments", "/v1/clients/{client_id}/assignments", "client", 403),
    ],
)
async def test_answers_given_before_any_database_access_are_documented(
    service: str, method: str, path: str, template: str, role: str | None, status: int
) -> None:
    app, doc = app_and_openapi(service)
    headers = {"Authorization": f"Bearer {mint_token(sub='u1', role=role, practice_id='p1')}"} if role else {}
    body = {"json": {"rules": []}} if (service, method) == ("insights", "put") else {}
    response = await send(app, method.upper(), path, headers=headers, **body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) <= {"error", "message", "detail"}
    assert str(status) in doc["paths"][template][method]["responses"]


@pytest.mark.parametrize(
    ("service", "path", "role"),
    [("assignment", "/v1/assignments", "therapist"), ("reminder", "/v1/practices/p1/webhook", "admin")],
)
async def test_a_body_that_is_not_utf8_json_answers_a_documented_400(service: str, path: str, role: str) -> None:
    app, doc = app_and_openapi(service)
    method = "post" if service == "assignment" else "put"
    token = mint_token(sub="u1", role=role, practice_id="p1")
    response = await send(
        app,
        method.upper(),
        path,
        content=b"\x0fKA\xa3",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"  # refused before parsing (bounded_input)
    template = path.replace("p1", "{practice_id}")
    assert "400" in doc["paths"][template][method]["responses"]


async def test_an_invalid_body_answers_the_documented_error_shape() -> None:
    app, doc = app_and_openapi("reminder")
    token = mint_token(sub="a1", role="admin", practice_id="p1")
    response = await send(app, "PUT", "/v1/practices/p1/webhook", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_failed"
    documented = doc["paths"]["/v1/practices/{practice_id}/webhook"]["put"]["responses"]["422"]
    assert documented["content"]["application/json"]["schema"] == ERROR_BODY


def test_assignment_local_wall_times_are_described_without_an_offset_as_they_are_sent() -> None:
    _, doc = app_and_openapi("assignment")
    local = [n for n in nodes(doc) if n.get("x-local-time")]
    assert len(local) >= 6  # schedules' starts, ends and due times; occurrences' local starts
    assert all("format" not in n for n in local), "a naive date-time is not an RFC 3339 date-time"
    occ = Occurrence("asg-1", datetime(2026, 3, 29, 20, 0), datetime(2026, 3, 29, 18, tzinfo=UTC), datetime.now(UTC))
    sent = OccurrencePublic.of(occ, OccurrenceStatus.OPEN, None).model_dump(mode="json")["local_start"]
    pattern = doc["components"]["schemas"]["OccurrencePublic"]["properties"]["local_start"]["pattern"]
    assert re.fullmatch(pattern, sent)


def nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(n for v in node.values() for n in nodes(v))]
    if isinstance(node, list):
        return [n for v in node for n in nodes(v)]
    return []
