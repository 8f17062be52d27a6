"""The insights service's OpenAPI documents every status it answers (regressions found by the schemathesis fuzz)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from homework_insights.app import create
from homework_insights.config import Settings
from homework_shared.auth.mint import mint_token
from homework_shared.settings import DEV_JWT_SECRET

UNREACHABLE = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def app_and_openapi() -> tuple[Any, dict[str, Any]]:
    app = create(Settings(jwt_secret=DEV_JWT_SECRET, **UNREACHABLE))  # nothing connects without the lifespan
    return app, app.openapi()


async def send(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the app in-process, without its lifespan (so without MongoDB or Kafka)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        return await http.request(method, path, **kwargs)


def test_every_route_documents_its_errors_as_json_with_the_shared_error_body() -> None:
    _, doc = app_and_openapi()
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in operations.items():
            responses = op["responses"]
            assert {"401", "404", "422", "503"} <= set(responses), f"{method} {path}: {sorted(responses)}"
            if "requestBody" in op:
                assert "400" in responses, f"{method} {path} reads a body but does not document 400"
            for code, answer in responses.items():
                if code.startswith(("4", "5")):
                    assert answer["content"] == {"application/json": {"schema": ERROR_BODY}}, f"{method} {path} {code}"


@pytest.mark.parametrize(
    ("method", "path", "template", "role", "status"),
    [
        ("get", "/v1/clients/c1/figures", "/v1/clients/{client_id}/figures", None, 401),
        ("get", "/v1/summaries/s1", "/v1/summaries/{summary_id}", "client", 403),
        ("get", "/v1/summaries/s1/html", "/v1/summaries/{summary_id}/html", "client", 403),
        ("get", "/v1/summaries/s1/html", "/v1/summaries/{summary_id}/html", None, 401),
        ("put", "/v1/clients/c1/thresholds", "/v1/clients/{client_id}/thresholds", "client", 403),
    ],
)
async def test_answers_given_before_any_database_access_are_documented(
    method: str, path: str, template: str, role: str | None, status: int
) -> None:
    app, doc = app_and_openapi()
    headers = {"Authorization": f"Bearer {mint_token(sub='u1', role=role, practice_id='p1')}"} if role else {}
    body = {"json": {"rules": []}} if method == "put" else {}
    response = await send(app, method.upper(), path, headers=headers, **body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert str(status) in doc["paths"][template][method]["responses"]
