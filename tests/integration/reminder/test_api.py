"""The HTTP API: upcoming reminders, preferences (quiet hours reschedule at once), snooze bounded by the window,
the practice webhook; and the JWT rules: 401 without a valid token, 403 for a role that may never, 404 for
another client's or another practice's resource."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI

from homework_reminder.store import Store
from homework_shared.events import ReminderSent, ReminderSnoozed
from tests.conftest import unique, wait_for
from tests.integration.reminder.conftest import (
    HOUR_BEFORE_CLOSE,
    OPENS,
    T0,
    Deployment,
    assert_pending_gauge_exact,
    at,
    bearer,
    counts,
    of_type,
    state_is,
)


@pytest.fixture
async def running(deployment: Deployment) -> tuple[Deployment, FastAPI, Store, str]:
    """One replica with one assignment of the deployment's client scheduled (5 evenings, two reminders each)."""
    app = await deployment.start()
    store = deployment.store(app)
    asg = deployment.created(reminders=[OPENS, HOUR_BEFORE_CLOSE])
    await deployment.publish(asg)
    await wait_for(counts(store.reminders, {"state": "pending"}, 10), message="scheduled")
    return deployment, app, store, asg.assignment_id


def path_of(reminder_id: str) -> str:
    return f"/v1/reminders/{quote(reminder_id, safe='')}/snooze"


async def test_a_client_and_their_therapist_see_the_upcoming_reminders_soonest_first(
    running: tuple[Deployment, FastAPI, Store, str],
) -> None:
    d, app, _, aid = running
    async with d.http(app) as http:
        mine = await http.get("/v1/me/reminders", headers=bearer("client", d.client_id, d.practice))
        theirs = await http.get(
            f"/v1/clients/{d.client_id}/reminders?limit=3", headers=bearer("therapist", "t1", d.practice)
        )
    assert mine.status_code == 200, mine.text
    reminders = mine.json()["reminders"]
    assert len(reminders) == 10
    assert reminders[0]["reminder_id"] == f"{aid}@2026-05-01T20:00#opens+0"
    assert reminders[0]["due_local"] == "2026-05-01T20:00"
    assert reminders[1]["due_local"] == "2026-05-01T21:00"
    assert [r["due_at"] for r in reminders] == sorted(r["due_at"] for r in reminders)
    assert theirs.status_code == 200
    assert [r["reminder_id"] for r in theirs.json()["reminders"]] == [r["reminder_id"] for r in reminders[:3]]


async def test_quiet_hours_move_waiting_reminders_at_once_or_drop_them_when_the_window_closes_first(
    running: tuple[Deployment, FastAPI, Store, str],
) -> None:
    d, app, store, aid = running
    client = bearer("client", d.client_id, d.practice)
    async with d.http(app) as http:
        # 19:30-21:30 Berlin: the 20:00 reminder moves to 21:30, the 21:00 one too (window closes at 22:00).
        put = await http.put(
            f"/v1/clients/{d.client_id}/preferences",
            json={"quiet_hours": {"start": "19:30", "end": "21:30"}, "channels": ["push", "email"]},
            headers=client,
        )
        assert put.status_code == 200, put.text
        assert put.json()["quiet_hours"] == {"start": "19:30", "end": "21:30"}
        upcoming = (await http.get("/v1/me/reminders", headers=client)).json()["reminders"]
        assert {r["due_local"] for r in upcoming} == {f"2026-05-0{day}T21:30" for day in range(1, 6)}

        # 19:30-23:00: past the close, so every reminder is dropped; back to no quiet hours, all return.
        await http.put(
            f"/v1/clients/{d.client_id}/preferences",
            json={"quiet_hours": {"start": "19:30", "end": "23:00"}},
            headers=client,
        )
        assert (await http.get("/v1/me/reminders", headers=client)).json()["reminders"] == []
        await assert_pending_gauge_exact(store)
        doc = await store.reminders.find_one({"_id": f"{aid}@2026-05-01T20:00#opens+0"})
        assert doc is not None
        assert doc["cancel_reason"] == "quiet_hours"
        await http.put(f"/v1/clients/{d.client_id}/preferences", json={}, headers=client)
        restored = (await http.get("/v1/me/reminders", headers=client)).json()["reminders"]
        assert len(restored) == 10
        assert restored[0]["due_local"] == "2026-05-01T20:00"
        await assert_pending_gauge_exact(store)
        got = await http.get(f"/v1/clients/{d.client_id}/preferences", headers=bearer("therapist", "t1", d.practice))
        assert got.json()["quiet_hours"] is None


