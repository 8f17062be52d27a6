"""HTTP routes under ``/v1``: thin; authorization here, rules in the domain, writes in the handlers.

Every route needs a bearer JWT. Therapists and admins work on the clients of their own practice;
a client reaches only their own assignments. Another practice's (or client's) assignment
answers 404, never 403, so ids cannot be probed. Every POST honours ``Idempotency-Key``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_assignment.domain import AssignmentStatus, invalid
from homework_assignment.models import (
    AssignmentCreate,
    AssignmentPage,
    AssignmentPublic,
    AssignmentRevise,
    AuditEntryPublic,
    AuditPage,
    CompletionCreate,
    Cursor,
    HistoryPage,
    OccurrenceList,
    OccurrencePublic,
    ResolutionPublic,
    RevisionPage,
    RevisionPublic,
    SkipCreate,
    decode_cursor,
)
from homework_assignment.resolutions import ResolutionWriter
from homework_assignment.usecases import AssignmentHandlers, StatusAction
from homework_shared.auth import ClientDep, PrincipalDep, TherapistDep
from homework_shared.cursors import encode_cursor
from homework_shared.http import ErrorAnswers, from_app_state
from homework_shared.idempotency import FingerprintedDep, IdempotencyKeyDep, caller_scope, respond_idempotently
from homework_shared.ids import OccurrenceIdPath, PathId, QueryId
from homework_shared.read_audit import audited
from homework_shared.service import Runtime

MAX_RANGE = timedelta(days=366)
DEFAULT_RANGE = timedelta(days=14)
# Instants a range may name: far enough from datetime's limits that the window and zone arithmetic
# around them cannot overflow (year 1 or 9999 was a 500).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

AssignmentId = PathId
OccurrenceId = OccurrenceIdPath
Limit = Annotated[int, Query(ge=1, le=200)]

answers = ErrorAnswers({404: "No such assignment visible to the caller"})
_errors = answers(403, 404)
_writes = answers(403, 404, 409, 410)
_writes_with_body = answers(400, 403, 404, 409, 410)

router = APIRouter(prefix="/v1", tags=["assignments"])


HandlersDep = Annotated[AssignmentHandlers, Depends(from_app_state("handlers"))]
WriterDep = Annotated[ResolutionWriter, Depends(from_app_state("resolutions"))]
Write = Callable[[AsyncClientSession], Awaitable[Any]]


async def idempotent(request: Request, caller: str, key: str | None, status: int, write: Write) -> JSONResponse:
    """Run ``write`` in one transaction with its remembered response (the outbox relay is woken after the commit)."""
    rt: Runtime = request.app.state.runtime
    return await respond_idempotently(rt.mongo, rt.db, request, caller, key, status, write)


# ---------------------------------------------------------------- therapists: assignments


@router.post("/assignments", status_code=201, response_model=AssignmentPublic, responses=_writes_with_body)
async def create_assignment(
    request: Request, body: AssignmentCreate, principal: TherapistDep, key: IdempotencyKeyDep, h: HandlersDep
) -> JSONResponse:
    """Assign homework to a client of the caller's practice; publishes ``AssignmentCreated``."""

    async def write(session: AsyncClientSession) -> Any:
        content = body.content(h.clock.now())
        a = await h.create_assignment(principal, body.client_id, content, session)
        return AssignmentPublic.of(a).model_dump(mode="json")

    return await idempotent(request, caller_scope(principal), key, 201, write)


@router.get(
    "/assignments/{assignment_id}", response_model=AssignmentPublic, responses=_errors, dependencies=[audited()]
)
async def get_assignment(assignment_id: AssignmentId, principal: PrincipalDep, h: HandlersDep) -> AssignmentPublic:
    """One assignment: its therapist's practice, or the client it is for."""
    return AssignmentPublic.of(await h.visible(principal, assignment_id))


