"""The tenancy matrix: every route of the three services' OpenAPI documents x every caller who is not the owner.

Two practices, A and B, both have a client ``c-1`` (ids are unique only within a practice); A
also has ``c-2``. Each is seeded through the public APIs and the real event flow (the three
services as processes on the session's Kafka broker and MongoDB server). Every route is then
called about practice A's client ``c-1`` (its assignments, occurrence, reminder, summary, its
practice) by: no token, a garbage token, an ``alg: none`` token, an expired token, a role the
route is not for, a therapist of practice B, another client of practice A (``c-2``), and the
client ``c-1`` of practice B; and last by the owner, as a control that the route was reached.
A route that names a client is also called by B's therapist about ``c-2``, a client only A has.

Per cell: the status the table implies (401, 403, 404, or a success about the caller's own
tenancy), a status the route documents, never a 5xx, and never a marker (id or title) of a
seeded object the caller may not see in the body. The routes come from the OpenAPI documents,
so a route without an entry in ``TABLE`` fails here: a route added later is covered, or this
test says what to write down about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest

from homework_shared.auth.mint import mint_token
from tests.conftest import unique
from tests.e2e.openapi import documented_routes, operation
from tests.e2e.system import Deployment, deploy, wait
from tests.infra import Infra

Route = tuple[str, str, str]  # (service, METHOD, path)
Scope = Literal["public", "own", "client", "object", "practice"]
THERAPISTS = frozenset({"therapist", "admin"})
ANYONE = frozenset({"therapist", "admin", "client"})
CLIENT = frozenset({"client"})
ADMIN = frozenset({"admin"})
DATABASE_RETRIES = 4


@dataclass(frozen=True)
class Expect:
    """What a route is about, who may use it, and how to fill its request from the seeded world.

    ``scope``: ``public`` needs no token; ``own`` acts on the caller's own data (``/me``, create);
    ``client`` names a client id in the path (resolved within the caller's practice); ``object``
    names a seeded object of practice A's ``c-1``; ``practice`` names practice A itself.
    ``params`` maps each path parameter to a key of ``World.ids``; ``owner_ok`` is what the
    owner may get (a 409 where an earlier cell of the same run already moved the object on).
    """

    scope: Scope
    roles: frozenset[str] = frozenset()
    params: dict[str, str] = field(default_factory=dict)
    body: Callable[[World], Any] | None = None
    owner_ok: frozenset[int] = frozenset()
    owner_role: str | None = None


def _create(world: World) -> dict[str, Any]:
    return assignment_body("c-1", f"Created in the matrix {unique('title')}")


TABLE: dict[Route, Expect] = {
    # ------------------------------------------------------------ assignment service
    ("assignment", "GET", "/healthz"): Expect("public"),
    ("assignment", "GET", "/readyz"): Expect("public"),
    ("assignment", "POST", "/v1/assignments"): Expect("own", THERAPISTS, body=_create),
    ("assignment", "GET", "/v1/assignments/{assignment_id}"): Expect("object", ANYONE, {"assignment_id": "assignment"}),
    ("assignment", "GET", "/v1/clients/{client_id}/assignments"): Expect("client", THERAPISTS, {"client_id": "client"}),
    ("assignment", "POST", "/v1/assignments/{assignment_id}/revisions"): Expect(
        "object", THERAPISTS, {"assignment_id": "mutable"}, body=lambda w: {"title": f"Revised {unique('title')}"}
    ),
    ("assignment", "GET", "/v1/assignments/{assignment_id}/revisions"): Expect(
        "object", ANYONE, {"assignment_id": "mutable"}
    ),
    ("assignment", "POST", "/v1/assignments/{assignment_id}/pause"): Expect(
        "object", THERAPISTS, {"assignment_id": "mutable"}
    ),
    ("assignment", "POST", "/v1/assignments/{assignment_id}/resume"): Expect(
        "object", THERAPISTS, {"assignment_id": "mutable"}
    ),
    ("assignment", "POST", "/v1/assignments/{assignment_id}/cancel"): Expect(
        "object", THERAPISTS, {"assignment_id": "mutable"}
    ),
    # The owner's cancel came first, so the owner's end is a 409: reached, and refused on state.
    ("assignment", "POST", "/v1/assignments/{assignment_id}/end"): Expect(
        "object", THERAPISTS, {"assignment_id": "mutable"}, owner_ok=frozenset({409})
    ),
    ("assignment", "GET", "/v1/assignments/{assignment_id}/audit"): Expect(
        "object", THERAPISTS, {"assignment_id": "mutable"}
    ),
    ("assignment", "GET", "/v1/assignments/{assignment_id}/occurrences"): Expect(
        "object", ANYONE, {"assignment_id": "assignment"}
    ),
    ("assignment", "POST", "/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/completion"): Expect(
        "object",
        CLIENT,
        {"assignment_id": "done", "occurrence_id": "done_occurrence"},
        body=lambda w: {"data": {"mood": 5}},
    ),
    # The owner's completion came first, so the owner's skip of the same occurrence is a 409.
    ("assignment", "POST", "/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/skip"): Expect(
        "object",
        CLIENT,
        {"assignment_id": "done", "occurrence_id": "done_occurrence"},
        body=lambda w: {"barrier": "forgot"},
        owner_ok=frozenset({409}),
    ),
    ("assignment", "GET", "/v1/me/assignments"): Expect("own", CLIENT),
    ("assignment", "GET", "/v1/me/history"): Expect("own", CLIENT),
    # Data export (docs/data-rights.md): the bundle for therapists and the client; each service's part for both.
    ("assignment", "GET", "/v1/clients/{client_id}/export"): Expect("client", THERAPISTS, {"client_id": "client"}),
    ("assignment", "GET", "/v1/me/export"): Expect("own", CLIENT),
    ("assignment", "GET", "/v1/clients/{client_id}/export-part"): Expect("client", ANYONE, {"client_id": "client"}),
    # Erasure (docs/data-rights.md): an admin asks; therapists and admins see the state. About a client the
    # fixture erased in both practices, so the owner's request is a replay (200) and B's therapist sees B's own.
    ("assignment", "POST", "/v1/clients/{client_id}/erasure"): Expect(
        "client", ADMIN, {"client_id": "erasable"}, owner_role="admin"
    ),
    ("assignment", "GET", "/v1/clients/{client_id}/erasure"): Expect("client", THERAPISTS, {"client_id": "erasable"}),
    # Retention: an admin sets the practice's; therapists read it. The read audit: admins only.
    ("assignment", "GET", "/v1/practices/{practice_id}/retention"): Expect(
        "practice", THERAPISTS, {"practice_id": "practice"}, owner_role="admin"
    ),
    ("assignment", "PUT", "/v1/practices/{practice_id}/retention"): Expect(
        "practice", ADMIN, {"practice_id": "practice"}, body=lambda w: {"days": 3650}, owner_role="admin"
    ),
    ("assignment", "GET", "/v1/audit"): Expect("own", ADMIN, owner_role="admin"),
    # ------------------------------------------------------------ reminder service
    ("reminder", "GET", "/healthz"): Expect("public"),
    ("reminder", "GET", "/readyz"): Expect("public"),
    ("reminder", "GET", "/v1/me/reminders"): Expect("own", CLIENT),
    ("reminder", "GET", "/v1/clients/{client_id}/reminders"): Expect("client", ANYONE, {"client_id": "client"}),
    ("reminder", "POST", "/v1/reminders/{reminder_id}/snooze"): Expect(
        "object", CLIENT, {"reminder_id": "reminder"}, body=lambda w: {"minutes": 10}
    ),
    ("reminder", "GET", "/v1/clients/{client_id}/preferences"): Expect("client", ANYONE, {"client_id": "client"}),
    ("reminder", "PUT", "/v1/clients/{client_id}/preferences"): Expect(
        "client", ANYONE, {"client_id": "client"}, body=lambda w: {"channels": ["push"]}
    ),
    ("reminder", "GET", "/v1/clients/{client_id}/export-part"): Expect("client", ANYONE, {"client_id": "client"}),
    ("reminder", "GET", "/v1/audit-part"): Expect("own", ADMIN, owner_role="admin"),
    # Webhooks: only an admin sets or deletes them; a therapist may read.
    ("reminder", "PUT", "/v1/practices/{practice_id}/webhook"): Expect(
        "practice",
        ADMIN,
        {"practice_id": "practice"},
        body=lambda w: {"url": "http://127.0.0.1:9/matrix-hook", "secret": "a-webhook-secret-of-the-matrix"},
        owner_role="admin",
    ),
    ("reminder", "GET", "/v1/practices/{practice_id}/webhook"): Expect(
        "practice", THERAPISTS, {"practice_id": "practice"}, owner_role="admin"
    ),
    ("reminder", "DELETE", "/v1/practices/{practice_id}/webhook"): Expect(
        "practice", ADMIN, {"practice_id": "practice"}, owner_role="admin"
    ),
    # ------------------------------------------------------------ insights service
    ("insights", "GET", "/healthz"): Expect("public"),
    ("insights", "GET", "/readyz"): Expect("public"),
    ("insights", "GET", "/v1/clients/{client_id}/figures"): Expect("client", ANYONE, {"client_id": "client"}),
    ("insights", "GET", "/v1/clients/{client_id}/thresholds"): Expect("client", THERAPISTS, {"client_id": "client"}),
    ("insights", "PUT", "/v1/clients/{client_id}/thresholds"): Expect(
        "client",
        THERAPISTS,
        {"client_id": "client"},
        body=lambda w: {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]},
    ),
    ("insights", "POST", "/v1/clients/{client_id}/summaries"): Expect(
        "client", THERAPISTS, {"client_id": "client"}, body=lambda w: {}
    ),
    ("insights", "GET", "/v1/clients/{client_id}/summaries"): Expect("client", THERAPISTS, {"client_id": "client"}),
    ("insights", "GET", "/v1/clients/{client_id}/export-part"): Expect("client", ANYONE, {"client_id": "client"}),
    ("insights", "GET", "/v1/audit-part"): Expect("own", ADMIN, owner_role="admin"),
    ("insights", "GET", "/v1/summaries/{summary_id}"): Expect("object", THERAPISTS, {"summary_id": "summary"}),
    ("insights", "GET", "/v1/summaries/{summary_id}/html"): Expect("object", THERAPISTS, {"summary_id": "summary"}),
}

DOCUMENTED: list[Route] = documented_routes()


# ---------------------------------------------------------------- who calls


@dataclass(frozen=True)
class Caller:
    """One column of the matrix: its name, its Authorization header, and who it is (None: nobody)."""

    cell: str
    headers: dict[str, str]
    practice: str | None = None
    role: str | None = None
    sub: str | None = None
    # The client id this caller names in a ``{client_id}`` path, instead of the seeded ``c-1``.
    names_client: str | None = None

    def may_see(self, owner: Seeded) -> bool:
        """The one tenancy rule: same practice, and a therapist or admin, or the client the object is about."""
        if self.practice != owner.practice or self.role is None:
            return False
        return self.role in THERAPISTS or self.sub == owner.client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def person(cell: str, role: str, sub: str, practice: str) -> Caller:
    return Caller(cell, bearer(mint_token(sub=sub, role=role, practice_id=practice)), practice, role, sub)


def anonymous_callers(practice: str) -> list[Caller]:
    """The four callers without a valid token; the last two carry the claims of practice A's therapist."""
    claims = {"sub": "t-a", "role": "therapist", "practice_id": practice, "iss": "homework-dev", "aud": "homework"}
    unsigned = jwt.encode({**claims, "exp": int(time.time()) + 3600}, key=None, algorithm="none")
    expired = mint_token(sub="t-a", role="therapist", practice_id=practice, ttl_s=-3600)
    return [
        Caller("no token", {}),
        Caller("garbage token", bearer("garbage.garbage.garbage")),
        Caller("alg none token", bearer(unsigned)),
        Caller("expired token", bearer(expired)),
    ]


# ---------------------------------------------------------------- the seeded world


@dataclass(frozen=True)
class Seeded:
    """An object in a service: whose it is, and the strings that would show it in a response body."""

    practice: str
    client: str
    markers: tuple[str, ...]


@dataclass
class World:
    """The running platform, the two practices, the ids the routes are called with, and the markers."""

    deployment: Deployment
    practice_a: str
    practice_b: str
    ids: dict[str, str] = field(default_factory=dict)
    objects: list[Seeded] = field(default_factory=list)

    def url(self, service: str) -> str:
        return self.deployment.processes[service].url

    def callers(self, expect: Expect) -> tuple[list[Caller], Caller]:
        """The eight cells of a route (wrong role only where a role is refused) and the owner, who calls last."""
        a, b = self.practice_a, self.practice_b
        cells = anonymous_callers(a)
        if expect.scope == "public":
            return cells, person("owner", "therapist", "t-a", a)
        wrong = next((role for role in ("therapist", "client") if role not in expect.roles), None)
        if wrong is not None:
            cells.append(person("wrong role", wrong, "c-1" if wrong == "client" else "t-a", a))
        owner_role = expect.owner_role or next(role for role in ("therapist", "client") if role in expect.roles)
        cells += [
            person("therapist of another practice", "therapist", "t-b", b),
            person("another client of the same practice", "client", "c-2", a),
            person("the same client id in another practice", "client", "c-1", b),
        ]
        if expect.scope == "client" and "therapist" in expect.roles:
            cells.append(
                Caller(
                    "therapist of another practice, about a client only A has",
                    bearer(mint_token(sub="t-b", role="therapist", practice_id=b)),
                    b,
                    "therapist",
                    "t-b",
                    names_client="c-2",
                )
            )
        owner_sub = {"therapist": "t-a", "admin": "admin-a", "client": "c-1"}[owner_role]
        return cells, person("owner", owner_role, owner_sub, a)

    def forbidden(self, caller: Caller, request_text: str) -> list[str]:
        """Markers of objects ``caller`` may not see (less any the request itself carried, as an echoed id)."""
        return [
            marker
            for owner in self.objects
            if not caller.may_see(owner)
            for marker in owner.markers
            if marker not in request_text
        ]


def assignment_body(client_id: str, title: str) -> dict[str, Any]:
    """A daily mood log open now (started an hour ago, 10-hour windows) with a reminder an hour before it closes."""
    tz = "Europe/Berlin"
    local_now = datetime.now(UTC).astimezone(ZoneInfo(tz)).replace(second=0, microsecond=0, tzinfo=None)
    return {
        "client_id": client_id,
        "kind": "mood_log",
        "title": title,
        "instructions": "Rate your mood each evening.",
        "schedule": {
            "type": "recurring",
            "timezone": tz,
            "rrule": "FREQ=DAILY",
            "starts_at": (local_now - timedelta(hours=1)).isoformat(),
            "count": 10,
            "window_minutes": 600,
        },
        "reminders": [{"anchor": "closes", "offset_minutes": -60, "channels": ["push"]}],
    }


def _seed_practice(world: World, http: httpx.Client, practice: str, clients: dict[str, list[str]]) -> dict[str, Any]:
    """Create ``clients``' assignments (names -> titles) in ``practice`` and wait until every service has them."""
    therapist = bearer(mint_token(sub=f"t-{practice}", role="therapist", practice_id=practice))
    made: dict[str, Any] = {}
    for client_id, names in clients.items():
        for name in names:
            title = f"{practice} {client_id} {name} {unique('title')}"
            r = http.post(
                f"{world.url('assignment')}/v1/assignments", json=assignment_body(client_id, title), headers=therapist
            )
            assert r.status_code == 201, r.text
            made[name] = r.json()
            world.objects.append(Seeded(practice, client_id, (made[name]["id"], title)))
    first = made[clients["c-1"][0]]

    def reminders() -> list[dict[str, Any]]:
        r = http.get(f"{world.url('reminder')}/v1/clients/c-1/reminders", headers=therapist)
        items = r.json()["reminders"] if r.status_code == 200 else []
        return [item for item in items if item["assignment_id"] == first["id"]]

    made["reminder"] = wait(reminders, 90, message=f"the reminders of {practice}'s c-1")[0]["reminder_id"]

    def figures_show_it() -> bool:
        r = http.get(f"{world.url('insights')}/v1/clients/c-1/figures", headers=therapist)
        return r.status_code == 200 and first["id"] in r.text

    wait(figures_show_it, 90, message=f"the figures of {practice}'s c-1")
    summary = http.post(f"{world.url('insights')}/v1/clients/c-1/summaries", json={}, headers=therapist)
    assert summary.status_code == 201, summary.text
    made["summary"] = summary.json()["summary_id"]
    world.objects.append(Seeded(practice, "c-1", (made["reminder"], made["summary"])))
    return made


@pytest.fixture(scope="module")
def world(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("tenancy") / "logs"
    with deploy(infra, logs, WEBHOOK_ALLOW_PRIVATE_NETWORKS="true") as d:
        w = World(d, unique("practice-a"), unique("practice-b"))
        with httpx.Client(timeout=60) as http:
            # A first, wholly, then B: B's c-1 arrives where A's c-1 is already known.
            a = _seed_practice(w, http, w.practice_a, {"c-1": ["assignment", "mutable", "done"], "c-2": ["c2"]})
            _seed_practice(w, http, w.practice_b, {"c-1": ["assignment"]})
            occurrences = http.get(
                f"{w.url('assignment')}/v1/assignments/{a['done']['id']}/occurrences",
                headers=bearer(mint_token(sub="c-1", role="client", practice_id=w.practice_a)),
            )
            assert occurrences.status_code == 200, occurrences.text
            for practice in (w.practice_a, w.practice_b):
                erased = http.post(
                    f"{w.url('assignment')}/v1/clients/c-erased/erasure",
                    headers=bearer(mint_token(sub="admin-a", role="admin", practice_id=practice)),
                )
                assert erased.status_code == 202, erased.text
        w.ids = {
            "assignment": a["assignment"]["id"],
            "mutable": a["mutable"]["id"],
            "done": a["done"]["id"],
            "done_occurrence": occurrences.json()["items"][0]["occurrence_id"],
            "reminder": a["reminder"],
            "summary": a["summary"],
            "client": "c-1",
            "erasable": "c-erased",
            "practice": w.practice_a,
        }
        yield w
        for name, proc in d.processes.items():
            assert proc.alive(), f"{name} died during the matrix; see {proc.logfile}"


# ---------------------------------------------------------------- the cells


def expected_statuses(expect: Expect, caller: Caller, success: int, practice_a: str) -> frozenset[int]:
    """The statuses the tenancy rules allow ``caller`` on a route described by ``expect``."""
    if expect.scope == "public":
        return frozenset({200})
    if caller.role is None:
        return frozenset({401})
    if caller.role not in expect.roles:
        return frozenset({403})
    if caller.cell == "owner":
        return expect.owner_ok or frozenset({success})
    if expect.scope == "own":
        return frozenset({success})  # about the caller's own data; the markers check the rest
    if expect.scope == "client" and caller.names_client:
        # B does not know A's c-2: 404, or (a list) an empty success; the markers check that it is empty of A.
        return frozenset({404, success})
    if expect.scope == "client" and caller.practice != practice_a:
        return frozenset({success})  # the caller's own practice's c-1: theirs to see, nothing of A's
    return frozenset({404})


def send(world: World, route: Route, expect: Expect, caller: Caller) -> tuple[httpx.Response, str]:
    """One request of the matrix; a 503 ``database_unavailable`` (an overloaded shared server) is retried."""
    service, method, path = route
    values = {name: world.ids[key] for name, key in expect.params.items()}
    if caller.names_client and "client_id" in values:
        values["client_id"] = caller.names_client
    url_path = path.format(**{name: quote(value, safe="") for name, value in values.items()})
    body = expect.body(world) if expect.body else None
    request_text = f"{values!r} {body!r}"
    with httpx.Client(base_url=world.url(service), timeout=60) as http:
        for attempt in range(1, DATABASE_RETRIES + 1):
            response = http.request(method, url_path, json=body, headers=caller.headers)
            if (
                response.status_code != 503
                or "database_unavailable" not in response.text
                or attempt == DATABASE_RETRIES
            ):
                break
            time.sleep(float(response.headers.get("Retry-After", "2")))
    return response, request_text


def check_cell(world: World, route: Route, expect: Expect, caller: Caller) -> str | None:
    """What is wrong with one cell, or None."""
    service, method, path = route
    documented = {int(code) for code in operation(service, method, path)["responses"] if code.isdigit()}
    success = min(code for code in documented if 200 <= code < 300)
    response, request_text = send(world, route, expect, caller)
    status = response.status_code
    problems = []
    allowed = expected_statuses(expect, caller, success, world.practice_a)
    if status not in allowed:
        problems.append(f"status {status}, expected {sorted(allowed)}")
    if status >= 500:
        problems.append("a server error")
    if status not in documented:
        problems.append(f"status {status} is not documented ({sorted(documented)})")
    leaked = [marker for marker in world.forbidden(caller, request_text) if marker in response.text]
    if leaked:
        problems.append(f"another tenant's data in the body: {leaked}")
    if not problems:
        return None
    return f"{caller.cell}: {'; '.join(problems)}; body {response.text[:300]!r}"


@pytest.mark.parametrize("route", DOCUMENTED, ids=[" ".join(r) for r in DOCUMENTED])
def test_only_the_owner_reaches_practice_as_client_through_each_route(world: World, route: Route) -> None:
    expect = TABLE.get(route)
    assert expect is not None, (
        f"{' '.join(route)} is in the OpenAPI document but not in TABLE of {__name__}: add its scope, the roles "
        "that may use it, how to fill its path parameters and its body, so the tenancy matrix covers it"
    )
    service, method, path = route
    path_params = {p["name"] for p in operation(service, method, path).get("parameters", []) if p["in"] == "path"}
    assert set(expect.params) == path_params, (
        f"TABLE fills {sorted(expect.params)}, the route takes {sorted(path_params)}"
    )
    cells, owner = world.callers(expect)
    failures = [problem for caller in [*cells, owner] if (problem := check_cell(world, route, expect, caller))]
    assert not failures, f"{' '.join(route)}:\n" + "\n".join(failures)


def test_every_documented_route_has_an_entry_in_the_table() -> None:
    # The same refusal as in each route's cell above, but without servers: quick to see while writing a route.
    assert [" ".join(route) for route in DOCUMENTED if route not in TABLE] == []


def test_every_route_in_the_table_is_documented() -> None:
    # A route renamed or removed leaves a stale entry; it must go, or the matrix tests a route that is not there.
    assert sorted(set(TABLE) - set(DOCUMENTED)) == []


# ---------------------------------------------------------------- the read audit

AUDITED: list[Route] = [
    route for route in DOCUMENTED if route[1] == "GET" and route in TABLE and TABLE[route].scope in ("client", "object")
]
"""Every documented read of one client's data (a client or one of their objects in the path), from the OpenAPI."""


def test_the_read_audit_records_every_read_route_of_client_data_by_a_therapist_or_admin(world: World) -> None:
    assert len(AUDITED) >= 15, AUDITED  # the OpenAPI documents were read
    reader = unique("auditor")
    expected: set[tuple[str, str]] = set()
    for route in AUDITED:
        service, method, path = route
        expect = TABLE[route]
        role = "admin" if expect.owner_role == "admin" or "therapist" not in expect.roles else "therapist"
        caller = person("owner", role, reader, world.practice_a)
        response, _ = send(world, route, expect, caller)
        assert response.status_code < 300, f"{' '.join(route)}: {response.status_code} {response.text[:200]}"
        expected.add((service, f"{method} {path}"))
    admin = bearer(mint_token(sub="admin-a", role="admin", practice_id=world.practice_a))

    def recorded() -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        cursor: str | None = None
        with httpx.Client(timeout=60) as http:
            while True:
                params = {"actor": reader, "limit": "500", **({"cursor": cursor} if cursor else {})}
                r = http.get(f"{world.url('assignment')}/v1/audit", params=params, headers=admin)
                assert r.status_code == 200, r.text
                page = r.json()
                for item in page["items"]:
                    assert item["practice_id"] == world.practice_a
                    assert item["role"] in ("therapist", "admin")
                    assert item["request_id"]
                    found.add((item["service"], item["what"]))
                cursor = page["next_cursor"]
                if not cursor:
                    return found

    # Written in batches a fraction of a second after the read: polled, with a deadline.
    wait(lambda: expected <= recorded(), 60, message="every read in the audit")
    # Another practice's admin sees none of it.
    other = bearer(mint_token(sub="admin-b", role="admin", practice_id=world.practice_b))
    r = httpx.get(f"{world.url('assignment')}/v1/audit", params={"actor": reader}, headers=other, timeout=60)
    assert r.status_code == 200
    assert r.json()["items"] == []
