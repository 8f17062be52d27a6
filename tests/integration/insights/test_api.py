"""The HTTP API: who may see what (401/403/404), thresholds, summary periods, idempotent generation."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest

from homework_insights.rebuild import rebuild
from tests.conftest import unique
from tests.integration.insights.conftest import Service
from tests.unit.insights.builders import CLIENT, Assignment, daily, utc

CREATED = utc(2026, 3, 20, 9)


@pytest.fixture
async def known_client(service: Service) -> Service:
    a = Assignment("asg-api", daily(datetime(2026, 3, 21, 20, 0), 14))
    sent = await service.publish(a.created(CREATED), a.mood(datetime(2026, 3, 21, 20, 0), 2))
    await service.wait_applied(*sent)
    return service


async def test_without_a_valid_token_every_route_answers_401(known_client: Service) -> None:
    s = known_client
    for method, path in [
        ("GET", f"/v1/clients/{CLIENT}/figures"),
        ("PUT", f"/v1/clients/{CLIENT}/thresholds"),
        ("POST", f"/v1/clients/{CLIENT}/summaries"),
        ("GET", f"/v1/clients/{CLIENT}/summaries"),
        ("GET", "/v1/summaries/sum-x"),
        ("GET", "/v1/summaries/sum-x/html"),
    ]:
        r = await s.http.request(method, path)
        assert r.status_code == 401, (method, path)
        r = await s.http.request(method, path, headers={"Authorization": "Bearer not-a-jwt"})
        assert r.status_code == 401, (method, path)


async def test_a_client_sees_their_own_figures_without_flags_and_nobody_elses(known_client: Service) -> None:
    s = known_client
    own = await s.http.get(f"/v1/clients/{CLIENT}/figures", headers=s.auth("client", CLIENT))
    assert own.status_code == 200
    assert "flags" not in own.json()
    other = await s.http.get(f"/v1/clients/{CLIENT}/figures", headers=s.auth("client", "client-2"))
    assert other.status_code == 404
    therapist = await s.http.get(f"/v1/clients/{CLIENT}/figures", headers=s.auth())
    assert "flags" in therapist.json()


async def test_a_client_may_not_make_or_read_summaries_nor_set_thresholds(known_client: Service) -> None:
    s = known_client
    client = s.auth("client", CLIENT)
    assert (await s.http.post(f"/v1/clients/{CLIENT}/summaries", headers=client)).status_code == 403
    assert (await s.http.get(f"/v1/clients/{CLIENT}/summaries", headers=client)).status_code == 403
    body = {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]}
    assert (await s.http.put(f"/v1/clients/{CLIENT}/thresholds", json=body, headers=client)).status_code == 403


async def test_another_practice_gets_404_for_the_client_and_its_summaries(known_client: Service) -> None:
    s = known_client
    made = await s.http.post(f"/v1/clients/{CLIENT}/summaries", headers=s.auth())
    summary_id = made.json()["summary_id"]
    stranger = s.auth("therapist", "t-9", practice="practice-other")
    for path in (
        f"/v1/clients/{CLIENT}/figures",
        f"/v1/clients/{CLIENT}/summaries",
        f"/v1/summaries/{summary_id}",
        f"/v1/summaries/{summary_id}/html",
    ):
        r = await s.http.get(path, headers=stranger)
        assert r.status_code == 404, path
        assert r.json()["error"] in ("client_not_found", "summary_not_found")
    assert (await s.http.post(f"/v1/clients/{CLIENT}/summaries", headers=stranger)).status_code == 404
    assert (await s.http.get("/v1/clients/nobody/figures", headers=s.auth())).status_code == 404


async def test_thresholds_are_validated_stored_and_flag_the_next_rating(known_client: Service) -> None:
    s = known_client
    bad = {"rules": [{"metric": "happiness", "direction": "at_most", "value": 3}]}
    r = await s.http.put(f"/v1/clients/{CLIENT}/thresholds", json=bad, headers=s.auth())
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "body.rules.0.metric"
    good = {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]}
    r = await s.http.put(f"/v1/clients/{CLIENT}/thresholds", json=good, headers=s.auth())
    assert r.status_code == 200
    assert (await s.http.get(f"/v1/clients/{CLIENT}/thresholds", headers=s.auth())).json()["rules"] == good["rules"]
    a = Assignment("asg-api", daily(datetime(2026, 3, 21, 20, 0), 14))
    sent = await s.publish(a.mood(datetime(2026, 3, 22, 20, 0), 1))
    await s.wait_applied(*sent)
    flags = (await s.figures())["flags"]
    crossed = [f for f in flags if f["code"] == "rating_threshold_crossed"]
    assert [f["figures"]["value"] for f in crossed] == [1.0]
    report = await rebuild(s.settings, unique("rebuilt"), now=s.clock.now(), drop=True)
    assert report.exact, report.differences


async def test_a_summary_period_is_validated_and_a_retry_with_the_same_key_returns_the_same_summary(
    known_client: Service,
) -> None:
    s = known_client
    url = f"/v1/clients/{CLIENT}/summaries"
    bad = await s.http.post(url, json={"from": "2026-03-25T00:00:00Z", "to": "2026-03-24T00:00:00Z"}, headers=s.auth())
    assert bad.status_code == 422
    naive = await s.http.post(url, json={"from": "2026-03-25T00:00:00"}, headers=s.auth())
    assert naive.status_code == 422
    assert naive.json()["detail"][0]["field"] == "body.from"
    body = {"from": "2026-03-21T00:00:00Z", "to": "2026-03-27T00:00:00Z"}
    headers = {**s.auth(), "Idempotency-Key": "k-1"}
    first = await s.http.post(url, json=body, headers=headers)
    second = await s.http.post(url, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["summary_id"] == second.json()["summary_id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["first_day"] == "2026-03-21"
    listed = (await s.http.get(url, headers=s.auth())).json()
    assert len(listed["items"]) == 1


async def test_a_summary_answers_with_the_millisecond_timestamps_it_stores(known_client: Service) -> None:
    s = known_client
    s.clock.set(s.clock.now() + timedelta(microseconds=123_456))
    url = f"/v1/clients/{CLIENT}/summaries"
    body = {"from": "2026-03-21T00:00:00.987654Z", "to": "2026-03-27T00:00:00.000999Z"}
    made = await s.http.post(url, json=body, headers=s.auth())
    assert made.status_code == 201, made.text
    stored = await s.http.get(f"/v1/summaries/{made.json()['summary_id']}", headers=s.auth())
    assert stored.status_code == 200
    for name in ("generated_at", "period_start", "period_end"):
        assert made.json()[name] == stored.json()[name], name
    names = ("generated_at", "period_start", "period_end")
    assert [datetime.fromisoformat(made.json()[name]).microsecond for name in names] == [123_000, 987_000, 0]
    listed = (await s.http.get(url, headers=s.auth())).json()
    assert listed["items"][0]["generated_at"] == made.json()["generated_at"]


async def test_summaries_are_listed_newest_first_page_by_page_and_bad_pages_are_422(known_client: Service) -> None:
    s = known_client
    url = f"/v1/clients/{CLIENT}/summaries"
    made = []
    for _ in range(5):
        s.clock.set(s.clock.now() + timedelta(minutes=1))
        r = await s.http.post(url, headers=s.auth())
        assert r.status_code == 201, r.text
        made.append(r.json()["summary_id"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await s.http.get(url, params=params, headers=s.auth())
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 2
        seen += [item["summary_id"] for item in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    assert pages == 3
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "bm90LW91cnM"}, {"cursor": "!!"}):
        bad = await s.http.get(url, params=params, headers=s.auth())
        assert bad.status_code == 422, (params, bad.text)
    other_practice = await s.http.get(
        url, params={"cursor": cursor_of(made[0])}, headers=s.auth(practice="practice-other")
    )
    assert other_practice.status_code == 404


def cursor_of(summary_id: str) -> str:
    return base64.urlsafe_b64encode(summary_id.encode()).decode().rstrip("=")
