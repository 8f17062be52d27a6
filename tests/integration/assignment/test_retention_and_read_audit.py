"""Retention erases through the saga once a client's last activity is older than the practice's retention,
tested by moving the service's clock, not by waiting; and the read audit loses nothing on graceful shutdown.

Each test runs a service of its own (own database and topics) on the session's Kafka broker and
MongoDB server, so moving its clock years ahead erases nobody else's clients.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from homework_shared.erasure import pseudonym
from homework_shared.read_audit import READ_AUDIT
from tests.conftest import wait_for
from tests.infra import Infra
from tests.integration.assignment.conftest import T0, Service, bearer, daily_mood_log, service, settings_for

SCHEDULE = daily_mood_log("x")["schedule"]


def _settings(infra: Infra, **overrides: Any) -> Any:
    # The sweeper is driven by hand here (sweep()): its own loop waits an hour between sweeps.
    # The end sweeper too: ending an assignment whose schedule is over is activity, and would move it.
    return settings_for(
        infra.kafka_bootstrap,
        infra.mongodb_uri,
        retention_sweep_interval_s=3600,
        end_sweep_interval_s=3600,
        **overrides,
    )


async def _erasure(svc: Service, client_id: str) -> Any:
    r = await svc.http.get(f"/v1/clients/{client_id}/erasure", headers=svc.therapist)
    return r.json() if r.status_code == 200 else None


async def test_a_client_past_the_default_retention_is_erased_through_the_saga_and_no_one_earlier(
    infra: Infra,
) -> None:
    async with service(_settings(infra)) as svc:
        assert svc.app.state.retention.default_days == 2557  # 7 years
        await svc.create()
        recent_client = "c-recent"
        svc.clock.set(T0 + timedelta(days=400))
        r = await svc.http.post(
            "/v1/assignments",
            json=daily_mood_log(recent_client, schedule={**SCHEDULE, "starts_at": "2027-04-30T20:00:00"}),
            headers=svc.therapist,
        )
        assert r.status_code == 201, r.text

        svc.clock.set(T0 + timedelta(days=2556))
        assert await svc.app.state.retention.sweep() == 0  # a day before: kept
        assert await _erasure(svc, svc.client_id) is None

        svc.clock.set(T0 + timedelta(days=2558))
        assert await svc.app.state.retention.sweep() == 1  # only the client whose last activity is 7 years old
        erasure = await _erasure(svc, svc.client_id)
        assert erasure["reason"] == "retention"
        assert erasure["requested_by"] == "retention"
        assert await _erasure(svc, recent_client) is None
        assert await svc.app.state.retention.sweep() == 0  # a second sweep is a replay: nothing new

        refused = await svc.http.post("/v1/assignments", json=daily_mood_log(svc.client_id), headers=svc.therapist)
        assert refused.status_code == 410, refused.text
        assert refused.json()["error"] == "client_erased"

        async def assignment_part_done() -> Any:
            found = await _erasure(svc, svc.client_id)
            return found if found["services"]["assignment"]["state"] == "completed" else None

        done = await wait_for(assignment_part_done, timeout=60, message="the assignment service's erasure step")
        assert done["services"]["assignment"]["counts"]["assignments"] == 1
        mine = await svc.http.get(f"/v1/clients/{svc.client_id}/assignments", headers=svc.therapist)
        assert mine.json()["items"] == []


async def test_a_practice_retention_set_by_its_admin_is_enforced_and_others_keep_the_default(infra: Infra) -> None:
    async with service(_settings(infra)) as svc:
        admin = bearer("admin", "admin-1", svc.practice)
        r = await svc.http.put(f"/v1/practices/{svc.practice}/retention", json={"days": 30}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json() == {"practice_id": svc.practice, "days": 30, "default": False}
        other = await svc.http.put(f"/v1/practices/{svc.practice}/retention", json={"days": 30}, headers=svc.therapist)
        assert other.status_code == 403
        bad = await svc.http.put(f"/v1/practices/{svc.practice}/retention", json={"days": 0}, headers=admin)
        assert bad.status_code == 422
        await svc.create()
        other_practice = "practice-default"
        r = await svc.http.post(
            "/v1/assignments",
            json=daily_mood_log(svc.client_id),
            headers=bearer("therapist", "t2", other_practice),
        )
        assert r.status_code == 201, r.text

        svc.clock.set(T0 + timedelta(days=31))
        assert await svc.app.state.retention.sweep() == 1
        assert (await _erasure(svc, svc.client_id))["reason"] == "retention"
        r = await svc.http.get(
            f"/v1/clients/{svc.client_id}/erasure", headers=bearer("therapist", "t2", other_practice)
        )
        assert r.status_code == 404  # the same client id in the practice on the default 7 years: kept


async def test_reads_by_a_therapist_are_in_the_read_audit_after_a_graceful_shutdown(infra: Infra) -> None:
    settings = _settings(infra)
    async with service(settings) as svc:
        svc.app.state.read_audit.flush_interval_s = 3600  # nothing is written before the shutdown
        a = await svc.create()
        for path in (f"/v1/assignments/{a['id']}", f"/v1/clients/{svc.client_id}/assignments"):
            r = await svc.http.get(path, headers=svc.therapist)
            assert r.status_code == 200, r.text
        mine = await svc.http.get("/v1/me/assignments", headers=svc.client)  # the client's own: not audited
        assert mine.status_code == 200
        assert len(svc.app.state.read_audit._pending) == 2
    # The service has shut down: what was buffered is in the database.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        entries = await client[settings.mongodb_database][READ_AUDIT].find().sort("_id", 1).to_list()
    finally:
        await client.close()
    assert [e["what"] for e in entries] == [
        "GET /v1/assignments/{assignment_id}",
        "GET /v1/clients/{client_id}/assignments",
    ]
    assert all(e["client_id"] == svc.client_id and e["practice_id"] == svc.practice for e in entries)
    assert all(e["role"] == "therapist" and e["actor"] == "t1" and e["request_id"] for e in entries)
    assert entries[0]["params"] == {"assignment_id": a["id"]}
    assert pseudonym(svc.practice, svc.client_id) not in str(entries)
