"""Events that arrive before their assignment are held, not parked, and applied once it is created."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homework_reminder.held import HELD
from homework_shared.dlq_replay import read_parked
from homework_shared.events import (
    AssignmentPaused,
    CompletionRecorded,
    CompletionStatus,
    HomeworkKind,
    encode,
    envelope,
)
from tests.conftest import unique, wait_for
from tests.integration.reminder.conftest import Deployment, at, counts, state_is


def completion(d: Deployment, assignment_id: str, day: int) -> CompletionRecorded:
    return CompletionRecorded(
        client_id=d.client_id,
        practice_id=d.practice,
        assignment_id=assignment_id,
        occurrence_id=f"{assignment_id}@2026-05-0{day}T20:00",
        local_start=datetime(2026, 5, day, 20, 0),
        opens_at=datetime.fromisoformat(f"2026-05-0{day}T18:00:00+00:00"),
        closes_at=datetime.fromisoformat(f"2026-05-0{day}T20:00:00+00:00"),
        completion_id=unique("cmp"),
        kind=HomeworkKind.MOOD_LOG,
        status=CompletionStatus.DONE,
        percent=100,
        completed_at=d.clock.now(),
    )


async def test_events_published_before_their_assignment_are_held_then_applied_once_when_it_is_created(
    deployment: Deployment,
) -> None:
    d = deployment
    app = await d.start()
    store = d.store(app)
    held = store.db[HELD]
    asg = d.created()  # daily at 20:00 Berlin, 2026-05-01 to 05-05, a reminder at each opening
    aid = asg.assignment_id

    # The later events first: a completion of the second evening (delivered twice), a pause from the third day,
    # and a pause of the same assignment id claimed by another practice.
    done = encode(envelope(completion(d, aid, 2), source="/homework/assignment", time=d.clock.now()))
    await d.publish_raw(done.value, done.headers, key=done.key)
    await d.publish_raw(done.value, done.headers, key=done.key)
    pause_at = d.clock.now() + at(2 * 24 + 4)  # 2026-05-03 12:00 UTC: the third evening on are paused
    await d.publish(
        AssignmentPaused(client_id=d.client_id, practice_id=d.practice, assignment_id=aid, paused_at=pause_at)
    )
    other = unique("practice")
    await d.publish(AssignmentPaused(client_id=d.client_id, practice_id=other, assignment_id=aid, paused_at=pause_at))
    await wait_for(counts(held, {}, 3), message="three events held (the redelivery once)")
    assert await store.plans.count_documents({"_id": aid}) == 0

    await d.publish(asg)
    await wait_for(lambda: state_is(store.occurrences, f"{aid}@2026-05-02T20:00", "completed"), message="completion")
    await wait_for(counts(store.occurrences, {"assignment_id": aid, "state": "void"}, 3), message="pause applied")
    assert await store.occurrences.count_documents({"assignment_id": aid, "state": "pending"}) == 1
    pending = await store.reminders.find({"assignment_id": aid, "state": "pending"}).to_list()
    assert [r["occurrence_id"] for r in pending] == [f"{aid}@2026-05-01T20:00"]
    reminders = await store.reminders.find({"assignment_id": aid}).to_list()
    assert sorted(r.get("cancel_reason") or "-" for r in reminders) == ["-"] + ["assignment_paused"] * 3 + ["completed"]

    # Released ones are gone; another practice's event for the same id is not applied and stays held.
    assert [h["practice_id"] for h in await held.find({}).to_list()] == [other]
    assert _value(app, "reminder_held_events_released_total") == 2
    assert _value(app, "reminder_held_events_total") == 3
    await d.applied_so_far(store)
    assert await read_parked(d.infra.kafka_bootstrap, d.dead_letter_topic) == [], "nothing parked"


async def test_held_events_are_bounded_by_a_ttl_index_of_held_event_ttl_s_which_follows_the_setting(
    deployment: Deployment,
) -> None:
    d = deployment
    app = await d.start(held_event_ttl_s=3600)
    held = d.store(app).db[HELD]
    assert (await held.index_information())["held_ttl"]["expireAfterSeconds"] == 3600
    await d.publish(
        AssignmentPaused(client_id=d.client_id, practice_id=d.practice, assignment_id="later", paused_at=d.clock.now())
    )
    [doc] = await wait_for(lambda: held.find({}).to_list(), message="held")
    assert abs((datetime.now(doc["held_at"].tzinfo) - doc["held_at"]).total_seconds()) < 60, "real time, for the TTL"
    await d.stop(app)
    app = await d.start(held_event_ttl_s=7200)
    assert (await d.store(app).db[HELD].index_information())["held_ttl"]["expireAfterSeconds"] == 7200


def _value(app: Any, name: str) -> float:
    value = app.state.metrics_registry.get_sample_value(name)
    return float(value or 0)