async def test_preferences_are_validated_naming_the_field(running: tuple[Deployment, FastAPI, Store, str]) -> None:
    d, app, _, _ = running
    client = bearer("client", d.client_id, d.practice)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"timezone": "Mars/Olympus_Mons"}, "body.timezone"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "body.quiet_hours.start"),
        ({"quiet_hours": {"start": "07:00", "end": "07:00"}}, "body.quiet_hours"),
        ({"channels": ["push", "push"]}, "body.channels"),
        ({"channels": ["pigeon"]}, "body.channels.0"),
        ({"colour": "blue"}, "body.colour"),
    ]
    async with d.http(app) as http:
        for body, field in bad:
            response = await http.put(f"/v1/clients/{d.client_id}/preferences", json=body, headers=client)
            assert response.status_code == 422, body
            assert field in [item["field"] for item in response.json()["detail"]], response.json()


async def test_a_snooze_fires_the_reminder_again_later_and_never_after_the_window(
    running: tuple[Deployment, FastAPI, Store, str],
) -> None:
    d, app, store, aid = running
    rid = f"{aid}@2026-05-01T20:00#opens+0"
    client = bearer("client", d.client_id, d.practice)
    d.clock.set(T0 + at(10))  # 20:00 Berlin: fires
    await wait_for(lambda: state_is(store.reminders, rid, "fired"), message="fired")
    async with d.http(app) as http:
        snoozed = await http.post(path_of(rid), json={"minutes": 15}, headers={**client, "Idempotency-Key": "k1"})
        assert snoozed.status_code == 200, snoozed.text
        assert snoozed.json()["clamped"] is False
        assert snoozed.json()["reminder"]["due_local"] == "2026-05-01T20:15"
        again = await http.post(path_of(rid), json={"minutes": 15}, headers={**client, "Idempotency-Key": "k1"})
        assert again.json() == snoozed.json()
        assert again.headers["Idempotent-Replayed"] == "true"

        d.clock.set(T0 + at(10.25))
        await wait_for(lambda: state_is(store.reminders, rid, "fired"), message="fired again")
        clamped = await http.post(path_of(rid), json={"minutes": 600}, headers=client)
        assert clamped.json()["clamped"] is True
        assert clamped.json()["reminder"]["due_local"] == "2026-05-01T21:59"

        d.clock.set(T0 + at(12.5))  # the window has closed: the occurrence is missed, no more snoozing
        await wait_for(lambda: state_is(store.occurrences, f"{aid}@2026-05-01T20:00", "missed"), message="missed")
        refused = await http.post(path_of(rid), json={"minutes": 5}, headers=client)
        assert refused.status_code == 409
        assert refused.json()["error"] in ("reminder_cancelled", "occurrence_not_pending")
        zero = await http.post(path_of(rid), json={"minutes": 0}, headers=client)
        assert zero.status_code == 422

    events = await d.reminder_events(until=lambda evs: len(of_type(evs, ReminderSnoozed)) >= 2)
    sent = [e for e in of_type(events, ReminderSent) if e.data.reminder_id == rid]
    assert [e.id for e in sent][:2] == [f"sent:{rid}@2026-05-01T18:00:00Z", f"sent:{rid}@2026-05-01T18:15:00Z"]
    assert len(of_type(events, ReminderSnoozed)) == 2
    await assert_pending_gauge_exact(store)


async def test_a_practice_admin_sets_and_removes_its_webhook_and_a_therapist_only_reads_it(
    running: tuple[Deployment, FastAPI, Store, str],
) -> None:
    d, app, store, _ = running

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]  # example.org, without asking a DNS server the test machine may not reach

    app.state.services.egress.resolve = public
    admin = bearer("admin", "a1", d.practice)
    therapist = bearer("therapist", "t1", d.practice)
    url = f"/v1/practices/{d.practice}/webhook"
    body = {"url": "https://example.org/hook", "secret": "s" * 32}
    async with d.http(app) as http:
        refused = await http.put(url, json=body, headers=therapist)
        assert refused.status_code == 403, refused.text
        assert await store.webhook(d.practice) is None
        put = await http.put(url, json=body, headers=admin)
        assert put.status_code == 200, put.text
        assert "secret" not in put.json()
        assert (await http.get(url, headers=therapist)).json()["url"] == "https://example.org/hook"
        short = await http.put(url, json={"url": "https://example.org/hook", "secret": "short"}, headers=admin)
        assert short.status_code == 422
        not_a_url = await http.put(url, json={"url": "ftp://x", "secret": "s" * 32}, headers=admin)
        assert not_a_url.status_code == 422
        assert (await http.delete(url, headers=therapist)).status_code == 403
        assert (await http.get(url, headers=therapist)).status_code == 200
        assert (await http.delete(url, headers=admin)).status_code == 204
        assert (await http.get(url, headers=therapist)).status_code == 404


