"""The reminder store's schedule in dictionaries, for unit tests of the pure reconcile step.

It applies :class:`homework_reminder.reconciling.ReminderChanges` with the filters the MongoDB
store's lifecycle steps use (``write_occurrences``, ``schedule``, ``cancel``), keeps the pending
count the way they do, and runs the two decisions with the same reads as ``Scheduler.reconcile``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from homework_reminder.domain import WAITING, OccurrenceState, Plan, Preferences, ReminderState, expected_occurrences
from homework_reminder.reconciling import ReminderChanges, cancelled_event, occurrence_changes, reminder_changes
from homework_reminder.store import Doc
from homework_shared.events import HomeworkEvent

HORIZON = timedelta(days=14)


@dataclass
class MemorySchedule:
    """One plan's stored occurrences and reminders, the pending count, and every event staged."""

    occurrences: dict[str, Doc] = field(default_factory=dict)
    reminders: dict[str, Doc] = field(default_factory=dict)
    pending: int = 0
    events: list[HomeworkEvent] = field(default_factory=list)

    def decide(
        self, plan: Plan, *, since: datetime, now: datetime, prefs: Preferences | None = None
    ) -> ReminderChanges:
        """Both pure steps over what is stored here, as ``Scheduler.reconcile`` reads it (nothing is written)."""
        until = max(now, plan.created_at) + HORIZON
        expected = expected_occurrences(plan, since=since, until=until)
        stored = {k: copy.deepcopy(d) for k, d in self.occurrences.items() if d["closes_at"] > since}
        changes = occurrence_changes(plan, expected, stored, prefs or Preferences())
        touched = set(changes.touched_occurrences)
        existing = [copy.deepcopy(d) for d in self.reminders.values() if d["occurrence_id"] in touched]
        return reminder_changes(changes, plan, existing, now)

    def reconcile(
        self, plan: Plan, *, since: datetime, now: datetime, prefs: Preferences | None = None
    ) -> ReminderChanges:
        """Decide, then write what was decided; returns the decision."""
        changes = self.decide(plan, since=since, now=now, prefs=prefs)
        self.apply(changes, now)
        return changes

    def apply(self, changes: ReminderChanges, now: datetime) -> None:
        for doc in changes.occurrence_inserts:
            assert doc["_id"] not in self.occurrences, f"occurrence {doc['_id']} inserted twice"
            self.occurrences[doc["_id"]] = copy.deepcopy(doc)
        for change in changes.occurrence_changes:
            occ = self.occurrences[change.occurrence_id]
            if occ["state"] in (OccurrenceState.PENDING, OccurrenceState.VOID):
                occ |= {"state": change.state, "void_reason": change.reason}
                if change.window is not None:
                    occ |= {"opens_at": change.window[0], "closes_at": change.window[1]}
        writes = changes.writes
        for doc in writes.inserts:
            assert doc["_id"] not in self.reminders, f"reminder {doc['_id']} inserted twice"
            self.reminders[doc["_id"]] = copy.deepcopy(doc)
            self.pending += doc["state"] == ReminderState.PENDING
        for doc in writes.revivals:
            stored = self.reminders[doc["_id"]]
            assert stored["state"] == ReminderState.CANCELLED, f"revived {doc['_id']} was {stored['state']}"
            stored |= {k: v for k, v in doc.items() if k != "created_at"}
            stored.pop("cancel_reason", None)
            self.pending += 1
        for reminder_id, fields, rescheduled in writes.moves:
            stored = self.reminders[reminder_id]
            if stored["state"] in WAITING:
                stored |= fields | ({"state": ReminderState.PENDING} if rescheduled else {})
        self.events += changes.events
        for reason, docs in changes.cancels.items():
            for doc in docs:
                stored = self.reminders[doc["_id"]]
                if stored["state"] in WAITING:
                    stored |= {"state": ReminderState.CANCELLED, "cancel_reason": reason}
                    self.pending -= 1
                self.events.append(cancelled_event(doc, reason, now))

    def waiting(self) -> list[Doc]:
        return [d for d in self.reminders.values() if d["state"] in WAITING]

    def resolve(self, occurrence_id: str, state: OccurrenceState) -> None:
        """A completion or skip, as ``Scheduler.occurrence_resolved`` writes it (its reminders cancelled)."""
        self.occurrences[occurrence_id]["state"] = state
        for doc in self.reminders.values():
            if doc["occurrence_id"] == occurrence_id and doc["state"] in WAITING:
                doc |= {"state": ReminderState.CANCELLED, "cancel_reason": "completed"}
                self.pending -= 1

    def fire(self, reminder_id: str) -> None:
        """The firing step: a waiting reminder becomes fired."""
        doc = self.reminders[reminder_id]
        assert doc["state"] in WAITING
        doc["state"] = ReminderState.FIRED
        self.pending -= 1
