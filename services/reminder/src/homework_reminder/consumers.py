"""The consumer of the assignment stream: each event, applied once in the consumer's transaction.

``Runtime.consume`` gives the idempotent consumer (own group, dedupe on the event id in the same
transaction, commit after processing, bounded retries then the dead-letter topic). An event about
an assignment not created here yet is held (``held.py``) and applied in the transaction that
creates it; a completion or skip whose client or occurrence is not its assignment's raises
``ForeignResolution``: retried, then parked with the reason.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from homework_reminder.domain import ForeignResolution, UnknownAssignment
from homework_reminder.held import HeldEvents
from homework_reminder.usecases import Scheduler
from homework_shared import events
from homework_shared.consumer import Apply
from homework_shared.observability import trace_context


def assignment_events(scheduler: Scheduler, held: HeldEvents) -> Apply:
    """The apply function for ``rt.consume(["assignment"], ...)``."""

    async def apply(env: events.Envelope[Any], session: AsyncClientSession) -> None:
        # Runs in the consumer's span of this record (EventConsumer): what dispatch stages carries its trace on.
        try:
            await dispatch(scheduler, env.data, session)
        except UnknownAssignment:
            if isinstance(env.data, events.AssignmentCreated):
                raise
            await held.hold(env, session)  # nothing was written before the plan was looked up
            return
        if isinstance(env.data, events.AssignmentCreated):
            await release_held(scheduler, held, env.data, session)
        # Whatever dispatch staged wakes the relay once the transaction commits (Outbox.stage_prepared).

    return apply


async def release_held(
    scheduler: Scheduler, held: HeldEvents, created: events.AssignmentCreated, session: AsyncClientSession
) -> None:
    """Apply the events that came before this assignment, in arrival order, in its creating transaction."""
    for env in await held.take(created.practice_id, created.assignment_id, session):
        try:
            with trace_context(env.traceparent, name="apply held event"):
                await dispatch(scheduler, env.data, session)
        except (ForeignResolution, UnknownAssignment) as exc:  # raised before anything is written
            held.report_dropped(env, exc)
            continue
        held.released.inc()


async def dispatch(scheduler: Scheduler, event: Any, session: AsyncClientSession) -> None:
    """Route one assignment-stream event to its use case."""
    match event:
        case events.AssignmentCreated():
            await scheduler.assignment_created(event, session)
        case events.AssignmentRevised():
            await scheduler.assignment_revised(event, session)
        case events.AssignmentPaused():
            await scheduler.assignment_paused(event.assignment_id, event.paused_at, session)
        case events.AssignmentResumed():
            await scheduler.assignment_resumed(event.assignment_id, event.resumed_at, session)
        case events.AssignmentCancelled():
            await scheduler.assignment_stopped(event.assignment_id, event.cancelled_at, "assignment_cancelled", session)
        case events.AssignmentEnded():
            await scheduler.assignment_stopped(event.assignment_id, event.ended_at, "assignment_ended", session)
        case events.CompletionRecorded() | events.OccurrenceSkipped():
            await scheduler.occurrence_resolved(event, session)
        case _:
            raise TypeError(f"the reminder service does not consume {type(event).__name__}")