async def test_the_jwt_rules_401_403_404(running: tuple[Deployment, FastAPI, Store, str]) -> None:
    d, app, _, aid = running
    rid = f"{aid}@2026-05-01T20:00#opens+0"
    me = d.client_id
    other_practice = unique("practice")
    client = bearer("client", me, d.practice)
    therapist = bearer("therapist", "t1", d.practice)
    cases: list[tuple[str, str, dict[str, str], dict[str, Any] | None, int]] = [
        # 401: no token, a bad token.
        ("GET", "/v1/me/reminders", {}, None, 401),
        ("GET", f"/v1/clients/{me}/reminders", {"Authorization": "Bearer not-a-jwt"}, None, 401),
        ("PUT", f"/v1/practices/{d.practice}/webhook", {}, {"url": "https://x.org", "secret": "s" * 20}, 401),
        # 403: a role that may never do this.
        ("GET", "/v1/me/reminders", therapist, None, 403),
        ("POST", path_of(rid), therapist, {"minutes": 5}, 403),
        ("PUT", f"/v1/practices/{d.practice}/webhook", client, {"url": "https://x.org", "secret": "s" * 20}, 403),
        # 404: another client's data, another practice's, a client unknown to the practice.
        ("GET", f"/v1/clients/{me}/reminders", bearer("client", "someone-else", d.practice), None, 404),
        ("GET", f"/v1/clients/{me}/reminders", bearer("therapist", "t9", other_practice), None, 404),
        ("GET", f"/v1/clients/{me}/preferences", bearer("client", "someone-else", d.practice), None, 404),
        ("GET", f"/v1/clients/{me}/preferences", bearer("therapist", "t9", other_practice), None, 404),
        ("PUT", f"/v1/clients/{me}/preferences", bearer("therapist", "t9", other_practice), {}, 404),
        ("GET", f"/v1/clients/{unique('nobody')}/reminders", therapist, None, 404),
        ("POST", path_of(rid), bearer("client", "someone-else", d.practice), {"minutes": 5}, 404),
        ("POST", path_of(rid), bearer("client", me, other_practice), {"minutes": 5}, 404),
        ("POST", path_of("no-such@2026-05-01T20:00#opens+0"), client, {"minutes": 5}, 404),
        ("GET", f"/v1/practices/{other_practice}/webhook", therapist, None, 404),
        ("PUT", f"/v1/practices/{d.practice}/webhook", therapist, {"url": "https://x.org", "secret": "s" * 20}, 403),
        ("DELETE", f"/v1/practices/{d.practice}/webhook", therapist, None, 403),
        (
            "PUT",
            f"/v1/practices/{other_practice}/webhook",
            bearer("admin", "a9", d.practice),
            {"url": "https://x.org", "secret": "s" * 20},
            404,
        ),
    ]
    async with d.http(app) as http:
        for method, path, headers, body, status in cases:
            response = await http.request(method, path, headers=headers, json=body)
            assert response.status_code == status, (method, path, response.status_code, response.text)
            assert "error" in response.json()
        assert (await http.get(f"/v1/clients/{me}/reminders", headers=client)).status_code == 200
        health = [await http.get(p) for p in ("/healthz", "/readyz", "/metrics", "/asyncapi.json")]
    assert [r.status_code for r in health] == [200, 200, 200, 200]
    metrics = health[2].text
    for name in ("reminders_pending", "reminders_fired_total", "reminder_lateness_seconds_bucket"):
        assert name in metrics
    for name in ("reminder_leases_taken_over_total", "webhook_failures_total", "occurrences_missed_total"):
        assert name in metrics
    channels = health[3].json()["channels"]
    assert any(c["address"] == d.topics.reminder for c in channels.values())
