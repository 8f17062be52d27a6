"""Every service refuses hostile bodies with a clear 4xx before parsing or authentication, never a 5xx.

Each service's real app (built from its settings, without its lifespan: nothing connects) gets
the same bodies on one of its write routes, with and without a valid token.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from homework_assignment import app as assignment_app
from homework_assignment.config import AssignmentSettings
from homework_insights import app as insights_app
from homework_insights.config import InsightsSettings
from homework_reminder import app as reminder_app
from homework_reminder.config import ReminderSettings
from homework_shared.auth.jwt import Role
from homework_shared.auth.mint import mint_token
from homework_shared.settings import DEV_JWT_SECRET

UNREACHABLE = {
    "kafka_bootstrap_servers": "127.0.0.1:9",
    "mongodb_uri": "mongodb://127.0.0.1:9/",
    "jwt_secret": DEV_JWT_SECRET,
    "environment": "development",
}
ROUTES = {
    "assignment": ("POST", "/v1/assignments"),
    "reminder": ("PUT", "/v1/clients/c1/preferences"),
    "insights": ("POST", "/v1/clients/c1/summaries"),
}
JSON = "application/json"
BODIES: dict[str, tuple[bytes, str, int, str]] = {
    "too large": (b'{"a": "' + b"x" * (1024 * 1024) + b'"}', JSON, 413, "payload_too_large"),
    "10000 levels": (b"[" * 10_000 + b"]" * 10_000, JSON, 400, "invalid_json"),
    "1e400": (b'{"client_id": 1e400}', JSON, 400, "invalid_json"),
    "100000 digits": (b'{"client_id": ' + b"7" * 100_000 + b"}", JSON, 400, "invalid_json"),
    "invalid utf-8": (b'{"client_id": "\xc3\x28"}', JSON, 400, "invalid_json"),
    "text/plain": (b'{"client_id": "c1"}', "text/plain", 415, "unsupported_media_type"),
    "form": (b"client_id=c1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
}


def build(service: str) -> Any:
    if service == "assignment":
        return assignment_app.create(AssignmentSettings(**UNREACHABLE))
    if service == "reminder":
        return reminder_app.create(ReminderSettings(**UNREACHABLE))
    return insights_app.create(InsightsSettings(**UNREACHABLE))


@pytest.mark.parametrize("authenticated", [False, True], ids=["no token", "therapist token"])
@pytest.mark.parametrize("case", list(BODIES))
@pytest.mark.parametrize("service", list(ROUTES))
async def test_a_hostile_body_gets_a_clear_4xx_in_every_service(service: str, case: str, authenticated: bool) -> None:
    body, content_type, status, code = BODIES[case]
    method, path = ROUTES[service]
    headers = {"Content-Type": content_type}
    if authenticated:
        token = mint_token(sub="t1", role=Role.THERAPIST, practice_id="p1", key=DEV_JWT_SECRET)
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build(service)), base_url="http://test") as http:
        response = await http.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"] == code
