"""Ids in paths and bodies have a maximum length and an allowed character set, in every service that takes them.

The apps are the services' real ones without their lifespan: an id is refused (422 naming the
field) before any store is reached, so nothing needs to connect.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from homework_shared.auth.jwt import Role
from homework_shared.auth.mint import mint_token
from homework_shared.ids import BodyId
from homework_shared.settings import DEV_JWT_SECRET
from tests.unit.shared.test_bounded_input_services import build

# Longer than any id (occurrence ids 260, reminder ids 300); a percent-encoded slash is a path of
# its own (404), so it is not among these.
BAD_IDS = {"too long": "a" * 301, "space": "a%20b", "dollar": "%24where", "leading dot": ".hidden", "quote": "a%22b"}


def token(role: Role, sub: str = "u1") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(sub=sub, role=role, practice_id='p1', key=DEV_JWT_SECRET)}"}


ROUTES: list[tuple[str, str, str, Role, dict[str, Any] | None, str]] = [
    ("assignment", "GET", "/v1/assignments/{id}", Role.THERAPIST, None, "path.assignment_id"),
    ("assignment", "GET", "/v1/assignments/{id}/revisions", Role.THERAPIST, None, "path.assignment_id"),
    ("assignment", "GET", "/v1/clients/{id}/assignments", Role.THERAPIST, None, "path.client_id"),
    ("assignment", "POST", "/v1/assignments/{id}/pause", Role.THERAPIST, None, "path.assignment_id"),
    (
        "assignment",
        "POST",
        "/v1/assignments/a1/occurrences/{id}/skip",
        Role.CLIENT,
        {"barrier": "forgot"},
        "path.occurrence_id",
    ),
    ("reminder", "GET", "/v1/clients/{id}/reminders", Role.THERAPIST, None, "path.client_id"),
    ("reminder", "GET", "/v1/clients/{id}/preferences", Role.THERAPIST, None, "path.client_id"),
    ("reminder", "PUT", "/v1/clients/{id}/preferences", Role.THERAPIST, {}, "path.client_id"),
    ("reminder", "POST", "/v1/reminders/{id}/snooze", Role.CLIENT, {"minutes": 5}, "path.reminder_id"),
    ("reminder", "GET", "/v1/practices/{id}/webhook", Role.THERAPIST, None, "path.practice_id"),
]


@pytest.mark.parametrize("bad", list(BAD_IDS))
@pytest.mark.parametrize(("service", "method", "path", "role", "body", "field"), ROUTES, ids=[r[2] for r in ROUTES])
async def test_a_bad_id_in_a_path_is_422_naming_the_field(
    service: str, method: str, path: str, role: Role, body: dict[str, Any] | None, field: str, bad: str
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build(service)), base_url="http://test") as http:
        response = await http.request(method, path.replace("{id}", BAD_IDS[bad]), json=body, headers=token(role))
    assert response.status_code == 422, response.text[:300]
    assert field in [d["field"] for d in response.json()["detail"]]


async def test_a_bad_client_id_in_a_body_is_422_naming_the_field() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build("assignment")), base_url="http://test") as http:
        response = await http.post("/v1/assignments", json={"client_id": "c 1"}, headers=token(Role.THERAPIST))
    assert response.status_code == 422
    assert "body.client_id" in [d["field"] for d in response.json()["detail"]]


@pytest.mark.parametrize("good", ["c1", "client-42", "auth0:5f7c8ec7", "a.b_c@practice", "x" * 200])
def test_realistic_ids_are_accepted(good: str) -> None:
    assert TypeAdapter(BodyId).validate_python(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 201, "a b", "a/b", "$gt", "-a", "é"])
def test_ids_outside_the_character_set_or_length_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(BodyId).validate_python(bad)
