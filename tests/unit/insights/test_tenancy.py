"""Tenancy of the fold on the in-memory store: a client id is unique only within a practice."""

from __future__ import annotations

from datetime import datetime

import pytest

from homework_insights.domain import UnappliableEvent
from homework_insights.figures import UnknownCursor, client_figures
from homework_insights.store import client_key
from tests.unit.insights.builders import CLIENT, PRACTICE, Assignment, Harness, daily, utc

OTHER = "practice-2"
CREATED = utc(2026, 3, 20, 9)
EVENING = datetime(2026, 3, 21, 20, 0)


def two_practices() -> tuple[Assignment, Assignment]:
    mine = Assignment("asg-a", daily(EVENING, 14))
    theirs = Assignment("asg-b", daily(EVENING, 14), practice_id=OTHER)
    return mine, theirs


async def test_two_practices_with_the_same_client_id_keep_their_own_figures_titles_and_clients() -> None:
    h = Harness(utc(2026, 3, 23, 12))
    mine, theirs = two_practices()
    await h.apply(mine.created(CREATED, title="Practice A homework"), mine.mood(EVENING, 2))
    await h.apply(theirs.created(utc(2026, 3, 20, 10), title="Practice B homework"))

    a = await h.figures(CLIENT, practice_id=PRACTICE)
    b = await h.figures(CLIENT, practice_id=OTHER)
    assert [x["title"] for x in a["assignments"]] == ["Practice A homework"]
    assert [x["title"] for x in b["assignments"]] == ["Practice B homework"]
    assert a["overall"]["done"] == 1
    assert b["overall"]["done"] == 0
    assert [s["metric"] for s in a["assignments"][0]["series"]] == ["mood"]
    assert b["assignments"][0]["series"] == []
    client_a = await h.store.client(PRACTICE, CLIENT)
    client_b = await h.store.client(OTHER, CLIENT)
    assert client_a is not None
    assert client_b is not None
    assert client_a["practice_id"] == PRACTICE
    assert client_b["practice_id"] == OTHER
    assert client_a["first_assignment_at"] == CREATED


async def test_thresholds_and_days_are_per_practice() -> None:
    h = Harness(utc(2026, 3, 23, 12))
    mine, theirs = two_practices()
    await h.apply(mine.created(CREATED), theirs.created(CREATED))
    await h.store.put_thresholds(OTHER, CLIENT, {"rules": [{"metric": "mood", "direction": "at_most", "value": 3}]})
    await h.apply(mine.mood(EVENING, 2))
    assert await h.store.thresholds(PRACTICE, CLIENT) is None
    assert h.alerts == [], "practice B's threshold must not flag practice A's client"
    days_a = await h.store.days_of(PRACTICE, CLIENT, "2026-03-01", "2026-03-31")
    assert days_a
    assert all(d["practice_id"] == PRACTICE for d in days_a)
    assert await h.store.days_of(OTHER, CLIENT, "2026-03-01", "2026-03-31") == []


async def test_an_event_of_another_practice_for_an_assignment_is_refused() -> None:
    h = Harness(utc(2026, 3, 23, 12))
    mine, _ = two_practices()
    await h.apply(mine.created(CREATED))
    forged = Assignment("asg-a", daily(EVENING, 14), practice_id=OTHER)
    with pytest.raises(UnappliableEvent):
        await h.apply(forged.mood(EVENING, 9))
    with pytest.raises(UnappliableEvent):
        await h.apply(forged.created(CREATED))
    assert (await h.store.assignment("asg-a") or {})["practice_id"] == PRACTICE
    assert await h.store.client(OTHER, CLIENT) is None


def test_the_client_key_cannot_be_confused_by_separators_in_ids() -> None:
    assert client_key("a|b", "c") != client_key("a", "b|c")
    assert client_key("a%7Cb", "c") != client_key("a|b", "c")
    assert client_key("practice-1", "client-1") == "practice-1|client-1"


async def test_the_assignment_list_is_paged_oldest_first_while_the_overall_figures_cover_every_assignment() -> None:
    h = Harness(utc(2026, 3, 23, 12))
    made = [Assignment(f"asg-{i}", daily(EVENING, 14)) for i in range(5)]
    for i, a in enumerate(made):
        await h.apply(a.created(utc(2026, 3, 20, 9, i)), a.mood(EVENING, 5))
    everything = await h.figures()
    first = await client_figures(h.store, PRACTICE, CLIENT, h.now, with_flags=True, limit=2)
    second = await client_figures(
        h.store, PRACTICE, CLIENT, h.now, with_flags=True, limit=2, after=first["next_cursor"]
    )
    last = await client_figures(h.store, PRACTICE, CLIENT, h.now, with_flags=True, limit=2, after=second["next_cursor"])
    pages = [first, second, last]
    assert [[x["assignment_id"] for x in p["assignments"]] for p in pages] == [
        ["asg-0", "asg-1"],
        ["asg-2", "asg-3"],
        ["asg-4"],
    ]
    assert [p["next_cursor"] for p in pages] == ["asg-1", "asg-3", None]
    assert all(p["overall"] == everything["overall"] for p in pages)
    assert everything["overall"]["done"] == 5
    with pytest.raises(UnknownCursor):
        await client_figures(h.store, PRACTICE, CLIENT, h.now, with_flags=True, limit=2, after="asg-of-someone-else")


async def test_a_held_event_of_another_practice_is_dropped_when_the_assignment_arrives() -> None:
    h = Harness(utc(2026, 3, 23, 12))
    mine, _ = two_practices()
    forged = Assignment("asg-a", daily(EVENING, 14), practice_id=OTHER)
    await h.apply(forged.mood(EVENING, 9))
    assert len(h.store.collections["held_events"]) == 1
    await h.apply(mine.created(CREATED))
    assert h.store.collections["held_events"] == {}
    figures = await h.figures()
    assert figures["overall"]["done"] == 0
    assert figures["assignments"][0]["series"] == []
