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

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_reminder.config import ReminderSettings
from homework_reminder.domain import (
    RESOLVED,
    WAITING,
    CancelReason,
    ForeignResolution,
    OccurrenceState,
    Plan,
    PlannedReminder,
    ReminderState,
    Segment,
    StopReason,
    UnknownAssignment,
    expected_occurrences,
    planned_reminders,
    snoozed_until,
    void_reason,
)
from homework_reminder.metrics import ReminderMetrics
from homework_reminder.store import EPOCH, Doc, Store, finished_now
from homework_shared.clock import Clock
from homework_shared.errors import Conflict, NotFound
from homework_shared.events import (
    AssignmentCreated,
    AssignmentRevised,
    CompletionRecorded,
    HomeworkEvent,
    OccurrenceSkipped,
    ReminderCancelled,
    ReminderScheduled,
    ReminderSnoozed,
)
from homework_shared.outbox import Outbox
from homework_shared.schedule import Occurrence, occurrences, parse_occurrence_id

REVIVABLE: tuple[str, ...] = ("assignment_paused", "assignment_revised", "quiet_hours")
"""Cancellations a later change may undo; completion, skip and a closed window are final."""


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
        await self.store.occurrences.update_one(
            {"_id": e.occurrence_id},
            {
                "$set": {"state": state, "resolved_at": now},
                "$setOnInsert": {
                    k: v for k, v in occurrence_doc(occ, e.client_id, e.practice_id).items() if k != "state"
                },
            },
            upsert=True,
            session=session,
        )
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
        doc = await self.store.reminders.find_one({"_id": reminder_id}, session=session)
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
        change = {
            "state": ReminderState.PENDING,
            "due_at": until,
            "snoozed_until": until,
            "lease_until": EPOCH,
            "lease_owner": None,
        }
        await self.store.reminders.update_one(
            {"_id": reminder_id, "state": doc["state"]},
            {"$set": change, "$unset": {"claim_token": "", "finished_at": ""}},
            session=session,
        )
        if doc["state"] == ReminderState.FIRED:
            await self.store.count_pending(1, session)
        snoozed = doc | change
        event = ReminderSnoozed(**_ref(snoozed), snoozed_until=until, snoozed_at=now)
        await self.outbox.stage(session, event, time=now)
        return snoozed, clamped

    async def set_preferences(
        self, practice_id: str, client_id: str, fields: dict[str, Any], by: str, session: AsyncClientSession
    ) -> Doc:
        """Replace a client's preferences and reschedule their waiting reminders by them."""
        doc = {**fields, "practice_id": practice_id, "client_id": client_id, "updated_at": self.clock.now()}
        doc["updated_by"] = by
        await self.store.preferences.replace_one(
            {"practice_id": practice_id, "client_id": client_id}, doc, upsert=True, session=session
        )
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

        ``fresh``: the plan is new, so nothing is stored for it yet (no look-ups); if it turns out to
        exist after all, nothing is written.
        """
        now = self.clock.now()
        until = expanded_until
        if plan.state == "active":
            until = max(until, max(now, plan.created_at) + self.horizon)
        expected = list(expected_occurrences(plan, since=since, until=until))
        stored = {} if fresh else await self.store.occurrences_closing_after(plan.assignment_id, since, session)
        prefs = await self.store.preferences_of(plan.practice_id, plan.client_id, session)

        occ_ops: list[Any] = []
        wanted: dict[str, list[PlannedReminder]] = {}
        stop: dict[str, CancelReason] = {}
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
                    occ_ops.append(_set_state(oid, OccurrenceState.VOID, reason))
                    stop[oid] = reason
                continue
            if doc is None:
                occ_ops.append(InsertOne(occurrence_doc(occ, plan.client_id, plan.practice_id) | {"_id": oid}))
            elif doc["state"] != OccurrenceState.PENDING or doc["closes_at"] != occ.closes_at:
                occ_ops.append(_set_state(oid, OccurrenceState.PENDING, None, occ))
            wanted[oid] = planned_reminders(occ, segment, prefs)
        for oid, doc in stored.items():
            if oid not in seen and doc["state"] == OccurrenceState.PENDING:
                occ_ops.append(_set_state(oid, OccurrenceState.VOID, "assignment_revised"))
                stop[oid] = "assignment_revised"

        exhausted = plan.state == "active" and _nothing_after(plan, until)
        if fresh and not await self.store.insert_plan(plan, until, exhausted, session):
            return  # created before (the same assignment in another event): nothing to do
        events: list[HomeworkEvent] = []
        if occ_ops:
            await self.store.occurrences.bulk_write(occ_ops, ordered=False, session=session)
        if wanted or stop:
            existing = [] if fresh else await self.store.reminders_of([*wanted, *stop], session)
            events += await self._write_reminders(plan, wanted, stop, existing, now, session)
        if not fresh:
            await self.store.save_plan(plan, until, exhausted, session)
        if events:
            await self.stage(session, events, now)

    async def _write_reminders(
        self,
        plan: Plan,
        wanted: dict[str, list[PlannedReminder]],
        stop: dict[str, CancelReason],
        existing: list[Doc],
        now: datetime,
        session: AsyncClientSession,
    ) -> list[HomeworkEvent]:
        by_id = {d["_id"]: d for d in existing}
        ops: list[Any] = []
        events: list[HomeworkEvent] = []
        to_cancel: list[tuple[Doc, CancelReason]] = []
        planned_ids: set[str] = set()
        adds = 0
        for planned in (p for plans in wanted.values() for p in plans):
            planned_ids.add(planned.reminder_id)
            doc = by_id.get(planned.reminder_id)
            op, event, waiting = self._reminder_change(plan, planned, doc, now)
            adds += waiting
            if op is not None:
                ops.append(op)
            if event is not None:
                events.append(event)
            if op is None and planned.due_at is None and doc is not None and doc["state"] in WAITING:
                to_cancel.append((doc, "quiet_hours"))
        for doc in existing:
            if doc["state"] not in WAITING or doc["_id"] in planned_ids:
                continue
            reason = stop.get(doc["occurrence_id"], "assignment_revised")
            to_cancel.append((doc, reason))
        if ops:
            await self.store.reminders.bulk_write(ops, ordered=False, session=session)
            await self.store.count_pending(adds, session)
        for reason in {r for _, r in to_cancel}:
            events += await self.cancel_reminders([d for d, r in to_cancel if r == reason], reason, now, session)
        return events

    def _reminder_change(
        self, plan: Plan, planned: PlannedReminder, doc: Doc | None, now: datetime
    ) -> tuple[Any, HomeworkEvent | None, int]:
        """The write and the event that bring one stored reminder (or its absence) to ``planned``, and 1 when
        that adds a waiting reminder (a new one, or a cancelled one revived: read in this transaction's
        snapshot, so the revival's filter matches)."""
        revivable = doc is None or (doc["state"] == ReminderState.CANCELLED and doc.get("cancel_reason") in REVIVABLE)
        if revivable and planned.planned_at < plan.not_before:
            return None, None, 0
        if planned.due_at is None:
            if doc is None:
                fields = reminder_doc(plan, planned, now) | {
                    "state": ReminderState.CANCELLED,
                    "cancel_reason": "quiet_hours",
                    "finished_at": finished_now(),
                }
                return InsertOne(fields), cancelled_event(fields, "quiet_hours", now), 0
            return None, None, 0
        fields = reminder_doc(plan, planned, now)
        if doc is None:
            return InsertOne(fields), scheduled_event(fields), 1
        if revivable:
            fields.pop("_id")
            fields.pop("created_at")
            revive = UpdateOne(
                {"_id": planned.reminder_id, "state": ReminderState.CANCELLED},
                {"$set": fields, "$unset": {"cancel_reason": "", "finished_at": "", "claim_token": ""}},
            )
            return revive, scheduled_event(fields | {"_id": planned.reminder_id}), 1
        if doc["state"] not in WAITING:
            return None, None, 0
        moved = doc["scheduled_due"] != planned.due_at or doc["channels"] != [c.value for c in planned.channels]
        if not moved and doc["title"] == plan.title:
            return None, None, 0
        change: dict[str, Any] = {"title": plan.title, "kind": plan.kind.value}
        if moved:
            change |= {k: fields[k] for k in ("due_at", "scheduled_due", "planned_at", "channels", "timezone")}
            change |= {"state": ReminderState.PENDING, "lease_until": EPOCH, "lease_owner": None}
        op = UpdateOne(
            {"_id": planned.reminder_id, "state": {"$in": list(WAITING)}},
            {"$set": change, "$unset": {"claim_token": ""}} if moved else {"$set": change},
        )
        return op, scheduled_event(doc | change) if moved else None, 0

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
        result = await self.store.reminders.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}, "state": {"$in": list(WAITING)}},
            {
                "$set": {
                    "state": ReminderState.CANCELLED,
                    "cancel_reason": reason,
                    "finished_at": finished_now(),
                    "lease_until": EPOCH,
                    "lease_owner": None,
                },
                "$unset": {"claim_token": ""},
            },
            session=session,
        )
        await self.store.count_pending(-result.modified_count, session)
        self.metrics.cancelled.labels(reason).inc(result.modified_count)
        return [cancelled_event(d, reason, now) for d in docs]


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


def _set_state(oid: str, state: OccurrenceState, reason: str | None, occ: Occurrence | None = None) -> UpdateOne:
    change: dict[str, Any] = {"state": state, "void_reason": reason}
    if occ is not None:
        change |= {"opens_at": occ.opens_at, "closes_at": occ.closes_at}
    return UpdateOne({"_id": oid, "state": {"$in": [OccurrenceState.PENDING, OccurrenceState.VOID]}}, {"$set": change})


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


def _ref(doc: Doc) -> dict[str, Any]:
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
        **_ref(doc), channels=doc["channels"], timezone=doc["timezone"], closes_at=doc["closes_at"]
    )


def cancelled_event(doc: Doc, reason: CancelReason, now: datetime) -> ReminderCancelled:
    return ReminderCancelled(**_ref(doc), reason=reason, cancelled_at=now)


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
