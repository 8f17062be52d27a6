"""The figures' assignment list is paged and bounded: ``limit`` (at most 200) and an opaque ``cursor``."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.integration.insights.conftest import Service
from tests.unit.insights.builders import Assignment, daily, utc

CREATED = utc(2026, 3, 20, 9)
EVENING = datetime(2026, 3, 21, 20, 0)


async def test_a_client_with_many_assignments_is_listed_page_by_page_and_bad_pages_are_422(service: Service) -> None:
    s = service
    made = [Assignment(f"asg-page-{i}", daily(EVENING, 14)) for i in range(5)]
    sent = await s.publish(*(a.created(CREATED + timedelta(minutes=i)) for i, a in enumerate(made)))
    await s.wait_applied(*sent)
    other = Assignment("asg-page-other", daily(EVENING, 14), client_id="client-other")
    await s.wait_applied(*await s.publish(other.created(CREATED)))

    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await s.http.get("/v1/clients/client-1/figures", params=params, headers=s.auth())
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["assignments"]) <= 2
        assert body["overall"]["due"] == (await s.figures())["overall"]["due"]
        seen += [a["assignment_id"] for a in body["assignments"]]
        cursor = body["next_cursor"]
    assert seen == [a.assignment_id for a in made]
    assert cursor is None

    foreign = await s.http.get("/v1/clients/client-other/figures", params={"limit": 1}, headers=s.auth())
    assert foreign.json()["next_cursor"] is None
    for params, field in (
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "YXNnLXBhZ2Utb3RoZXI"}, "cursor"),  # base64url of "asg-page-other": another client's assignment
    ):
        r = await s.http.get("/v1/clients/client-1/figures", params=params, headers=s.auth())
        assert r.status_code == 422, (params, r.text)
        assert field in r.text