@router.get(
    "/clients/{client_id}/assignments", response_model=AssignmentPage, responses=_errors, dependencies=[audited()]
)
async def list_client_assignments(
    client_id: PathId,
    principal: TherapistDep,
    h: HandlersDep,
    status: AssignmentStatus | None = None,
    limit: Limit = 50,
    cursor: Annotated[Cursor | None, Query()] = None,
) -> AssignmentPage:
    """A client's assignments in the caller's practice, newest first, paged."""
    items, last = await h.assignments_of(principal.practice_id, client_id, status, limit, decode_cursor(cursor))
    return AssignmentPage(items=[AssignmentPublic.of(a) for a in items], next_cursor=encode_cursor(last))


@router.post(
    "/assignments/{assignment_id}/revisions",
    status_code=201,
    response_model=RevisionPublic,
    responses=_writes_with_body,
)
async def revise_assignment(
    request: Request,
    assignment_id: AssignmentId,
    body: AssignmentRevise,
    principal: TherapistDep,
    key: IdempotencyKeyDep,
    h: HandlersDep,
) -> JSONResponse:
    """A new version of instructions, rationale, schedule, target, steps, resources or reminders.

    A new schedule governs the occurrences opening from now on; earlier ones keep the old one.
    Publishes ``AssignmentRevised`` with the whole new state and the changed fields.
    """

    async def write(session: AsyncClientSession) -> Any:
        revision = await h.revise_assignment(principal, assignment_id, body.changes(h.clock.now()), session)
        return RevisionPublic.of(revision).model_dump(mode="json")

    return await idempotent(request, caller_scope(principal), key, 201, write)


@router.get(
    "/assignments/{assignment_id}/revisions", response_model=RevisionPage, responses=_errors, dependencies=[audited()]
)
async def list_revisions(
    assignment_id: AssignmentId,
    principal: PrincipalDep,
    h: HandlersDep,
    limit: Limit = 50,
    cursor: Annotated[Cursor | None, Query()] = None,
) -> RevisionPage:
    """The versions of the assignment's content, oldest first, paged."""
    after = decode_cursor(cursor)
    if after is not None and not (after.isdigit() and len(after) <= 9):
        raise invalid("cursor", "not a cursor this service gave out", "query")
    docs = await h.revisions(principal, assignment_id, limit + 1, int(after) if after else 0)
    last = str(docs[limit - 1]["version"]) if len(docs) > limit else None
    return RevisionPage(items=[RevisionPublic.of(doc) for doc in docs[:limit]], next_cursor=encode_cursor(last))


def _status_route(action: StatusAction, summary: str) -> None:
    async def change_status(
        request: Request, assignment_id: AssignmentId, principal: TherapistDep, key: IdempotencyKeyDep, h: HandlersDep
    ) -> JSONResponse:
        async def write(session: AsyncClientSession) -> Any:
            a = await h.change_status(principal, assignment_id, action, session)
            return AssignmentPublic.of(a).model_dump(mode="json")

        return await idempotent(request, caller_scope(principal), key, 200, write)

    change_status.__doc__ = summary
    router.add_api_route(
        f"/assignments/{{assignment_id}}/{action}",
        change_status,
        methods=["POST"],
        response_model=AssignmentPublic,
        responses=_writes,
        name=f"{action}_assignment",
        summary=f"{action.capitalize()} an assignment",
    )


_status_route("pause", "Pause: nothing is due while paused. Publishes AssignmentPaused; 409 unless active.")
_status_route("resume", "Resume a paused assignment. Publishes AssignmentResumed; 409 unless paused.")
_status_route("cancel", "Withdraw the assignment. Publishes AssignmentCancelled; 409 if already over.")
_status_route("end", "End the assignment now. Publishes AssignmentEnded (ended_by_therapist); 409 if already over.")


@router.get("/assignments/{assignment_id}/audit", response_model=AuditPage, responses=_errors, dependencies=[audited()])
async def audit_trail(
    assignment_id: AssignmentId,
    principal: TherapistDep,
    h: HandlersDep,
    limit: Limit = 100,
    cursor: Annotated[Cursor | None, Query()] = None,
) -> AuditPage:
    """Who changed the assignment, what and when, oldest first."""
    docs = await h.audit_trail(principal, assignment_id, limit + 1, decode_cursor(cursor))
    last = docs[limit - 1]["_id"] if len(docs) > limit else None
    return AuditPage(items=[AuditEntryPublic.of(d) for d in docs[:limit]], next_cursor=encode_cursor(last))


