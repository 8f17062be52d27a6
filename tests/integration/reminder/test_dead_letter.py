"""Bad input on the assignment stream: parked on the dead-letter topic with the reason, after bounded retries
for an event that cannot be applied; the consumer carries on and nothing already scheduled is lost. (An event of an
assignment not created yet is held instead: test_held_events.py.)"""

from __future__ import annotations

from datetime import datetime

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
from tests.integration.reminder.conftest import Deployment, counts


async def test_an_undecodable_event_is_parked_an_early_one_held_and_the_schedule_survives(
    deployment: Deployment,
) -> None:
    d = deployment
    app = await d.start()
    store = d.store(app)
    kept = d.created()
    await d.publish(kept)
    await wait_for(counts(store.reminders, {"assignment_id": kept.assignment_id}, 5), message="first schedule")

    good_headers = encode(envelope(d.created(), source="/homework/assignment")).headers
    await d.publish_raw(b"{not json", good_headers, key=d.client_id.encode())
    unknown = AssignmentPaused(
        client_id=d.client_id, practice_id=d.practice, assignment_id="never-created", paused_at=d.clock.now()
    )
    await d.publish(unknown)
    after = d.created()
    await d.publish(after)

    await wait_for(
        counts(store.reminders, {"assignment_id": after.assignment_id}, 5), timeout=30, message="consumer carried on"
    )
    parked = await read_parked(d.infra.kafka_bootstrap, d.dead_letter_topic)
    assert [dict(r.headers)["dlq_reason"] for r in parked] == [b"invalid_json"]
    assert await store.db[HELD].count_documents({"assignment_id": "never-created"}) == 1, "held, not parked"
    assert await store.reminders.count_documents({"assignment_id": kept.assignment_id, "state": "pending"}) == 5
    assert await store.plans.count_documents({}) == 2


async def test_a_completion_of_another_client_or_assignment_is_parked_and_silences_no_reminder(
    deployment: Deployment,
) -> None:
    """Found by the e2e poison test: such a completion used to mark the occurrence done and cancel its reminders."""
    d = deployment
    app = await d.start()
    store = d.store(app)
    kept = d.created()
    await d.publish(kept)
    await wait_for(counts(store.reminders, {"assignment_id": kept.assignment_id}, 5), message="first schedule")
    occurrence = f"{kept.assignment_id}@2026-05-01T20:00"

    def completion(client_id: str, occurrence_id: str) -> CompletionRecorded:
        return CompletionRecorded(
            client_id=client_id,
            practice_id=d.practice,
            assignment_id=kept.assignment_id,
            occurrence_id=occurrence_id,
            local_start=datetime(2026, 5, 1, 20, 0),
            opens_at=datetime.fromisoformat("2026-05-01T18:00:00+00:00"),
            closes_at=datetime.fromisoformat("2026-05-01T20:00:00+00:00"),
            completion_id=unique("cmp"),
            kind=HomeworkKind.MOOD_LOG,
            status=CompletionStatus.DONE,
            percent=100,
            completed_at=d.clock.now(),
        )

    await d.publish(completion("someone-else", occurrence), completion(d.client_id, "asg-other@2026-05-01T20:00"))
    after = d.created()
    await d.publish(after)

    await wait_for(
        counts(store.reminders, {"assignment_id": after.assignment_id}, 5), timeout=30, message="consumer carried on"
    )
    parked = await d.read(d.dead_letter_topic, until=lambda rs: len(rs) >= 2)
    assert [dict(r.headers)["dlq_reason"] for r in parked] == [b"apply_failed", b"apply_failed"]
    assert all(b"ForeignResolution" in dict(r.headers)["dlq_error"] for r in parked)
    assert await store.reminders.count_documents({"assignment_id": kept.assignment_id, "state": "pending"}) == 5
    assert (await store.occurrences.find_one({"_id": occurrence}) or {}).get("state") == "pending"
    assert await store.occurrences.count_documents({"_id": "asg-other@2026-05-01T20:00"}) == 0
