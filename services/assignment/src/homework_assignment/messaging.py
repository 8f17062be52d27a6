"""The events this service publishes, built from the domain; the outbox carries them to Kafka.

The assignment service consumes only the erasure saga's events (``erasure.py``): it is the source of
truth the other services follow. Instructions, rationale and resources never leave it; notes and other
free text leave only when ``INCLUDE_FREE_TEXT`` is set, sealed with the client's key (``erasure.seal``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homework_assignment.domain import Assignment, AssignmentStatus, Resolution
from homework_shared.events import (
    AssignmentCancelled,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    CompletionRecorded,
    HomeworkEvent,
    OccurrenceSkipped,
)


def _snapshot(a: Assignment) -> dict[str, Any]:
    c = a.content
    return {
        "client_id": a.client_id,
        "practice_id": a.practice_id,
        "assignment_id": a.id,
        "therapist_id": a.therapist_id,
        "kind": c.kind,
        "title": c.title,
        "has_rationale": c.rationale is not None,
        "schedule": c.schedule,
        "target": c.target,
        "steps": c.steps,
        "reminders": c.reminders,
        "allow_late_completion": c.allow_late_completion,
        "version": a.version,
    }


def assignment_created(a: Assignment) -> AssignmentCreated:
    """The new assignment, without instructions, rationale or resources."""
    return AssignmentCreated(**_snapshot(a), created_at=a.created_at)


def assignment_revised(a: Assignment, changed: list[str]) -> AssignmentRevised:
    """The whole new state, and which fields changed (resources, instructions and rationale included by name)."""
    return AssignmentRevised(**_snapshot(a), changed=changed, revised_at=a.updated_at)


def status_changed(a: Assignment, at: datetime) -> HomeworkEvent:
    """The event of the status ``a`` has just reached at ``at``."""
    ids = {"client_id": a.client_id, "practice_id": a.practice_id, "assignment_id": a.id}
    match a.status:
        case AssignmentStatus.PAUSED:
            return AssignmentPaused(**ids, paused_at=at)
        case AssignmentStatus.ACTIVE:
            return AssignmentResumed(**ids, resumed_at=at)
        case AssignmentStatus.CANCELLED:
            return AssignmentCancelled(**ids, cancelled_at=at)
        case AssignmentStatus.ENDED:
            assert a.end_reason in ("ended_by_therapist", "schedule_finished")
            return AssignmentEnded(**ids, ended_at=at, reason=a.end_reason)


def _occurrence(r: Resolution) -> dict[str, Any]:
    occ = r.occurrence
    return {
        "client_id": r.client_id,
        "practice_id": r.practice_id,
        "assignment_id": r.assignment_id,
        "occurrence_id": occ.occurrence_id,
        "local_start": occ.local_start,
        "opens_at": occ.opens_at,
        "closes_at": occ.closes_at,
    }


def resolution_event(r: Resolution, kind: str) -> CompletionRecorded | OccurrenceSkipped:
    """``CompletionRecorded`` or ``OccurrenceSkipped`` for a resolution of an assignment of ``kind``."""
    if r.type == "skip":
        assert r.barrier is not None
        return OccurrenceSkipped(
            **_occurrence(r), skip_id=r.id, barrier=r.barrier, barrier_text=r.barrier_text, recorded_at=r.recorded_at
        )
    assert r.status is not None
    assert r.percent is not None
    assert r.completed_at is not None
    return CompletionRecorded(
        **_occurrence(r),
        completion_id=r.id,
        kind=kind,
        status=r.status,
        percent=r.percent,
        quality_rating=r.quality_rating,
        data=r.data,
        note=r.note,
        completed_at=r.completed_at,
        late=r.late,
    )
