"""Tenancy in the reminder service: reminders and preferences are per (practice, client); an unknown client is 404."""

from __future__ import annotations

from homework_reminder.store import Store
from tests.conftest import unique, wait_for
from tests.integration.reminder.conftest import Deployment, bearer, counts


async def test_a_client_the_practice_does_not_know_gets_404_like_a_therapist_asking_for_them(
    deployment: Deployment,
) -> None:
    d = deployment
    app = await d.start()
    stranger = unique("client")
    client = bearer("client", stranger, d.practice)
    therapist = bearer("therapist", "t1", d.practice)
    async with d.http(app) as http:
        for who in (client, therapist):
            for method, path, body in (
                ("GET", f"/v1/clients/{stranger}/reminders", None),
                ("GET", f"/v1/clients/{stranger}/preferences", None),
                ("PUT", f"/v1/clients/{stranger}/preferences", {"timezone": "Europe/Berlin"}),
            ):
                r = await http.request(method, path, headers=who, json=body)
                assert (r.status_code, r.json()["error"]) == (404, "client_not_found"), (method, path, r.text)
        mine = await http.get("/v1/me/reminders", headers=client)
    assert (mine.status_code, mine.json()["reminders"]) == (200, [])


async def _scheduled(store: Store, practice: str, client_id: str, n: int) -> bool:
    return await counts(store.reminders, {"practice_id": practice, "client_id": client_id}, n)()


async def test_two_practices_with_one_client_id_see_only_their_own_reminders_and_preferences(
    deployment: Deployment,
) -> None:
    d = deployment
    app = await d.start()
    store = d.store(app)
    other = unique("practice")
    mine = d.created(title="A's homework")
    theirs = d.created(practice_id=other, title="B's homework")
    await d.publish(mine, theirs)
    await wait_for(lambda: _scheduled(store, d.practice, d.client_id, 5), message="A's reminders")
    await wait_for(lambda: _scheduled(store, other, d.client_id, 5), message="B's reminders")

    a_client, b_client = bearer("client", d.client_id, d.practice), bearer("client", d.client_id, other)
    async with d.http(app) as http:
        set_a = await http.put(
            f"/v1/clients/{d.client_id}/preferences", json={"timezone": "America/New_York"}, headers=a_client
        )
        assert set_a.status_code == 200, set_a.text
        for who, practice, assignment in ((a_client, d.practice, mine), (b_client, other, theirs)):
            for path in (f"/v1/clients/{d.client_id}/reminders", "/v1/me/reminders"):
                r = await http.get(path, headers=who)
                assert r.status_code == 200, r.text
                ids = {x["assignment_id"] for x in r.json()["reminders"]}
                assert ids == {assignment.assignment_id}, (practice, path)
            therapist = bearer("therapist", "t1", practice)
            seen = await http.get(f"/v1/clients/{d.client_id}/reminders", headers=therapist)
            assert {x["assignment_id"] for x in seen.json()["reminders"]} == {assignment.assignment_id}
        b_prefs = await http.get(f"/v1/clients/{d.client_id}/preferences", headers=b_client)
        a_prefs = await http.get(f"/v1/clients/{d.client_id}/preferences", headers=a_client)
    assert b_prefs.json()["timezone"] is None
    assert a_prefs.json()["timezone"] == "America/New_York"


async def test_the_upcoming_index_leads_with_the_practice(deployment: Deployment) -> None:
    d = deployment
    app = await d.start()
    indexes = await d.store(app).reminders.index_information()
    assert [k for k, _ in indexes["upcoming_in_practice"]["key"]][:2] == ["practice_id", "client_id"]
    assert "upcoming" not in indexes
