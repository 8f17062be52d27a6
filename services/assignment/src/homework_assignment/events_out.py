"""The events this service publishes, built from the domain; the outbox carries them to Kafka.

The assignment service consumes only the erasure saga's events (``erasure.py``): it is the source of
truth the other services follow. Instructions, rationale and resources never leave it; notes and other
free text leave only when ``INCLUDE_FREE_TEXT`` is set, sealed with the client's key (``erasure.seal``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homework_assignment.domain import Assignment, AssignmentStatus, Resolution
from homework_shared import events

# What an assignment event carries of the content: never instructions, rationale or resources.
_PUBLISHED_CONTENT = ("kind", "title", "schedule", "target", "steps", "reminders", "allow_late_completion")


def _ids(a: Assignment) -> dict[str, Any]:
    return {"client_id": a.client_id, "practice_id": a.practice_id, "assignment_id": a.id}


def _snapshot(a: Assignment) -> dict[str, Any]:
    c = a.content
    return {
        **_ids(a),
        **{name: getattr(c, name) for name in _PUBLISHED_CONTENT},
        "therapist_id": a.therapist_id,
        "has_rationale": c.rationale is not None,
        "version": a.version,
    }


def assignment_created(a: Assignment) -> events.AssignmentCreated:
    """The new assignment, without instructions, rationale or resources."""
    return events.AssignmentCreated(**_snapshot(a), created_at=a.created_at)


def assignment_revised(a: Assignment, changed: list[str]) -> events.AssignmentRevised:
    """The whole new state, and which fields changed (resources, instructions and rationale included by name)."""
    return events.AssignmentRevised(**_snapshot(a), changed=changed, revised_at=a.updated_at)


def status_changed(a: Assignment, at: datetime) -> events.HomeworkEvent:
    """The event of the status ``a`` has just reached at ``at``."""
    ids = _ids(a)
    match a.status:
        case AssignmentStatus.PAUSED:
            return events.AssignmentPaused(**ids, paused_at=at)
        case AssignmentStatus.ACTIVE:
            return events.AssignmentResumed(**ids, resumed_at=at)
        case AssignmentStatus.CANCELLED:
            return events.AssignmentCancelled(**ids, cancelled_at=at)
        case AssignmentStatus.ENDED:
            assert a.end_reason in ("ended_by_therapist", "schedule_finished")
            return events.AssignmentEnded(**ids, ended_at=at, reason=a.end_reason)


def _occurrence(r: Resolution) -> dict[str, Any]:
    occ = r.occurrence
    return {
        **{name: getattr(r, name) for name in ("client_id", "practice_id", "assignment_id")},
        **{name: getattr(occ, name) for name in ("occurrence_id", "local_start", "opens_at", "closes_at")},
    }


def resolution_event(r: Resolution, kind: str) -> events.CompletionRecorded | events.OccurrenceSkipped:
    """``events.CompletionRecorded`` or ``events.OccurrenceSkipped`` for a resolution of an assignment of ``kind``."""
    if r.type == "skip":
        assert r.barrier is not None
        return events.OccurrenceSkipped(
            **_occurrence(r), skip_id=r.id, barrier=r.barrier, barrier_text=r.barrier_text, recorded_at=r.recorded_at
        )
    assert r.status is not None
    assert r.percent is not None
    assert r.completed_at is not None
    return events.CompletionRecorded(
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
