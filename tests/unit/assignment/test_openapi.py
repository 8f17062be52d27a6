"""The assignment service's OpenAPI says what it really answers (regressions found by the schemathesis fuzz)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx

from homework_assignment.app import create
from homework_assignment.config import Settings
from homework_assignment.domain import OccurrenceStatus
from homework_assignment.models import OccurrencePublic
from homework_shared.auth.mint import mint_token
from homework_shared.schedule import Occurrence
from homework_shared.settings import DEV_JWT_SECRET

UNREACHABLE = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}


def app_and_openapi() -> tuple[Any, dict[str, Any]]:
    app = create(Settings(jwt_secret=DEV_JWT_SECRET, **UNREACHABLE))  # nothing connects without the lifespan
    return app, app.openapi()


async def send(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the app in-process, without its lifespan (so without MongoDB or Kafka)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        return await http.request(method, path, **kwargs)


def nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(n for v in node.values() for n in nodes(v))]
    if isinstance(node, list):
        return [n for v in node for n in nodes(v)]
    return []


def test_local_wall_times_are_described_without_an_offset_as_they_are_sent() -> None:
    _, doc = app_and_openapi()
    local = [n for n in nodes(doc) if n.get("x-local-time")]
    assert len(local) >= 6  # schedules' starts, ends and due times; occurrences' local starts
    assert all("format" not in n for n in local), "a naive date-time is not an RFC 3339 date-time"
    occ = Occurrence("asg-1", datetime(2026, 3, 29, 20, 0), datetime(2026, 3, 29, 18, tzinfo=UTC), datetime.now(UTC))
    sent = OccurrencePublic.of(occ, OccurrenceStatus.OPEN, None).model_dump(mode="json")["local_start"]
    pattern = doc["components"]["schemas"]["OccurrencePublic"]["properties"]["local_start"]["pattern"]
    assert re.fullmatch(pattern, sent)


def test_every_route_documents_the_error_answers_it_can_give() -> None:
    _, doc = app_and_openapi()
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in operations.items():
            codes = set(op["responses"])
            assert {"401", "422", "503"} <= codes, f"{method} {path}: {sorted(codes)}"
            if "requestBody" in op:
                assert "400" in codes, f"{method} {path} reads a body but does not document 400"


async def test_a_body_that_is_not_utf8_json_answers_a_documented_400() -> None:
    app, doc = app_and_openapi()
    token = mint_token(sub="t1", role="therapist", practice_id="p1")
    response = await send(
        app,
        "POST",
        "/v1/assignments",
        content=b"\x0fKA\xa3",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"  # refused before parsing (bounded_input)
    assert "400" in doc["paths"]["/v1/assignments"]["post"]["responses"]
