"""Fuzz every service's OpenAPI with schemathesis against the running processes.

For each operation schemathesis generates valid and invalid requests (examples, coverage and
fuzzing phases, a bounded number each); every response must be no 5xx, have a documented status
code and content type, and a body valid against the service's own schema. Requests carry a
valid token of the role the route is for (a client on client routes, a therapist elsewhere), and
half of them use identifiers that exist (a seeded assignment, occurrence, reminder, summary), so
the fuzz reaches the code behind the 404s too.

Each operation is fuzzed again by callers who are not the seeded practice's: no token, a therapist
of another practice, another client of the same practice, and the same client id in another
practice, always with the seeded identifiers. Besides the checks above, no response may carry a
seeded id or title the request did not itself name.
"""

from __future__ import annotations

import copy
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import unique
from tests.e2e.openapi import openapi_document
from tests.e2e.system import Deployment, deploy, wait
from tests.infra import Infra

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 60
# Each example of the outsiders' fuzz is sent once per outsider (four requests).
OUTSIDER_EXAMPLES = 12
DATABASE_RETRIES = 4
CLIENT_ROUTES = re.compile(r"^/v1/me/|/completion$|/skip$|/snooze$")
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
OUTSIDER_SETTINGS = settings(max_examples=OUTSIDER_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass
class FuzzTarget:
    """The running platform, tokens of both roles, and identifiers that exist in it."""

    deployment: Deployment
    therapist: str
    client: str
    known: dict[str, str] = field(default_factory=dict)
    outsiders: dict[str, str | None] = field(default_factory=dict)
    markers: list[str] = field(default_factory=list)

    def call(self, case: Any, service: str) -> None:
        """Send ``case`` with the token its route wants (and, for half the cases, real ids), then check it."""
        if zlib.crc32(repr(sorted((case.path_parameters or {}).items())).encode()) % 2 == 0:
            self.use_known_ids(case)
        token = self.client if CLIENT_ROUTES.search(case.path) else self.therapist
        self.send(case, service, {"Authorization": f"Bearer {token}"})

    def call_as_outsiders(self, case: Any, service: str) -> None:
        """Send ``case``, about the seeded ids, as each outsider: no 5xx, as documented, none of the seeded data."""
        self.use_known_ids(case)
        for name in [name for name in case.headers or {} if name.lower() == "authorization"]:
            del case.headers[name]  # the outsider's own header (or none) is the only one sent
        for outsider, token in self.outsiders.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = self.send(case, service, headers)
            named = repr((case.path_parameters, case.query, case.body))
            leaked = [marker for marker in self.markers if marker in response.text and marker not in named]
            assert not leaked, f"{outsider} got the seeded practice's {leaked}: {response.text[:300]}"

    def use_known_ids(self, case: Any) -> None:
        """Replace the generated path identifiers with the seeded ones of the same name."""
        for name, value in (case.path_parameters or {}).items():
            if name in self.known and isinstance(value, str):
                case.path_parameters[name] = self.known[name]

    def send(self, case: Any, service: str, headers: dict[str, str]) -> Any:
        """One request, with the 503 retry below, validated against the document; the response."""
        for attempt in range(1, DATABASE_RETRIES + 1):
            response = case.call(base_url=self.deployment.processes[service].url, headers=headers, timeout=90)
            # A 503 database_unavailable (documented, with Retry-After) is what an overloaded shared server
            # gives: a client retries it. Only one that persists counts, as does any other 5xx at once.
            unavailable = response.status_code == 503 and "database_unavailable" in response.text
            if not unavailable or attempt == DATABASE_RETRIES:
                break
            time.sleep(float(response.headers.get("Retry-After", "2")))
        case.validate_response(response, checks=CHECKS, headers=headers)
        return response


def _seed(d: Deployment, therapist: str, client: str, client_id: str, practice: str) -> dict[str, str]:
    """An assignment open now with a reminder ahead, figures and a summary: real ids for the fuzz to hit."""
    auth_t = {"Authorization": f"Bearer {therapist}"}
    auth_c = {"Authorization": f"Bearer {client}"}
    urls = {name: p.url for name, p in d.processes.items()}
    tz = "Europe/Berlin"
    local_now = datetime.now(UTC).astimezone(ZoneInfo(tz)).replace(second=0, microsecond=0, tzinfo=None)
    body = {
        "client_id": client_id,
        "kind": "mood_log",
        "title": f"Daily mood log {unique('title')}",
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
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{urls['assignment']}/v1/assignments", json=body, headers=auth_t)
        r.raise_for_status()
        aid = r.json()["id"]
        occs = http.get(f"{urls['assignment']}/v1/assignments/{aid}/occurrences", headers=auth_c).json()["items"]

        def reminders() -> list[dict[str, Any]]:
            r = http.get(f"{urls['reminder']}/v1/clients/{client_id}/reminders", headers=auth_t)
            return r.json()["reminders"] if r.status_code == 200 else []

        rid = wait(reminders, 60, message="the seeded assignment's reminders")[0]["reminder_id"]
        wait(
            lambda: http.get(f"{urls['insights']}/v1/clients/{client_id}/figures", headers=auth_t).status_code == 200,
            60,
            message="the seeded client's figures",
        )
        summary = http.post(f"{urls['insights']}/v1/clients/{client_id}/summaries", json={}, headers=auth_t)
        summary.raise_for_status()
    return {
        "title": body["title"],
        "assignment_id": aid,
        "occurrence_id": occs[0]["occurrence_id"],
        "client_id": client_id,
        "practice_id": practice,
        "reminder_id": rid,
        "summary_id": summary.json()["summary_id"],
    }


@pytest.fixture(scope="module")
def fuzz_target(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    from homework_shared.auth.mint import mint_token

    practice, therapist_id, client_id = unique("practice"), unique("therapist"), unique("client")
    therapist = mint_token(sub=therapist_id, role="therapist", practice_id=practice, ttl_s=3600)
    client = mint_token(sub=client_id, role="client", practice_id=practice, ttl_s=3600)
    with deploy(infra, tmp_path_factory.mktemp("fuzz") / "logs") as d:
        target = FuzzTarget(d, therapist, client)
        target.known = _seed(d, therapist, client, client_id, practice)
        elsewhere = unique("practice")
        target.outsiders = {
            "no token": None,
            "therapist of another practice": mint_token(
                sub=unique("therapist"), role="therapist", practice_id=elsewhere
            ),
            "another client of the same practice": mint_token(
                sub=unique("client"), role="client", practice_id=practice
            ),
            "the same client id in another practice": mint_token(sub=client_id, role="client", practice_id=elsewhere),
        }
        # The seeded practice's data: ids and the title (not the client and practice ids, which an outsider may name).
        target.markers = [
            target.known[k] for k in ("title", "assignment_id", "occurrence_id", "reminder_id", "summary_id")
        ]
        yield target
        for name, proc in d.processes.items():
            assert proc.alive(), f"{name} died during the fuzz; see {proc.logfile}"


def openapi_of(service: str) -> Any:
    """The service's OpenAPI document, from its app object (nothing connects: the same document it serves)."""
    return schemathesis.openapi.from_dict(copy.deepcopy(openapi_document(service)))


assignment_schema = openapi_of("assignment")
reminder_schema = openapi_of("reminder")
insights_schema = openapi_of("insights")


@assignment_schema.parametrize()
@FUZZ_SETTINGS
def test_the_assignment_api_answers_as_documented(case: Any, fuzz_target: FuzzTarget) -> None:
    fuzz_target.call(case, "assignment")


@reminder_schema.parametrize()
@FUZZ_SETTINGS
def test_the_reminder_api_answers_as_documented(case: Any, fuzz_target: FuzzTarget) -> None:
    fuzz_target.call(case, "reminder")


@insights_schema.parametrize()
@FUZZ_SETTINGS
def test_the_insights_api_answers_as_documented(case: Any, fuzz_target: FuzzTarget) -> None:
    fuzz_target.call(case, "insights")


@assignment_schema.parametrize()
@OUTSIDER_SETTINGS
def test_the_assignment_api_shows_outsiders_nothing_of_the_seeded_practice(case: Any, fuzz_target: FuzzTarget) -> None:
    fuzz_target.call_as_outsiders(case, "assignment")


@reminder_schema.parametrize()
@OUTSIDER_SETTINGS
def test_the_reminder_api_shows_outsiders_nothing_of_the_seeded_practice(case: Any, fuzz_target: FuzzTarget) -> None:
    fuzz_target.call_as_outsiders(case, "reminder")


@insights_schema.parametrize()
@OUTSIDER_SETTINGS
def test_the_insights_api_shows_outsiders_nothing_of_the_seeded_practice(case: Any, fuzz_target: FuzzTarget) -> None:
    fuzz_target.call_as_outsiders(case, "insights")


def test_the_services_stay_up_and_ready_after_the_fuzz(fuzz_target: FuzzTarget) -> None:
    for name, proc in fuzz_target.deployment.processes.items():
        assert proc.alive(), f"{name} died; see {proc.logfile}"
        deadline = time.monotonic() + 30
        while not proc.ready() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.ready(), f"{name} not ready after the fuzz; see {proc.logfile}"
