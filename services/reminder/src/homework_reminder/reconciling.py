"""The pure half of reconciling a plan: what must change so that the stored schedule matches the plan's rules.

``Scheduler.reconcile`` (``usecases``) reads what is stored, asks :func:`occurrence_changes` which
occurrences to insert, void or reopen and which reminders each open occurrence should have, reads
the stored reminders of those occurrences, asks :func:`reminder_changes` which reminders to insert,
revive, move or cancel, and writes the result through the store's lifecycle steps. Nothing here
does I/O, so the decisions are unit-tested on documents in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from homework_reminder.domain import (
    RESOLVED,
    WAITING,
    CancelReason,
    OccurrenceState,
    Plan,
    PlannedReminder,
    Preferences,
    ReminderState,
    Segment,
    planned_reminders,
    void_reason,
)
from homework_reminder.store import EPOCH, Doc, OccurrenceChange, ReminderWrites, finished_now
from homework_shared.events import HomeworkEvent, ReminderCancelled, ReminderScheduled
from homework_shared.schedule import Occurrence

REVIVABLE: tuple[str, ...] = ("assignment_paused", "assignment_revised", "quiet_hours")
"""Cancellations a later change may undo; completion, skip and a closed window are final."""


@dataclass
class ReminderChanges:
    """What reconciling one plan changes, decided before anything is written.

    ``wanted`` and ``stop`` come from the occurrences (the reminders each open occurrence should
    have; the reason each newly void one stops); the rest from the reminders stored for them.
    """

    occurrence_inserts: list[Doc] = field(default_factory=list)
    occurrence_changes: list[OccurrenceChange] = field(default_factory=list)
    wanted: dict[str, list[PlannedReminder]] = field(default_factory=dict)
    stop: dict[str, CancelReason] = field(default_factory=dict)
    writes: ReminderWrites = field(default_factory=ReminderWrites)
    cancels: dict[CancelReason, list[Doc]] = field(default_factory=dict)
    events: list[HomeworkEvent] = field(default_factory=list)

    @property
    def touched_occurrences(self) -> list[str]:
        """The occurrences whose stored reminders the second step needs."""
        return [*self.wanted, *self.stop]


def occurrence_changes(
    plan: Plan, expected: Iterable[tuple[Occurrence, Segment]], stored: Mapping[str, Doc], prefs: Preferences
) -> ReminderChanges:
    """Step one: compare the occurrences ``plan`` calls for with those ``stored`` (closing after the same instant).

    Resolved occurrences are never touched; a pending one the plan voids, or no longer has, becomes void.
    """
    changes = ReminderChanges()
    seen: set[str] = set()
    for occ, segment in expected:
        oid = occ.occurrence_id
        seen.add(oid)
        doc = stored.get(oid)
        if doc is not None and doc["state"] in RESOLVED:
            continue
        reason = void_reason(plan, occ)
        if reason is not None:
            if doc is not None and doc["state"] == OccurrenceState.PENDING:
                changes.occurrence_changes.append(OccurrenceChange(oid, OccurrenceState.VOID, reason))
                changes.stop[oid] = reason
            continue
        if doc is None:
            changes.occurrence_inserts.append(occurrence_doc(occ, plan.client_id, plan.practice_id) | {"_id": oid})
        elif doc["state"] != OccurrenceState.PENDING or doc["closes_at"] != occ.closes_at:
            window = (occ.opens_at, occ.closes_at)
            changes.occurrence_changes.append(OccurrenceChange(oid, OccurrenceState.PENDING, None, window))
        changes.wanted[oid] = planned_reminders(occ, segment, prefs)
    for oid, doc in stored.items():
        if oid not in seen and doc["state"] == OccurrenceState.PENDING:
            changes.occurrence_changes.append(OccurrenceChange(oid, OccurrenceState.VOID, "assignment_revised"))
            changes.stop[oid] = "assignment_revised"
    return changes


def reminder_changes(changes: ReminderChanges, plan: Plan, existing: list[Doc], now: datetime) -> ReminderChanges:
    """Step two: bring the ``existing`` reminders of the touched occurrences to ``changes.wanted``; fills in
    ``writes``, ``cancels`` and the events of the writes (a cancellation's events come with its write)."""
    by_id = {d["_id"]: d for d in existing}
    planned_ids: set[str] = set()
    for planned in (p for plans in changes.wanted.values() for p in plans):
        planned_ids.add(planned.reminder_id)
        doc = by_id.get(planned.reminder_id)
        written = _write_one(changes, plan, planned, doc, now)
        if not written and planned.due_at is None and doc is not None and doc["state"] in WAITING:
            changes.cancels.setdefault("quiet_hours", []).append(doc)  # now inside quiet hours until it closes
    for doc in existing:
        if doc["state"] in WAITING and doc["_id"] not in planned_ids:
            reason = changes.stop.get(doc["occurrence_id"], "assignment_revised")
            changes.cancels.setdefault(reason, []).append(doc)
    return changes


def _write_one(changes: ReminderChanges, plan: Plan, planned: PlannedReminder, doc: Doc | None, now: datetime) -> bool:
    """Add the write (and event) that brings one stored reminder, or its absence, to ``planned``; False if none."""
    revivable = doc is None or (doc["state"] == ReminderState.CANCELLED and doc.get("cancel_reason") in REVIVABLE)
    if revivable and planned.planned_at < plan.not_before:
        return False  # it belongs to a time the client was not asked to do anything
    fields = reminder_doc(plan, planned, now)
    if planned.due_at is None:  # inside quiet hours until the window closes
        if doc is not None:
            return False
        fields |= {"state": ReminderState.CANCELLED, "cancel_reason": "quiet_hours", "finished_at": finished_now()}
        changes.writes.inserts.append(fields)
        changes.events.append(cancelled_event(fields, "quiet_hours", now))
        return True
    if doc is None:
        changes.writes.inserts.append(fields)
    elif revivable:
        changes.writes.revivals.append(fields)
    elif doc["state"] not in WAITING:
        return False
    else:
        return _move(changes, plan, planned, doc, fields)
    changes.events.append(scheduled_event(fields))
    return True


def _move(changes: ReminderChanges, plan: Plan, planned: PlannedReminder, doc: Doc, fields: Doc) -> bool:
    """A waiting reminder gets the plan's title, and a new due instant or channels if they changed."""
    moved = doc["scheduled_due"] != planned.due_at or doc["channels"] != [c.value for c in planned.channels]
    if not moved and doc["title"] == plan.title:
        return False
    change: dict[str, Any] = {"title": plan.title, "kind": plan.kind.value}
    if moved:
        change |= {k: fields[k] for k in ("due_at", "scheduled_due", "planned_at", "channels", "timezone")}
        changes.events.append(scheduled_event(doc | change))
    changes.writes.moves.append((planned.reminder_id, change, moved))
    return True


# ---------------------------------------------------------------------- documents and events


def occurrence_doc(
    occ: Occurrence, client_id: str, practice_id: str, state: OccurrenceState = OccurrenceState.PENDING
) -> Doc:
    """The stored form of an occurrence (without ``_id``)."""
    return {
        "assignment_id": occ.assignment_id,
        "client_id": client_id,
        "practice_id": practice_id,
        "local_start": occ.local_start.isoformat(timespec="minutes"),
        "opens_at": occ.opens_at,
        "closes_at": occ.closes_at,
        "state": state,
    }


def reminder_doc(plan: Plan, planned: PlannedReminder, now: datetime) -> Doc:
    """The stored form of a reminder that waits to fire at ``planned.due_at``."""
    occ = planned.occurrence
    return {
        "_id": planned.reminder_id,
        "occurrence_id": occ.occurrence_id,
        "assignment_id": plan.assignment_id,
        "client_id": plan.client_id,
        "practice_id": plan.practice_id,
        "title": plan.title,
        "kind": plan.kind.value,
        "timezone": planned.timezone,
        "opens_at": occ.opens_at,
        "closes_at": occ.closes_at,
        "planned_at": planned.planned_at,
        "scheduled_due": planned.due_at,
        "due_at": planned.due_at,
        "channels": [c.value for c in planned.channels],
        "state": ReminderState.PENDING,
        "lease_until": EPOCH,
        "lease_owner": None,
        "created_at": now,
    }


def reminder_ref(doc: Doc) -> dict[str, Any]:
    """The fields every reminder event carries, from a stored reminder."""
    return {
        "client_id": doc["client_id"],
        "practice_id": doc["practice_id"],
        "reminder_id": doc["_id"],
        "assignment_id": doc["assignment_id"],
        "occurrence_id": doc["occurrence_id"],
        "due_at": doc["due_at"] or doc["planned_at"],
    }


def scheduled_event(doc: Doc) -> ReminderScheduled:
    return ReminderScheduled(
        **reminder_ref(doc), channels=doc["channels"], timezone=doc["timezone"], closes_at=doc["closes_at"]
    )


def cancelled_event(doc: Doc, reason: CancelReason, now: datetime) -> ReminderCancelled:
    return ReminderCancelled(**reminder_ref(doc), reason=reason, cancelled_at=now)
