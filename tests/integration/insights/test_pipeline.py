"""Events through Kafka, figures, a summary (JSON, HTML, event); redelivery changes nothing; rebuild equals live."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from homework_insights.rebuild import compare, rebuild
from homework_shared.events import HomeworkKind, decode, encode
from homework_shared.events.values import Barrier
from tests.conftest import unique, wait_for
from tests.integration.insights.conftest import Service
from tests.unit.insights.builders import CLIENT, Assignment, daily, utc

CREATED = utc(2026, 3, 20, 9)


def day(n: int, hour: int = 20) -> datetime:
    return datetime(2026, 3, n, hour, 0)


def history() -> tuple[list[Any], list[Any]]:
    """A week of one client's homework: the assignment stream and the reminder stream."""
    mood = Assignment("asg-mood", daily(day(21), 28, window=600))
    expo = Assignment("asg-expo", daily(day(21, 9), 28, window=600), kind=HomeworkKind.EXPOSURE)
    assignment_events = [
        mood.done(day(21)),  # before its assignment: held, then applied
        mood.created(CREATED),
        expo.created(CREATED),
        *(mood.mood(day(n), m, quality=6) for n, m in zip(range(22, 27), [3, 4, 5, 6, 7], strict=True)),
        expo.exposure(day(21, 9), 1, 50, 80, 40),
        expo.skipped(day(22, 9), Barrier.TOO_HARD),
        expo.skipped(day(23, 9), Barrier.TOO_HARD),
        expo.paused(utc(2026, 3, 24, 12)),
        expo.resumed(utc(2026, 3, 25, 6)),
        expo.exposure(day(25, 9), 1, 45, 65, 30),
        expo.exposure(day(26, 9), 2, 55, 75, 35),
    ]
    reminder_events = [
        mood.reminder(day(22)),
        mood.reminder(day(23), after=timedelta(minutes=30)),
        expo.missed(day(24, 9)).model_copy(update={"detected_at": utc(2026, 3, 24, 18, 1)}),  # void: paused
    ]
    return assignment_events, reminder_events


async def test_events_through_kafka_become_figures_then_a_stored_published_summary(service: Service) -> None:
    a_events, r_events = history()
    sent = await service.publish(*a_events, *r_events)
    await service.wait_applied(*sent)
    f = await service.figures()
    mood = next(a for a in f["assignments"] if a["assignment_id"] == "asg-mood")
    expo = next(a for a in f["assignments"] if a["assignment_id"] == "asg-expo")
    assert (mood["due"], mood["done"], mood["missed"]) == (6, 6, 0)
    assert mood["streak"] == {"current": 6, "longest": 6}
    assert (expo["due"], expo["done"], expo["skipped"], expo["missed"]) == (5, 3, 2, 0)  # the 24th is void
    assert {x["code"] for x in f["flags"]} == {"repeatedly_too_hard"}

    r = await service.http.post(f"/v1/clients/{CLIENT}/summaries", headers=service.auth())
    assert r.status_code == 201, r.text
    summary = r.json()
    assert summary["headline"]["due"] == 11
    assert summary["headline"]["done"] == 9
    got = await service.http.get(f"/v1/summaries/{summary['summary_id']}", headers=service.auth())
    assert got.json() == summary
    page = await service.http.get(f"/v1/summaries/{summary['summary_id']}/html", headers=service.auth())
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text
    assert "consider smaller steps" in page.text
    listed = (await service.http.get(f"/v1/clients/{CLIENT}/summaries", headers=service.auth())).json()
    assert [s["summary_id"] for s in listed["items"]] == [summary["summary_id"]]

    records = await service.read_topic(service.rt.topics.insights, lambda rs: _has(rs, summary["summary_id"]))
    events = [decode(r.headers, r.value).data for r in records]
    published = next(e for e in events if getattr(e, "summary_id", None) == summary["summary_id"])
    assert (published.occurrences_due, published.done, published.flags) == (11, 9, ["repeatedly_too_hard"])
    alerts = [e for e in events if getattr(e, "code", None) == "repeatedly_too_hard"]
    assert len(alerts) == 1


def _has(records: list[Any], summary_id: str) -> bool:
    return any(summary_id.encode() in (r.value or b"") for r in records)


