"""The reported cross-tenant leak, end to end: two practices, one client id, the assignment and insights services.

Practice A's therapist assigns homework to "c-1" and A's client records two completions; then
practice B's therapist assigns homework to B's own "c-1". Before the fix, B's AssignmentCreated
took the client over: B read A's titles and mood series, A got 404. Both services run in
process on the real Kafka broker and MongoDB server, sharing one topic prefix.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from homework_assignment.app import create as create_assignment_app
from homework_assignment.config import AssignmentSettings
from homework_insights.app import create as create_insights_app
from homework_shared.clock import ManualClock
from homework_shared.service import Runtime
from tests.conftest import bounded_shutdown, unique, wait_for
from tests.infra import Infra
from tests.integration.assignment.conftest import T0, bearer, daily_mood_log, evening, topic_events
from tests.integration.insights.conftest import settings_for

CLIENT = "c-1"
A_TITLE, B_TITLE = "Practice A: evening mood rating", "Practice B: breathing practice"


@dataclass
class Platform:
    """The assignment and insights services of one test, on one topic prefix, with one clock each."""

    assignment: httpx.AsyncClient
    insights: httpx.AsyncClient
    assignment_rt: Runtime
    insights_rt: Runtime
    assignment_settings: AssignmentSettings
    clocks: tuple[ManualClock, ManualClock]

    def at(self, instant: datetime) -> None:
        for clock in self.clocks:
            clock.set(instant)

    async def caught_up(self) -> None:
        """Wait until the outbox sent everything and insights applied every event about the client."""

        async def relayed() -> bool:
            return await self.assignment_rt.relay.pending() == 0

        await wait_for(relayed, timeout=60, message="assignment outbox relayed")
        events = await topic_events(self.assignment_settings, CLIENT, timeout=60)
        ids = [e.id for e in events]

        async def applied() -> bool:
            found = await self.insights_rt.db["processed_events"].count_documents({"_id": {"$in": ids}})
            return found == len(ids)

        await wait_for(applied, timeout=90, message=f"insights applied all {len(ids)} events")


@pytest.fixture
async def platform(infra: Infra) -> AsyncIterator[Platform]:
    prefix = unique("leak")
    asg_settings = AssignmentSettings(
        environment="development",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("assignment"),
        topic_prefix=prefix,
        topic_partitions=2,
    )
    ins_settings = settings_for(infra, topic_prefix=prefix)
    asg_clock, ins_clock = ManualClock(T0), ManualClock(T0)
    asg_app = create_assignment_app(asg_settings, clock=asg_clock)
    ins_app = create_insights_app(ins_settings, clock=ins_clock)
    asg_rt: Runtime = asg_app.state.runtime
    ins_rt: Runtime = ins_app.state.runtime
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(asg_app.router.lifespan_context(asg_app))
    await stack.enter_async_context(ins_app.router.lifespan_context(ins_app))
    asg_http = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(asg_app), base_url="http://assignment")
    )
    ins_http = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(ins_app), base_url="http://insights")
    )
    try:
        for rt in (asg_rt, ins_rt):
            await wait_for(lambda rt=rt: _ready(rt), timeout=60, message="kafka ready")
        yield Platform(asg_http, ins_http, asg_rt, ins_rt, asg_settings, (asg_clock, ins_clock))
    finally:
        async with bounded_shutdown("the leak test's services"):
            await stack.aclose()


async def _ready(rt: Runtime) -> bool:
    return rt.kafka_ready.is_set()


THERAPIST_A, CLIENT_A = bearer("therapist", "therapist-1", "practice-a"), bearer("client", CLIENT, "practice-a")
THERAPIST_B, CLIENT_B = bearer("therapist", "therapist-1", "practice-b"), bearer("client", CLIENT, "practice-b")


async def figures(p: Platform, who: dict[str, str]) -> dict[str, Any]:
    r = await p.insights.get(f"/v1/clients/{CLIENT}/figures", headers=who)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_two_practices_with_client_c1_each_read_only_their_own_titles_figures_and_series(
    platform: Platform,
) -> None:
    p = platform
    created = await p.assignment.post(
        "/v1/assignments", json=daily_mood_log(CLIENT, title=A_TITLE), headers=THERAPIST_A
    )
    assert created.status_code == 201, created.text
    a = created.json()
    for day, mood in ((21, 3), (22, 5)):
        p.at(datetime(2026, 3, day, 19, 10, tzinfo=UTC))  # 20:10 in Berlin: the evening's window is open
        done = await p.assignment.post(
            f"/v1/assignments/{a['id']}/occurrences/{evening(a, day)}/completion",
            json={"data": {"mood": mood}},
            headers=CLIENT_A,
        )
        assert done.status_code == 201, done.text
    b_body = daily_mood_log(CLIENT, title=B_TITLE)
    b_body["schedule"]["starts_at"] = "2026-03-23T20:00:00"
    created_b = await p.assignment.post("/v1/assignments", json=b_body, headers=THERAPIST_B)
    assert created_b.status_code == 201, created_b.text
    p.at(datetime(2026, 3, 23, 12, tzinfo=UTC))
    await p.caught_up()

    for who in (THERAPIST_A, CLIENT_A):
        mine = await figures(p, who)
        assert [x["title"] for x in mine["assignments"]] == [A_TITLE]
        assert mine["overall"]["done"] == 2
        series = mine["assignments"][0]["series"]
        assert [(s["metric"], [pt["mean"] for pt in s["points"]]) for s in series] == [("mood", [3, 5])]
        assert B_TITLE not in json.dumps(mine)
    for who in (THERAPIST_B, CLIENT_B):
        theirs = await figures(p, who)
        assert [x["title"] for x in theirs["assignments"]] == [B_TITLE]
        assert theirs["overall"]["done"] == 0
        assert theirs["assignments"][0]["series"] == []
        assert A_TITLE not in json.dumps(theirs)
        assert a["id"] not in json.dumps(theirs)


async def test_thresholds_and_summaries_of_one_practice_never_reach_the_other(platform: Platform) -> None:
    p = platform
    for therapist, title in ((THERAPIST_A, A_TITLE), (THERAPIST_B, B_TITLE)):
        r = await p.assignment.post("/v1/assignments", json=daily_mood_log(CLIENT, title=title), headers=therapist)
        assert r.status_code == 201, r.text
    p.at(datetime(2026, 3, 23, 12, tzinfo=UTC))
    await p.caught_up()

    rules = {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]}
    put = await p.insights.put(f"/v1/clients/{CLIENT}/thresholds", json=rules, headers=THERAPIST_A)
    assert put.status_code == 200, put.text
    b_rules = await p.insights.get(f"/v1/clients/{CLIENT}/thresholds", headers=THERAPIST_B)
    assert (b_rules.status_code, b_rules.json()["rules"]) == (200, [])
    a_rules = await p.insights.get(f"/v1/clients/{CLIENT}/thresholds", headers=THERAPIST_A)
    assert a_rules.json()["rules"] == rules["rules"]

    # The same therapist sub and Idempotency-Key in both practices: B must get its own summary, not A's replayed.
    key = {"Idempotency-Key": "summary-1"}
    made_a = await p.insights.post(f"/v1/clients/{CLIENT}/summaries", headers={**THERAPIST_A, **key})
    made_b = await p.insights.post(f"/v1/clients/{CLIENT}/summaries", headers={**THERAPIST_B, **key})
    assert (made_a.status_code, made_b.status_code) == (201, 201), made_b.text
    assert made_a.json()["practice_id"] == "practice-a"
    assert made_b.json()["practice_id"] == "practice-b"
    assert [x["title"] for x in made_b.json()["assignments"]] == [B_TITLE]
    listed_b = await p.insights.get(f"/v1/clients/{CLIENT}/summaries", headers=THERAPIST_B)
    assert [s["summary_id"] for s in listed_b.json()["items"]] == [made_b.json()["summary_id"]]
    other = await p.insights.get(f"/v1/summaries/{made_a.json()['summary_id']}", headers=THERAPIST_B)
    assert other.status_code == 404
    unknown = await p.insights.get("/v1/clients/c-2/figures", headers=THERAPIST_A)
    assert unknown.status_code == 404
