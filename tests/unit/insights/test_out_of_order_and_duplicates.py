"""Late, early, repeated and reordered events: each resolution counts once, nothing is dropped."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from homework_insights.domain import UnappliableEvent
from homework_shared.events import HomeworkEvent
from homework_shared.events.values import Barrier
from tests.unit.insights.builders import Assignment, Harness, daily, env, utc

START = datetime(2026, 3, 21, 20, 0)
CREATED = utc(2026, 3, 20, 9)


def day(n: int) -> datetime:
    return datetime(2026, 3, n, 20, 0)


async def test_a_completion_before_its_assignment_is_held_then_applied() -> None:
    a = Assignment("asg-1", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.done(day(21)), a.reminder(day(22)))
    assert len(h.store.collections["held_events"]) == 2
    await h.apply(a.created(CREATED))
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"]) == (2, 1)
    assert h.store.collections["held_events"] == {}


async def test_a_redelivered_event_and_a_second_resolution_count_once() -> None:
    a = Assignment("asg-1", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    completion = env(a.done(day(21)))
    await h.apply(a.created(CREATED), completion, a.done(day(21), after=timedelta(minutes=20)), a.skipped(day(21)))
    await h.apply(a.missed(day(22)), a.missed(day(22)))
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"], f["skipped"], f["missed"]) == (2, 1, 0, 1)
    assert f["reminders"]["missed_reported"] == 1


async def test_a_late_completion_after_missed_counts_as_done_and_late() -> None:
    a = Assignment("asg-1", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(CREATED), a.done(day(21)), a.missed(day(22)))
    assert (await h.assignment("asg-1"))["streak"] == {"current": 0, "longest": 1}
    await h.apply(a.done(day(22), after=timedelta(hours=5), late=True))
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"], f["missed"], f["late"]) == (2, 2, 0, 1)
    assert f["streak"] == {"current": 2, "longest": 2}


async def test_a_duplicate_assignment_created_with_another_event_id_is_ignored() -> None:
    a = Assignment("asg-1", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(CREATED), a.done(day(21)), a.created(CREATED))
    assert (await h.assignment("asg-1"))["done"] == 1


async def test_an_occurrence_of_another_assignment_is_refused_with_a_clear_error() -> None:
    a = Assignment("asg-1", daily(START, 14))
    b = Assignment("asg-2", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(CREATED), b.created(CREATED))
    wrong = a.done(day(21)).model_copy(update={"assignment_id": "asg-2"})
    with pytest.raises(UnappliableEvent, match="not of assignment asg-2"):
        await h.apply(wrong)


async def test_an_event_about_another_clients_assignment_is_refused() -> None:
    a = Assignment("asg-1", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    await h.apply(a.created(CREATED))
    with pytest.raises(UnappliableEvent, match="another client"):
        await h.apply(a.done(day(21)).model_copy(update={"client_id": "someone-else"}))


def _interleavings(first: list[Any], second: list[Any], rng: random.Random) -> list[Any]:
    """A random merge that keeps each list's own order (two Kafka topics, one consumer)."""
    out, i, j = [], 0, 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and rng.random() < 0.5):
            out.append(first[i])
            i += 1
        else:
            out.append(second[j])
            j += 1
    return out


async def test_figures_do_not_depend_on_how_the_two_topics_interleave() -> None:
    a = Assignment("asg-1", daily(START, 20))
    assignment_stream: list[HomeworkEvent] = [
        a.created(CREATED),
        a.done(day(21), quality=7),
        a.skipped(day(22), Barrier.TOO_HARD),
        a.paused(utc(2026, 3, 24, 12)),
        a.resumed(utc(2026, 3, 25, 12)),
        a.done(day(25), percent=40),
        a.done(day(26)),
        a.done(day(23), after=timedelta(hours=4), late=True),
        a.revised(utc(2026, 3, 27, 12), daily(datetime(2026, 3, 28, 9, 0), 6)),
        a.done(datetime(2026, 3, 28, 9, 0)),
    ]
    reminder_stream: list[HomeworkEvent] = [
        a.reminder(day(21)),
        a.reminder(day(22)),
        a.missed(day(22)),
        a.reminder(day(23)),
        a.missed(day(23)),
        a.reminder(day(26), after=timedelta(minutes=5)),
        a.missed(datetime(2026, 3, 29, 9, 0)),
    ]
    envs_a = [env(e) for e in assignment_stream]
    envs_r = [env(e) for e in reminder_stream]
    results = []
    for seed in range(12):
        h = Harness(now=utc(2026, 3, 31, 12))
        await h.apply(*_interleavings(envs_a, envs_r, random.Random(seed)))
        results.append(await h.figures())
    first = results[0]
    assert all(r == first for r in results[1:])
    f = first["assignments"][0]
    # Old schedule: 21, 22, 23 (pause voids the 24th and not the 25th, which opened after resuming) ... 26, 27 opened
    # before the revision; new schedule from the 28th 09:00: 28, 29, 30, 31? (31 09:00 has closed by 12:00).
    assert (f["due"], f["done"], f["partial"], f["skipped"]) == (9, 4, 1, 1)
    assert f["missed"] == 3


async def test_a_bad_held_event_does_not_block_its_assignment() -> None:
    a = Assignment("asg-1", daily(START, 14))
    h = Harness(now=utc(2026, 3, 23, 12))
    stranger = a.done(day(21)).model_copy(update={"client_id": "someone-else"})
    await h.apply(stranger, a.done(day(22)), a.created(CREATED))
    f = await h.assignment("asg-1")
    assert (f["due"], f["done"]) == (2, 1)
    assert h.store.collections["held_events"] == {}