async def test_redelivered_events_change_nothing_and_a_rebuild_equals_the_live_figures(service: Service) -> None:
    a_events, r_events = history()
    sent = await service.publish(*a_events, *r_events)
    await service.wait_applied(*sent)
    before = await service.figures()
    again = await service.publish(*sent)  # the same ids, as after a producer retry or a consumer crash
    marker = await service.publish(Assignment("asg-marker", daily(day(21), 3)).created(CREATED))
    await service.wait_applied(*marker)
    after = await service.figures()
    assert [a for a in after["assignments"] if a["assignment_id"] != "asg-marker"] == before["assignments"]
    assert len(again) == len(sent)

    report = await rebuild(service.settings, unique("rebuilt"), now=service.clock.now(), drop=True)
    assert report.exact, report.differences
    assert report.duplicates == len(sent)
    assert report.applied == len(sent) + 1


async def test_a_rebuild_finds_a_figure_that_differs(service: Service) -> None:
    a_events, _ = history()
    sent = await service.publish(*a_events)
    await service.wait_applied(*sent)
    fresh = unique("rebuilt")
    report = await rebuild(service.settings, fresh, now=service.clock.now())
    assert report.exact, report.differences
    await service.rt.db["days"].update_one({"_id": "asg-mood|2026-03-23"}, {"$inc": {"done": 1}})
    live, rebuilt = service.rt.db, service.rt.mongo[fresh]
    differences = await compare(live, rebuilt, service.clock.now())
    assert any("asg-mood" in d and "done" in d for d in differences)
    await service.rt.mongo.drop_database(fresh)


async def test_an_alert_is_raised_once_per_episode(service: Service) -> None:
    a = Assignment("asg-low", daily(day(21), 28, window=120))
    events = [a.created(CREATED), *(a.missed(day(n)) for n in range(21, 27))]
    sent = await service.publish(*events)
    await service.wait_applied(*sent)
    records = await service.read_topic(service.rt.topics.insights, lambda rs: len(rs) >= 2, timeout=20)
    codes = [decode(r.headers, r.value).data.code for r in records]
    assert sorted(codes) == ["early_low_adherence", "low_adherence"]
    assert service.app.state.insights_metrics.alerts._value.get() == 2


async def test_bad_records_go_to_the_dead_letter_topic_and_the_figures_stay_exact(service: Service) -> None:
    a = Assignment("asg-1", daily(day(21), 14))
    b = Assignment("asg-2", daily(day(21), 14))
    good = await service.publish(a.created(CREATED), b.created(CREATED), a.done(day(21)))
    await service.wait_applied(*good)
    rec = encode(good[-1])
    topic = service.rt.topics.assignment
    await service.publish_bytes(
        topic, b"{not json", [(k, v) for k, v in rec.headers if k != "ce_id"] + [("ce_id", b"x1")]
    )
    wrong = a.done(day(22)).model_copy(update={"assignment_id": "asg-2"})  # an occurrence of another assignment
    await service.publish(wrong)
    last = await service.publish(a.done(day(23)))
    await service.wait_applied(*last, timeout=90)
    dead = await service.read_topic(
        service.rt.topics.dead_letter(service.settings.service_name), lambda rs: len(rs) >= 2, timeout=30
    )
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert reasons == ["apply_failed", "invalid_json"]
    mine = next(x for x in (await service.figures())["assignments"] if x["assignment_id"] == "asg-1")
    assert mine["done"] == 2
    metrics = (await service.http.get("/metrics")).text
    assert "events_parked_total" in metrics
    assert "events_applied_total" in metrics


async def test_health_readiness_metrics_and_asyncapi(service: Service) -> None:
    assert (await service.http.get("/healthz")).status_code == 200
    ready = await wait_for(lambda: _ready(service), timeout=20)
    assert ready
    metrics = (await service.http.get("/metrics")).text
    for name in ("insights_summaries_generated_total", "insights_alerts_raised_total", "consumer_lag_events"):
        assert name in metrics
    doc = (await service.http.get("/asyncapi.json")).json()
    assert any(service.rt.topics.insights in str(c) for c in doc["channels"].values())


async def _ready(service: Service) -> bool:
    return (await service.http.get("/readyz")).status_code == 200
