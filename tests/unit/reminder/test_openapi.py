"""The reminder service's OpenAPI documents every status it answers (regressions found by the schemathesis fuzz)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from homework_reminder.app import create
from homework_reminder.config import ReminderSettings
from homework_shared.auth.mint import mint_token
from homework_shared.settings import DEV_JWT_SECRET

UNREACHABLE = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}


def app_and_openapi() -> tuple[Any, dict[str, Any]]:
    app = create(ReminderSettings(jwt_secret=DEV_JWT_SECRET, **UNREACHABLE))  # nothing connects without the lifespan
    return app, app.openapi()


async def send(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the app in-process, without its lifespan (so without MongoDB or Kafka)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        return await http.request(method, path, **kwargs)


def test_every_route_documents_its_errors_with_the_shared_error_body() -> None:
    _, doc = app_and_openapi()
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in operations.items():
            responses = op["responses"]
            assert {"401", "422", "503"} <= set(responses), f"{method} {path}: {sorted(responses)}"
            if "requestBody" in op:
                assert "400" in responses, f"{method} {path} reads a body but does not document 400"
            schema = responses["422"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path}: 422 is {schema}"


@pytest.mark.parametrize(
    ("method", "path", "role", "status"),
    [
        ("get", "/v1/me/reminders", None, 401),
        ("get", "/v1/me/reminders", "therapist", 403),
        ("get", "/v1/practices/p1/webhook", "client", 403),
        ("get", "/v1/practices/p2/webhook", "therapist", 404),
        ("delete", "/v1/practices/p2/webhook", "admin", 404),
        ("delete", "/v1/practices/p1/webhook", "therapist", 403),  # only an admin sets or deletes the webhook
        ("put", "/v1/practices/p1/webhook", "therapist", 403),
        ("get", "/v1/clients/c1/preferences", None, 401),
    ],
)
async def test_answers_given_before_any_database_access_are_documented(
    method: str, path: str, role: str | None, status: int
) -> None:
    app, doc = app_and_openapi()
    headers = {"Authorization": f"Bearer {mint_token(sub='u1', role=role, practice_id='p1')}"} if role else {}
    response = await send(app, method.upper(), path, headers=headers)
    assert response.status_code == status
    template = path.replace("p1", "{practice_id}").replace("p2", "{practice_id}").replace("c1", "{client_id}")
    assert str(status) in doc["paths"][template][method]["responses"]
    assert set(response.json()) <= {"error", "message", "detail"}


async def test_an_invalid_body_answers_the_documented_error_shape() -> None:
    app, doc = app_and_openapi()
    token = mint_token(sub="a1", role="admin", practice_id="p1")
    response = await send(app, "PUT", "/v1/practices/p1/webhook", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_failed"
    documented = doc["paths"]["/v1/practices/{practice_id}/webhook"]["put"]["responses"]["422"]
    assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
