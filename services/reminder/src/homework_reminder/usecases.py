"""Use cases of the reminder schedule: keep each assignment's stored occurrences and reminders equal to its rules.

Every change (an assignment event, the horizon moving on, new preferences) ends in one
``reconcile``: the occurrences and reminders the plan calls for, from ``since`` to the horizon,
are compared with what is stored, and the differences are written together with their events
(``ReminderScheduled``, ``ReminderCancelled``) in the caller's transaction. Resolved occurrences
and fired reminders are never touched again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from homework_reminder.config import ReminderSettings
from homework_reminder.domain import (
    CancelReason,
    ForeignResolution,
    OccurrenceState,
    Plan,
    ReminderState,
    Segment,
    StopReason,
    UnknownAssignment,
    expected_occurrences,
    snoozed_until,
)
from homework_reminder.metrics import ReminderMetrics
from homework_reminder.reconciling import (
    ReminderChanges,
    cancelled_event,
    occurrence_changes,
    occurrence_doc,
    reminder_changes,
    reminder_ref,
)
from homework_reminder.store import Doc, Store
from homework_shared.clock import Clock
from homework_shared.errors import Conflict, NotFound
from homework_shared.events import (
    AssignmentCreated,
    AssignmentRevised,
    CompletionRecorded,
    HomeworkEvent,
    OccurrenceSkipped,
    ReminderSnoozed,
)
from homework_shared.outbox import Outbox
from homework_shared.schedule import Occurrence, occurrences, parse_occurrence_id


class Scheduler:
    """Keeps the stored schedule of every assignment in step with its events."""

    def __init__(
        self, store: Store, outbox: Outbox, clock: Clock, settings: ReminderSettings, metrics: ReminderMetrics
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.metrics = metrics
        self.horizon = timedelta(days=settings.horizon_days)

    # ------------------------------------------------------------------ assignment events

    async def assignment_created(self, e: AssignmentCreated, session: AsyncClientSession) -> None:
        """Store the new assignment's occurrences and reminders up to the horizon (once per assignment)."""
        plan = Plan(
            assignment_id=e.assignment_id,
            client_id=e.client_id,
            practice_id=e.practice_id,
            title=e.title,
            kind=e.kind,
            version=e.version,
            created_at=e.created_at,
            segments=(Segment(None, e.schedule, tuple(e.reminders)),),
            reminders_from=e.created_at,
        )
        await self.reconcile(plan, since=e.created_at, expanded_until=e.created_at, session=session, fresh=True)

    async def assignment_revised(self, e: AssignmentRevised, session: AsyncClientSession) -> None:
        """Let the new schedule govern occurrences opening at or after the revision."""
        plan, expanded = await self._plan(e.assignment_id, session)
        revised = plan.revised(e.revised_at, e.schedule, tuple(e.reminders), e.title, e.kind, e.version)
        if revised is not plan:
            await self.reconcile(revised, since=e.revised_at, expanded_until=expanded, session=session)

    async def assignment_paused(self, assignment_id: str, at: datetime, session: AsyncClientSession) -> None:
        """Void the occurrences open at ``at`` and after; cancel their reminders."""
        plan, expanded = await self._plan(assignment_id, session)
        paused = plan.paused(at)
        if paused is not plan:
            await self.reconcile(paused, since=at, expanded_until=expanded, session=session)

    async def assignment_resumed(self, assignment_id: str, at: datetime, session: AsyncClientSession) -> None:
        """Schedule again the occurrences opening at or after ``at``."""
        plan, expanded = await self._plan(assignment_id, session)
        resumed = plan.resumed(at)
        if resumed is not plan:
            await self.reconcile(resumed, since=at, expanded_until=expanded, session=session)

    async def assignment_stopped(
        self, assignment_id: str, at: datetime, reason: StopReason, session: AsyncClientSession
    ) -> None:
        """Cancelled or ended: void the occurrence open at ``at`` and every later one."""
        plan, expanded = await self._plan(assignment_id, session)
        stopped = plan.stopped(at, reason)
        if stopped is not plan:
            await self.reconcile(stopped, since=at, expanded_until=expanded, session=session)

    async def occurrence_resolved(self, e: CompletionRecorded | OccurrenceSkipped, session: AsyncClientSession) -> None:
        """A completion or skip: resolve the occurrence (a missed one becomes done, late) and cancel its reminders.

        One whose client or occurrence is not the assignment's raises ``ForeignResolution`` (parked): applied,
        it would silence another client's reminders, or an occurrence that is not of this assignment.
        """
        plan, _ = await self._plan(e.assignment_id, session)
        if e.client_id != plan.client_id or _assignment_of(e.occurrence_id) != e.assignment_id:
            raise ForeignResolution(
                f"{type(e).__name__} of client {e.client_id!r} for occurrence {e.occurrence_id!r} does not belong "
                f"to assignment {e.assignment_id!r} of client {plan.client_id!r}"
            )
        state = OccurrenceState.COMPLETED if isinstance(e, CompletionRecorded) else OccurrenceState.SKIPPED
        stored = await self.store.occurrence(e.occurrence_id, session)
        if stored is not None and stored["state"] in (OccurrenceState.COMPLETED, OccurrenceState.SKIPPED):
            return
        now = self.clock.now()
        occ = Occurrence(e.assignment_id, e.local_start, e.opens_at, e.closes_at)
        doc = occurrence_doc(occ, e.client_id, e.practice_id) | {"_id": e.occurrence_id}
        await self.store.resolve_occurrence(doc, state, now, session)
        reason: CancelReason = "completed" if state is OccurrenceState.COMPLETED else "skipped"
        waiting = await self.store.waiting_reminders_of([e.occurrence_id], session)
        events = await self.cancel_reminders(waiting, reason, now, session)
        await self.stage(session, events, now)

    async def _plan(self, assignment_id: str, session: AsyncClientSession) -> tuple[Plan, datetime]:
        found = await self.store.plan_and_horizon(assignment_id, session)
        if found is None:
            raise UnknownAssignment(f"no assignment {assignment_id!r} was created here")
        return found

    # ------------------------------------------------------------------ the horizon

    async def extend(self, assignment_id: str, session: AsyncClientSession) -> None:
        """Store the occurrences and reminders of an active plan up to ``now + horizon``."""
        plan, expanded = await self._plan(assignment_id, session)
        if plan.state == "active":
            await self.reconcile(plan, since=expanded, expanded_until=expanded, session=session)

    async def reapply_preferences(self, practice_id: str, client_id: str, session: AsyncClientSession) -> None:
        """Quiet hours, time zone or channels changed: reschedule the client's waiting reminders."""
        now = self.clock.now()
        for assignment_id in await self.store.plans_of_client(practice_id, client_id, session):
            plan, expanded = await self._plan(assignment_id, session)
            await self.reconcile(plan, since=now, expanded_until=expanded, session=session)

    # ------------------------------------------------------------------ client requests

    async def snooze(
        self, client_id: str, practice_id: str, reminder_id: str, minutes: int, session: AsyncClientSession
    ) -> tuple[Doc, bool]:
        """Fire a client's reminder again in ``minutes`` (bounded by the window); returns it and whether clamped."""
        doc = await self.store.reminder(reminder_id, session)
        if doc is None or doc["client_id"] != client_id or doc["practice_id"] != practice_id:
            raise NotFound("reminder_not_found", f"no reminder {reminder_id!r}")
        if doc["state"] == ReminderState.CANCELLED:
            raise Conflict("reminder_cancelled", f"the reminder was cancelled ({doc.get('cancel_reason')})")
        occ = await self.store.occurrence(doc["occurrence_id"], session)
        if occ is None or occ["state"] != OccurrenceState.PENDING:
            state = occ["state"] if occ else "unknown"
            raise Conflict("occurrence_not_pending", f"the reminder's occurrence is {state}; nothing to remind of")
        now = self.clock.now()
        until, clamped = snoozed_until(now, minutes, doc["closes_at"])
        snoozed = doc | await self.store.snooze(doc, until, session)
        event = ReminderSnoozed(**reminder_ref(snoozed), snoozed_until=until, snoozed_at=now)
        await self.outbox.stage(session, event, time=now)
        return snoozed, clamped

    async def set_preferences(
        self, practice_id: str, client_id: str, fields: dict[str, Any], by: str, session: AsyncClientSession
    ) -> Doc:
        """Replace a client's preferences and reschedule their waiting reminders by them."""
        doc = {**fields, "practice_id": practice_id, "client_id": client_id, "updated_at": self.clock.now()}
        doc["updated_by"] = by
        await self.store.replace_preferences(doc, session)
        await self.reapply_preferences(practice_id, client_id, session)
        return doc

    # ------------------------------------------------------------------ reconcile

    async def reconcile(
        self,
        plan: Plan,
        *,
        since: datetime,
        expanded_until: datetime,
        session: AsyncClientSession,
        fresh: bool = False,
    ) -> None:
        """Make the stored occurrences closing after ``since`` and their reminders match ``plan``; save the plan.

        The decisions are pure (``reconciling``); this reads what they compare and writes what they decide.
        ``fresh``: the plan is new, so nothing is stored for it yet (no look-ups); if it turns out to
        exist after all, nothing is written.
        """
        now = self.clock.now()
        until = expanded_until
        if plan.state == "active":
            until = max(until, max(now, plan.created_at) + self.horizon)
        expected = expected_occurrences(plan, since=since, until=until)
        stored = {} if fresh else await self.store.occurrences_closing_after(plan.assignment_id, since, session)
        prefs = await self.store.preferences_of(plan.practice_id, plan.client_id, session)
        changes = occurrence_changes(plan, expected, stored, prefs)
        exhausted = plan.state == "active" and _nothing_after(plan, until)
        if fresh and not await self.store.insert_plan(plan, until, exhausted, session):
            return  # created before (the same assignment in another event): nothing to do
        await self.store.write_occurrences(changes.occurrence_inserts, changes.occurrence_changes, session)
        if changes.touched_occurrences:
            existing = [] if fresh else await self.store.reminders_of(changes.touched_occurrences, session)
            await self.apply(reminder_changes(changes, plan, existing, now), now, session)
        if not fresh:
            await self.store.save_plan(plan, until, exhausted, session)

    async def apply(self, changes: ReminderChanges, now: datetime, session: AsyncClientSession) -> None:
        """Write decided reminder changes and stage their events, in the caller's transaction."""
        await self.store.schedule(changes.writes, session)
        events = list(changes.events)
        for reason, docs in changes.cancels.items():
            events += await self.cancel_reminders(docs, reason, now, session)
        if events:
            await self.stage(session, events, now)

    async def stage(self, session: AsyncClientSession, events: list[HomeworkEvent], now: datetime) -> None:
        """Stage events with fresh ids (no look-up for earlier copies: there can be none)."""
        records = [self.outbox.prepare(e, time=now) for e in events]
        await self.outbox.stage_prepared(session, records, check_existing=False)

    async def cancel_reminders(
        self, docs: list[Doc], reason: CancelReason, now: datetime, session: AsyncClientSession
    ) -> list[HomeworkEvent]:
        """Cancel waiting reminders (any lease is void); returns their ``ReminderCancelled`` events."""
        if not docs:
            return []
        cancelled = await self.store.cancel([d["_id"] for d in docs], reason, session)
        self.metrics.cancelled.labels(reason).inc(cancelled)
        return [cancelled_event(d, reason, now) for d in docs]


def _nothing_after(plan: Plan, until: datetime) -> bool:
    """Whether the plan's last schedule has no occurrence opening at or after ``until``."""
    last = plan.segments[-1]
    return not any(True for _ in islice(occurrences(plan.assignment_id, last.schedule, start=until), 1))


def _assignment_of(occurrence_id: str) -> str | None:
    """The assignment an occurrence id names (None when it is not an occurrence id)."""
    try:
        return parse_occurrence_id(occurrence_id)[0]
    except ValueError:
        return None
