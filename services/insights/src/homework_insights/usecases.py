"""Applying events to the figures: every event reads and writes a handful of documents, never history.

``apply_event(ctx, envelope)`` is the one entry point; the consumer calls it inside its
transaction (MongoStore bound to the session), the unit tests and the benchmark's bulk loader
with a MemoryStore, the rebuild with a fresh database. Same code everywhere.

*Due* is tallied from the schedule: each assignment keeps a cursor ``through`` such that every
occurrence that closed by then has been counted (when not void). Events move the cursor to
their own instant (never past the clock), so the walk costs the occurrences since the last
event. A pause, resumption, cancellation, end or revision that arrives after the cursor already
passed its instant recounts only the occurrences closing between the two (``retally``).
A resolution arriving before the cursor counted its occurrence counts it at once and is noted
in ``counted_early``, so the tally does not count it twice.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from homework_insights.alerts import raise_alerts
from homework_insights.domain import (
    ATTEMPTS_KEPT,
    EARLY_DAYS,
    Plan,
    Streak,
    UnappliableEvent,
    after_reminder,
    expansion,
    local_day,
    series_values,
)
from homework_insights.store import Doc
from homework_insights.unit_of_work import Context, Tracked, Work
from homework_shared.events import (
    EVENTS_BY_TYPE,
    TOLERANT,
    AssignmentCancelled,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    CompletionRecorded,
    CompletionStatus,
    Envelope,
    OccurrenceMissed,
    OccurrenceSkipped,
    ReminderSent,
    Schedule,
)
from homework_shared.events.values import Barrier
from homework_shared.occurrences import Pause, Segment, revised_segments
from homework_shared.schedule import parse_occurrence_id

log = logging.getLogger(__name__)

SCHEDULE = TypeAdapter(Schedule)
REMINDERS_KEPT = 20
_FOLDED = (
    AssignmentRevised,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentCancelled,
    AssignmentEnded,
    CompletionRecorded,
    OccurrenceSkipped,
    OccurrenceMissed,
    ReminderSent,
)

# ------------------------------------------------------------------ entry point


async def apply_event(ctx: Context, env: Envelope[Any]) -> None:
    """Fold one event into the figures (events the insights do not use are ignored)."""
    data = env.data
    if isinstance(data, AssignmentCreated):
        await create_assignment(ctx, data)
        return
    if not isinstance(data, _FOLDED):
        return
    doc = await ctx.store.assignment(data.assignment_id)
    if doc is None:
        await hold(ctx, env)
        return
    if (doc["practice_id"], doc["client_id"]) != (data.practice_id, data.client_id):
        raise UnappliableEvent(f"assignment {data.assignment_id} belongs to another client than event {env.id}")
    work = Work(ctx, doc)
    plan = plan_of(doc)
    if isinstance(data, AssignmentRevised):
        await revise(work, plan, data)
    elif isinstance(data, AssignmentPaused | AssignmentResumed | AssignmentCancelled | AssignmentEnded):
        await change_state(work, plan, data)
    elif isinstance(data, CompletionRecorded | OccurrenceSkipped):
        await record_resolution(work, plan, data)
    elif isinstance(data, OccurrenceMissed):
        await record_missed(work, plan, data)
    else:
        await record_reminder(work, plan, data)
    if not isinstance(data, ReminderSent):
        rated = isinstance(data, CompletionRecorded) and bool(series_values(data))
        await raise_alerts(work, instant_of(data), with_thresholds=rated)
    await work.flush()


def instant_of(event: Any) -> datetime:
    """The instant an event reports (when it happened, not when it was processed)."""
    for name in ("created_at", "revised_at", "paused_at", "resumed_at", "cancelled_at", "ended_at"):
        if (value := getattr(event, name, None)) is not None:
            return value  # type: ignore[no-any-return]
    for name in ("completed_at", "recorded_at", "detected_at", "sent_at"):
        if (value := getattr(event, name, None)) is not None:
            return value  # type: ignore[no-any-return]
    raise UnappliableEvent(f"{type(event).__name__} carries no instant")


# ------------------------------------------------------------------ plans


def plan_of(doc: Doc) -> Plan:
    """The plan (segments and pauses) an assignment document describes."""
    segments = tuple(Segment(s["from"], SCHEDULE.validate_python(s["schedule"])) for s in doc["segments"])
    pauses = tuple(Pause(s["start"], s.get("end")) for s in doc.get("stops", []))  # stored name, kept
    return Plan(doc["_id"], doc["created_at"], segments, pauses)


async def create_assignment(ctx: Context, event: AssignmentCreated) -> None:
    """Start the figures of a new assignment, then apply the events that were waiting for it."""
    if (known := await ctx.store.assignment(event.assignment_id)) is not None:
        if (known["practice_id"], known["client_id"]) != (event.practice_id, event.client_id):
            # Never let one practice's event take over another's record (the id is the assignment service's).
            raise UnappliableEvent(f"assignment {event.assignment_id} exists for another practice or client")
        return
    zone = event.schedule.timezone
    segments = [{"from": None, "schedule": event.schedule.model_dump(mode="json")}]
    plan = Plan(event.assignment_id, event.created_at, (Segment(None, event.schedule),))
    expansion(event.schedule)
    doc: Doc = {
        "_id": event.assignment_id,
        "client_id": event.client_id,
        "practice_id": event.practice_id,
        "therapist_id": event.therapist_id,
        "kind": event.kind.value,
        "title": event.title,
        "version": event.version,
        "created_at": event.created_at,
        "timezone": zone,
        "steps": [s.model_dump(mode="json") for s in event.steps],
        "allow_late_completion": event.allow_late_completion,
        "segments": segments,
        "stops": [],
        "state": "active",
        "ended_at": None,
        "active_until": plan.active_until(),
        "through": event.created_at,
        "counted_early": [],
        "early_until": (local_day(event.created_at, zone) + timedelta(days=EARLY_DAYS)).isoformat(),
        "totals": {},
        "early": {},
        "too_hard_since_revision": 0,
        "streak": Streak().to_doc(),
        "latest": {},
        "attempts": {},
        "flags": {},
    }
    await ctx.store.insert_assignment(doc)
    await ctx.store.update_client(
        event.practice_id,
        event.client_id,
        {
            "$set": {"timezone": zone},
            "$min": {"first_assignment_at": event.created_at},
        },
    )
    held = await ctx.store.held_for(event.assignment_id)
    for item in held:
        try:
            await apply_event(ctx, unheld(item))
        except UnappliableEvent as exc:
            # A bad event must not block its assignment: it is dropped (and logged), as parking would.
            log.warning("dropping held event %s (%s): %s", item["_id"], item["type"], exc)
    await ctx.store.release([item["_id"] for item in held])


async def revise(work: Work, old: Plan, event: AssignmentRevised) -> None:
    """A new schedule governs occurrences opening from ``revised_at``; ends a "too hard" episode."""
    a = work.a.doc
    if event.version <= a["version"]:
        return
    at = event.revised_at
    await catch_up(work, old, min(at, work.ctx.now))
    expansion(event.schedule)
    # Which stored segments stay: the shared rule (homework_shared.occurrences.revised_segments) decides.
    stored = [(doc, Segment(doc["from"], SCHEDULE.validate_python(doc["schedule"]))) for doc in a["segments"]]
    staying = {id(seg) for seg in revised_segments([seg for _, seg in stored], Segment(at, event.schedule))}
    kept = [doc for doc, seg in stored if id(seg) in staying]
    segments = [*kept, {"from": at, "schedule": event.schedule.model_dump(mode="json")}]
    new = Plan(old.assignment_id, old.created_at, plan_of({**a, "segments": segments}).segments, old.pauses)
    await retally(work, old, new, at)
    for name, value in (
        ("segments", segments),
        ("version", event.version),
        ("title", event.title),
        ("kind", event.kind.value),
        ("steps", [s.model_dump(mode="json") for s in event.steps]),
        ("allow_late_completion", event.allow_late_completion),
        ("timezone", event.schedule.timezone),
        ("too_hard_since_revision", 0),
        ("active_until", new.active_until()),
    ):
        work.a.set(name, value)


async def change_state(
    work: Work, old: Plan, event: AssignmentPaused | AssignmentResumed | AssignmentCancelled | AssignmentEnded
) -> None:
    """Pause, resume, cancel or end: occurrences open then (unresolved) become void, per the platform rules."""
    a = work.a.doc
    state = a["state"]
    pauses = [dict(s) for s in a["stops"]]  # stored name, kept
    if isinstance(event, AssignmentPaused):
        if state != "active":
            return
        at, new_state = event.paused_at, "paused"
        pauses.append({"start": at, "end": None})
    elif isinstance(event, AssignmentResumed):
        if state != "paused":
            return
        at, new_state = event.resumed_at, "active"
        open_pause = pauses[-1]
        open_pause["end"] = max(at, open_pause["start"])
        at = open_pause["start"]
    else:
        if state in ("cancelled", "ended"):
            return
        at = event.cancelled_at if isinstance(event, AssignmentCancelled) else event.ended_at
        new_state = "cancelled" if isinstance(event, AssignmentCancelled) else "ended"
        if state != "paused":
            pauses.append({"start": at, "end": None})
        work.a.set("ended_at", at)
    await catch_up(work, old, min(instant_of(event), work.ctx.now))
    new = Plan(old.assignment_id, old.created_at, old.segments, tuple(Pause(s["start"], s["end"]) for s in pauses))
    await retally(work, old, new, at)
    work.a.set("stops", pauses)
    work.a.set("state", new_state)
    work.a.set("active_until", new.active_until())


# ------------------------------------------------------------------ the tally of due occurrences


async def catch_up(work: Work, plan: Plan, until: datetime) -> None:
    """Count as due every occurrence that closed in ``(through, until]`` and is not void, then move the cursor."""
    a = work.a.doc
    through = a["through"]
    if until <= through:
        return
    early = {e["id"] for e in a["counted_early"]}
    for occ in plan.closing_between(through, plan.tally_limit(until)):
        if occ.occurrence_id not in early and plan.due_when_closed(occ):
            work.count(occ.occurrence_id, "due")
    work.a.set("through", until)
    kept = [e for e in a["counted_early"] if e["closes_at"] > until]
    if len(kept) != len(a["counted_early"]):
        work.a.set("counted_early", kept)


def pending_due(doc: Doc, plan: Plan, now: datetime) -> list[str]:
    """Occurrences the tally would count if it moved to ``now``: what a read adds, without writing."""
    through = doc["through"]
    if now <= through:
        return []
    early = {e["id"] for e in doc["counted_early"]}
    return [
        occ.occurrence_id
        for occ in plan.closing_between(through, plan.tally_limit(now))
        if occ.occurrence_id not in early and plan.due_when_closed(occ)
    ]


async def retally(work: Work, old: Plan, new: Plan, since: datetime) -> None:
    """Recount the already-tallied occurrences closing after ``since`` under the new plan (resolved ones stay due)."""
    through = work.a.doc["through"]
    if through <= since:
        return
    before = {o.occurrence_id: o for o in old.closing_between(since, through)}
    after = {o.occurrence_id: o for o in new.closing_between(since, through)}
    ids = sorted(set(before) | set(after))
    resolved = {o["_id"] for o in await work.ctx.store.occurrences(ids) if o.get("resolution")}
    for oid in ids:
        if oid in resolved:
            continue
        was = oid in before and old.due_when_closed(before[oid])
        now = oid in after and new.due_when_closed(after[oid])
        if was != now:
            work.count(oid, "due", 1 if now else -1)


# ------------------------------------------------------------------ occurrences


def _check_belongs(event: Any) -> None:
    try:
        owner, _ = parse_occurrence_id(event.occurrence_id)
    except ValueError as exc:
        raise UnappliableEvent(str(exc)) from exc
    if owner != event.assignment_id:
        raise UnappliableEvent(f"occurrence {event.occurrence_id} is not of assignment {event.assignment_id}")


async def record_resolution(work: Work, plan: Plan, event: CompletionRecorded | OccurrenceSkipped) -> None:
    """A completion or skip: counts once per occurrence (a second resolution is ignored)."""
    _check_belongs(event)
    oid = event.occurrence_id
    occ = await work.occurrence(oid)
    if occ.doc.get("resolution"):
        log.info("occurrence %s is already resolved; ignoring %s", oid, type(event).__name__)
        return
    await catch_up(work, plan, min(instant_of(event), work.ctx.now))
    a = work.a.doc
    scheduled = plan.occurrence(oid)
    opens = scheduled.opens_at if scheduled else event.opens_at
    closes = scheduled.closes_at if scheduled else event.closes_at
    tallied = scheduled is not None and closes <= a["through"] and plan.due_when_closed(scheduled)
    if not tallied:
        work.count(oid, "due")
        if closes > a["through"]:
            work.a.set("counted_early", [*a["counted_early"], {"id": oid, "closes_at": closes}])
    occ.set("opens_at", opens)
    occ.set("closes_at", closes)
    if isinstance(event, CompletionRecorded):
        record_completion(work, occ, event)
    else:
        work.count(oid, "skipped")
        work.count(oid, f"barriers.{event.barrier.value}")
        if event.barrier is Barrier.TOO_HARD:
            work.a.inc("too_hard_since_revision")
        occ.set("resolution", {"type": "skipped", "barrier": event.barrier.value, "at": event.recorded_at})
    await fold_streak(work, oid, opens, completed=isinstance(event, CompletionRecorded))


def record_completion(work: Work, occ: Tracked, event: CompletionRecorded) -> None:
    """Done or partial, late or not, the quality rating, the series values, the reminder effect."""
    oid = event.occurrence_id
    if event.status is CompletionStatus.DONE:
        work.count(oid, "done")
    else:
        work.count(oid, "partial")
        work.count(oid, "partial_percent", event.percent)
    if event.late:
        work.count(oid, "late")
    day = work.day(oid)
    for name, value in series_values(event).items():
        day.inc(f"series.{name}.n")
        day.inc(f"series.{name}.sum", value)
        day.min(f"series.{name}.min", value)
        day.max(f"series.{name}.max", value)
        work.a.inc(f"totals.series.{name}.n")
        work.a.inc(f"totals.series.{name}.sum", value)
        _set_latest(work, name, value, event.completed_at)
    data: Any = event.data
    if data is not None and data.kind == "exposure":
        attempt = {
            "at": event.completed_at,
            "occurrence_id": oid,
            "before": data.suds_before,
            "peak": data.suds_peak,
            "after": data.suds_after,
            "minutes": data.duration_minutes,
        }
        work.a.push(f"attempts.{data.step}", attempt, ATTEMPTS_KEPT)
    reminders = [r["at"] for r in occ.doc.get("reminders", [])]
    within = after_reminder(event.completed_at, reminders, work.ctx.reminder_hours)
    effect = "after_reminder" if within else "without_reminder"
    work.count(oid, effect)
    occ.set("reminder_effect", effect)
    occ.set(
        "resolution",
        {
            "type": "completed",
            "status": event.status.value,
            "percent": event.percent,
            "at": event.completed_at,
            "late": event.late,
            "quality": event.quality_rating,
        },
    )


def _set_latest(work: Work, name: str, value: float, at: datetime) -> None:
    latest = work.a.doc["latest"].get(name)
    if latest is None or at >= latest["at"]:
        work.a.set(f"latest.{name}", {"value": value, "at": at})


async def record_missed(work: Work, plan: Plan, event: OccurrenceMissed) -> None:
    """The reminder service saw the window close unresolved; a later late completion still counts."""
    _check_belongs(event)
    oid = event.occurrence_id
    occ = await work.occurrence(oid)
    if occ.doc.get("missed"):
        return
    occ.set("missed", True)
    work.count(oid, "missed_reported")
    await catch_up(work, plan, min(event.detected_at, work.ctx.now))
    if not occ.doc.get("resolution"):
        scheduled = plan.occurrence(oid)
        opens = scheduled.opens_at if scheduled else event.opens_at
        occ.set("opens_at", opens)
        occ.set("closes_at", scheduled.closes_at if scheduled else event.closes_at)
        await fold_streak(work, oid, opens, completed=False)


async def record_reminder(work: Work, plan: Plan, event: ReminderSent) -> None:
    """Remember when reminders were sent; reclassify a completion that came before the reminder's event did.

    It does not move the tally: a reminder changes no due figure, and leaving the assignment alone
    saves a write on the most frequent event.
    """
    _check_belongs(event)
    oid = event.occurrence_id
    occ = await work.occurrence(oid)
    sent = occ.doc.get("reminders", [])
    if any(r["id"] == event.reminder_id and r["at"] == event.sent_at for r in sent):
        return
    if not sent:
        work.count(oid, "reminded")
    occ.push("reminders", {"id": event.reminder_id, "at": event.sent_at}, REMINDERS_KEPT)
    resolution = occ.doc.get("resolution")
    if resolution and resolution["type"] == "completed":
        times = [r["at"] for r in occ.doc["reminders"]]
        within = after_reminder(resolution["at"], times, work.ctx.reminder_hours)
        effect = "after_reminder" if within else "without_reminder"
        was = occ.doc.get("reminder_effect")
        if was is not None and effect != was:
            work.count(oid, was, -1)
            work.count(oid, effect)
            occ.set("reminder_effect", effect)


async def fold_streak(work: Work, occurrence_id: str, opens: datetime, *, completed: bool) -> None:
    """Extend or break the streak; an outcome older than the last one rebuilds it from the outcomes kept."""
    streak = Streak.from_doc(work.a.doc["streak"])
    if not streak.record(opens, completed):
        outcomes: dict[str, tuple[datetime, bool]] = {}
        for o in await work.ctx.store.outcomes_of(work.assignment_id):
            resolution = o.get("resolution")
            if resolution or o.get("missed"):
                outcomes[o["_id"]] = (o["opens_at"], bool(resolution and resolution["type"] == "completed"))
        outcomes[occurrence_id] = (opens, completed)
        streak = Streak.rebuilt(outcomes.values())
    work.a.set("streak", streak.to_doc())


# ------------------------------------------------------------------ held events


async def hold(ctx: Context, env: Envelope[Any]) -> None:
    """Keep an event that came before its assignment; it is applied when the assignment arrives."""
    await ctx.store.hold(
        {
            "_id": env.id,
            "assignment_id": env.data.assignment_id,
            "practice_id": env.data.practice_id,
            "client_id": env.data.client_id,
            "seq": time.time_ns(),
            "type": env.type,
            "source": env.source,
            "time": env.time,
            "subject": env.subject,
            "data": env.data.model_dump(mode="json"),
        }
    )


def unheld(doc: Doc) -> Envelope[Any]:
    """The envelope a held document keeps."""
    data = EVENTS_BY_TYPE[doc["type"]].model_validate(doc["data"], context=TOLERANT)
    return Envelope(doc["_id"], doc["source"], doc["type"], doc["time"], doc["subject"], data)