# ---------------------------------------------------------------- occurrences


@router.get(
    "/assignments/{assignment_id}/occurrences",
    response_model=OccurrenceList,
    responses=_errors,
    dependencies=[audited()],
)
async def list_occurrences(
    assignment_id: AssignmentId,
    principal: PrincipalDep,
    h: HandlersDep,
    start: Annotated[AwareDatetime | None, Query(alias="from", description="Default: 7 days ago")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to", description="Default: 14 days after from")] = None,
) -> JSONResponse:
    """The occurrences opening in [from, to), each with its id, local start, window and status."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and not EARLIEST <= value <= LATEST:
            raise invalid(name, "must be between 1970-01-01 and 9000-01-01", "query")
    start = start or (end - DEFAULT_RANGE if end else h.clock.now() - DEFAULT_RANGE / 2)
    end = end or start + DEFAULT_RANGE
    if end <= start:
        raise invalid("to", "must be after from", "query")
    if end - start > MAX_RANGE:
        raise invalid("to", "at most 366 days after from", "query")
    a, views = await h.occurrences(principal, assignment_id, start, end)
    body = OccurrenceList(
        assignment_id=a.id,
        timezone=a.content.schedule.timezone,
        start=start,
        end=end,
        items=[OccurrencePublic.of(v.occurrence, v.status, v.resolution) for v in views],
    )
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


@router.post(
    "/assignments/{assignment_id}/occurrences/{occurrence_id}/completion",
    status_code=201,
    response_model=ResolutionPublic,
    responses=_writes_with_body,
)
async def record_completion(
    assignment_id: AssignmentId,
    occurrence_id: OccurrenceId,
    body: CompletionCreate,
    principal: ClientDep,
    idempotency: FingerprintedDep,
    writer: WriterDep,
) -> JSONResponse:
    """The client did an occurrence (done, or partial with a percent); publishes ``CompletionRecorded``."""
    answer = await writer.record_resolution(
        "completion", principal, assignment_id, occurrence_id, body.model_dump(), idempotency
    )
    return answer.to_response()


@router.post(
    "/assignments/{assignment_id}/occurrences/{occurrence_id}/skip",
    status_code=201,
    response_model=ResolutionPublic,
    responses=_writes_with_body,
)
async def record_skip(
    assignment_id: AssignmentId,
    occurrence_id: OccurrenceId,
    body: SkipCreate,
    principal: ClientDep,
    idempotency: FingerprintedDep,
    writer: WriterDep,
) -> JSONResponse:
    """The client did not do an occurrence, and the barrier; publishes ``OccurrenceSkipped``."""
    answer = await writer.record_resolution(
        "skip", principal, assignment_id, occurrence_id, body.model_dump(), idempotency
    )
    return answer.to_response()


# ---------------------------------------------------------------- clients: their own


@router.get("/me/assignments", response_model=AssignmentPage, responses=_errors)
async def my_assignments(
    principal: ClientDep,
    h: HandlersDep,
    status: AssignmentStatus | None = None,
    limit: Limit = 50,
    cursor: Annotated[Cursor | None, Query()] = None,
) -> AssignmentPage:
    """The calling client's assignments, newest first, paged."""
    items, last = await h.assignments_of(principal.practice_id, principal.sub, status, limit, decode_cursor(cursor))
    return AssignmentPage(items=[AssignmentPublic.of(a) for a in items], next_cursor=encode_cursor(last))


@router.get("/me/history", response_model=HistoryPage, responses=_errors)
async def my_history(
    principal: ClientDep,
    h: HandlersDep,
    assignment_id: QueryId | None = None,
    limit: Limit = 50,
    cursor: Annotated[Cursor | None, Query()] = None,
) -> HistoryPage:
    """The calling client's completions and skips, newest first, paged."""
    items, last = await h.history(principal, assignment_id, limit, decode_cursor(cursor))
    return HistoryPage(items=[ResolutionPublic.of(r) for r in items], next_cursor=encode_cursor(last))
