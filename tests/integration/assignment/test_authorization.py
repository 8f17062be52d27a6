"""The authorization matrix: every route refuses a missing or bad token (401), the wrong role (403), and
answers 404, never 403, for another practice's or another client's assignment, and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from homework_shared.auth.mint import mint_token
from tests.conftest import unique
from tests.integration.assignment.conftest import Service, bearer, daily_mood_log, evening


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # {a} is the assignment id, {o} an open occurrence, {c} the client id
    roles: frozenset[str]
    about_an_assignment: bool = True
    body: dict[str, Any] | None = None

    def request(self, a: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
        path = self.path.format(a=a["id"], o=evening(a, 21), c=a["client_id"])
        return self.method, path, self.body


THERAPISTS = frozenset({"therapist", "admin"})
ANYONE = frozenset({"therapist", "admin", "client"})
CLIENT = frozenset({"client"})

ROUTES = [
    Route("create", "POST", "/v1/assignments", THERAPISTS, False, daily_mood_log("{c}")),
    Route("read", "GET", "/v1/assignments/{a}", ANYONE),
    Route("list for a client", "GET", "/v1/clients/{c}/assignments", THERAPISTS, False),
    Route("revise", "POST", "/v1/assignments/{a}/revisions", THERAPISTS, body={"title": "Revised"}),
    Route("revisions", "GET", "/v1/assignments/{a}/revisions", ANYONE),
    Route("pause", "POST", "/v1/assignments/{a}/pause", THERAPISTS),
    Route("resume", "POST", "/v1/assignments/{a}/resume", THERAPISTS),
    Route("cancel", "POST", "/v1/assignments/{a}/cancel", THERAPISTS),
    Route("end", "POST", "/v1/assignments/{a}/end", THERAPISTS),
    Route("audit", "GET", "/v1/assignments/{a}/audit", THERAPISTS),
    Route("occurrences", "GET", "/v1/assignments/{a}/occurrences", ANYONE),
    Route("complete", "POST", "/v1/assignments/{a}/occurrences/{o}/completion", CLIENT, body={"data": {"mood": 5}}),
    Route("skip", "POST", "/v1/assignments/{a}/occurrences/{o}/skip", CLIENT, body={"barrier": "forgot"}),
    Route("my assignments", "GET", "/v1/me/assignments", CLIENT, False),
    Route("my history", "GET", "/v1/me/history", CLIENT, False),
]
IDS = [r.name for r in ROUTES]


@pytest.fixture
async def assignment(svc: Service) -> dict[str, Any]:
    a = await svc.create()
    svc.at(2026, 3, 21, 19, 30)  # the 21 March occurrence is open
    return a


async def call(svc: Service, route: Route, a: dict[str, Any], headers: dict[str, str]) -> Any:
    method, path, body = route.request(a)
    if body is not None and route.name == "create":
        body = {**body, "client_id": a["client_id"]}
    return await svc.http.request(method, path, json=body, headers=headers)


async def unchanged(svc: Service, before: dict[str, Any]) -> None:
    now = (await svc.http.get(f"/v1/assignments/{before['id']}", headers=svc.therapist)).json()
    assert (now["status"], now["version"], now["resolved_count"]) == (
        before["status"],
        before["version"],
        before["resolved_count"],
    )


def bad_tokens(practice: str) -> dict[str, dict[str, str]]:
    claims = {"sub": "t1", "role": "therapist", "practice_id": practice}
    return {
        "no token": {},
        "not a JWT": {"Authorization": "Bearer not-a-token"},
        "not bearer": {"Authorization": f"Basic {mint_token(**claims)}"},
        "wrong signature": {"Authorization": f"Bearer {mint_token(**claims, key='another-secret-of-32-characters!!')}"},
        "expired": {"Authorization": f"Bearer {mint_token(**claims, ttl_s=-120)}"},
        "wrong issuer": {"Authorization": f"Bearer {mint_token(**claims, issuer='someone-else')}"},
        "wrong audience": {"Authorization": f"Bearer {mint_token(**claims, audience='another-api')}"},
        "unknown role": {"Authorization": f"Bearer {mint_token(**{**claims, 'role': 'superuser'})}"},
        "none algorithm": {"Authorization": "Bearer " + _unsigned(claims)},
    }


def _unsigned(claims: dict[str, str]) -> str:
    import base64
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    full = {**claims, "iss": "homework-dev", "aud": "homework", "exp": 4_102_444_800}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(full)}."


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
async def test_without_a_valid_token_every_route_answers_401(
    svc: Service, assignment: dict[str, Any], route: Route
) -> None:
    for problem, headers in bad_tokens(svc.practice).items():
        response = await call(svc, route, assignment, headers)
        assert response.status_code == 401, (problem, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    await unchanged(svc, assignment)


def same_practice_tokens(svc: Service) -> dict[str, dict[str, str]]:
    """A token of each role in the assignment's practice; the client is the assignment's own client."""
    return {
        "therapist": svc.therapist,
        "admin": bearer("admin", unique("admin"), svc.practice),
        "client": svc.client,
    }


WITH_A_REFUSED_ROLE = [r for r in ROUTES if r.roles != ANYONE]


@pytest.mark.parametrize("route", WITH_A_REFUSED_ROLE, ids=[r.name for r in WITH_A_REFUSED_ROLE])
async def test_a_role_the_route_is_not_for_gets_403(svc: Service, assignment: dict[str, Any], route: Route) -> None:
    tokens = same_practice_tokens(svc)
    refused = sorted(set(tokens) - route.roles)
    assert refused, f"{route.name} is open to every role; it belongs in the reads test below"
    for role in refused:
        response = await call(svc, route, assignment, tokens[role])
        assert response.status_code == 403, (role, response.text)
        assert response.json()["error"] == "forbidden"
    await unchanged(svc, assignment)


READS = [r for r in ROUTES if r.method == "GET"]


@pytest.mark.parametrize("route", READS, ids=[r.name for r in READS])
async def test_every_role_a_read_is_for_gets_200(svc: Service, assignment: dict[str, Any], route: Route) -> None:
    # The other side of the 403s: a route open to anyone is open to each role, and a
    # therapists' or clients' read lets its own roles through (writes are tested elsewhere).
    tokens = same_practice_tokens(svc)
    answers = {role: (await call(svc, route, assignment, tokens[role])).status_code for role in sorted(route.roles)}
    assert answers == dict.fromkeys(sorted(route.roles), 200)


ABOUT_AN_ASSIGNMENT = [r for r in ROUTES if r.about_an_assignment]


@pytest.mark.parametrize("route", ABOUT_AN_ASSIGNMENT, ids=[r.name for r in ABOUT_AN_ASSIGNMENT])
async def test_another_practices_assignment_is_404_for_every_role(
    svc: Service, assignment: dict[str, Any], route: Route
) -> None:
    elsewhere = unique("practice")
    callers = {
        "therapist": bearer("therapist", unique("therapist"), elsewhere),
        "admin": bearer("admin", unique("admin"), elsewhere),
        # Even the same client id, in another practice, is someone else.
        "client": bearer("client", svc.client_id, elsewhere),
    }
    for role in route.roles:
        response = await call(svc, route, assignment, callers[role])
        assert response.status_code == 404, (role, response.text)
        assert response.json()["error"] == "assignment_not_found"
    await unchanged(svc, assignment)


CLIENT_ROUTES = [r for r in ABOUT_AN_ASSIGNMENT if "client" in r.roles]


@pytest.mark.parametrize("route", CLIENT_ROUTES, ids=[r.name for r in CLIENT_ROUTES])
async def test_another_clients_assignment_is_404(svc: Service, assignment: dict[str, Any], route: Route) -> None:
    neighbour = bearer("client", unique("client"), svc.practice)
    response = await call(svc, route, assignment, neighbour)
    assert response.status_code == 404, response.text
    await unchanged(svc, assignment)


async def test_an_unknown_assignment_and_another_practices_look_the_same(
    svc: Service, assignment: dict[str, Any]
) -> None:
    outsider = bearer("therapist", "t-elsewhere", unique("practice"))
    theirs = await svc.http.get(f"/v1/assignments/{assignment['id']}", headers=outsider)
    missing = await svc.http.get("/v1/assignments/asg-does-not-exist", headers=svc.therapist)
    assert (theirs.status_code, missing.status_code) == (404, 404)
    assert theirs.json()["error"] == missing.json()["error"]


async def test_lists_never_show_another_practices_data(svc: Service, assignment: dict[str, Any]) -> None:
    elsewhere = unique("practice")
    outsider = bearer("therapist", "t-elsewhere", elsewhere)
    listed = await svc.http.get(f"/v1/clients/{svc.client_id}/assignments", headers=outsider)
    assert listed.json()["items"] == []
    same_id_elsewhere = bearer("client", svc.client_id, elsewhere)
    assert (await svc.http.get("/v1/me/assignments", headers=same_id_elsewhere)).json()["items"] == []
    await svc.complete(assignment, evening(assignment, 21))
    assert (await svc.http.get("/v1/me/history", headers=same_id_elsewhere)).json()["items"] == []
    assert len((await svc.http.get("/v1/me/history", headers=svc.client)).json()["items"]) == 1


async def test_a_therapist_creates_only_in_their_own_practice(svc: Service) -> None:
    body = {**daily_mood_log(svc.client_id), "practice_id": "someone-elses"}
    refused = await svc.http.post("/v1/assignments", json=body, headers=svc.therapist)
    assert refused.status_code == 422
    created = await svc.create()
    assert created["practice_id"] == svc.practice


async def test_health_needs_no_token(svc: Service) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await svc.http.get(path)).status_code == 200, path
