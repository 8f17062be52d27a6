"""The read audit (HIPAA audit controls): every read of a client's data by a therapist or admin, recorded.

Each service records the reads of its own routes in its own database (``read_audit``), so no
service writes another's data and a record is written where the read happened. A route opts in
with ``dependencies=[audited()]``: the dependency appends an entry (who, role, practice, what,
the path parameters, when, request id, trace id, and the client when the path names one) to an
in-memory buffer and returns; nothing waits on the database during the read. A background task
writes the buffer every ``flush_interval_s`` (or at once when ``max_batch`` entries wait) with one
``insert_many``; entries about an object (an assignment, a summary) get their client there, from
the service's own ``resolve``. On graceful shutdown ``stop`` writes what is left. A failed write
puts the entries back (bounded by ``max_pending``; beyond that the oldest are counted as lost
and logged, never silently).

Records are append-only: no route updates or deletes them. ``GET /v1/audit-part`` (admin) serves
a service's records; the assignment service's ``GET /v1/audit`` gathers the three (fan-out, as
the export) and pages them with the shared cursor codec. See docs/data-rights.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import AwareDatetime, BaseModel, Field
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from homework_shared.auth import Principal, PrincipalDep, Role
from homework_shared.auth.deps import require_role
from homework_shared.cursors import InvalidCursor, decode_cursor, encode_cursor
from homework_shared.errors import Unprocessable
from homework_shared.http import ErrorAnswers
from homework_shared.ids import QueryId
from homework_shared.observability import current_request_id, current_trace_id
from homework_shared.tasks import stop_task

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000

READ_AUDIT = "read_audit"
READ_AUDIT_REASON = (
    "the read audit: who read which client's data and when (HIPAA audit controls); append-only, kept as "
    "documentation, the client pseudonymised on erasure"
)
Doc = dict[str, Any]
Resolve = Callable[[list[Doc]], Awaitable[None]]
"""Fills ``client_id`` of entries about an object (from the service's own collections), in place."""
AUDITED_ROLES = frozenset({Role.THERAPIST, Role.ADMIN})


class ReadAudit:
    """Buffers read-audit entries and writes them in batches, off the request path."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        service: str,
        registry: CollectorRegistry,
        *,
        resolve: Resolve | None = None,
        enabled: bool = True,
        flush_interval_s: float = 0.25,
        max_batch: int = 500,
        max_pending: int = 100_000,
    ) -> None:
        self.collection = db[READ_AUDIT]
        self.service = service
        self.resolve = resolve
        self.enabled = enabled
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: list[Doc] = []
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.recorded = Counter("read_audit_recorded_total", "Read-audit entries written", registry=registry)
        self.lost = Counter(
            "read_audit_lost_total", "Read-audit entries dropped because too many waited unwritten", registry=registry
        )
        self.batch_seconds = Histogram(
            "read_audit_flush_seconds", "Time to write one batch of read-audit entries", registry=registry
        )

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("practice_id", ASCENDING), ("_id", ASCENDING)], name="practice_order")
        await self.collection.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("_id", ASCENDING)], name="practice_client"
        )
        await self.collection.create_index(
            [("practice_id", ASCENDING), ("actor", ASCENDING), ("_id", ASCENDING)], name="practice_actor"
        )

    def record(self, principal: Principal, what: str, params: dict[str, str], client_id: str | None) -> None:
        """Queue one entry (no I/O). ``_id`` sorts by time: nanoseconds since the epoch, then a random tail."""
        if not self.enabled or principal.role not in AUDITED_ROLES:
            return
        now = time.time_ns()
        self._pending.append(
            {
                "_id": f"{now:020d}-{self.service[:1]}{secrets.token_hex(4)}",
                "at": datetime.fromtimestamp(now / 1e9, UTC),
                "service": self.service,
                "practice_id": principal.practice_id,
                "actor": principal.sub,
                "role": principal.role.value,
                "what": what,
                "params": params,
                "client_id": client_id,
                "request_id": current_request_id(),
                "trace_id": current_trace_id(),
            }
        )
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="read-audit-writer")

    async def stop(self) -> None:
        """Stop the writer and write every entry still waiting (graceful shutdown loses none)."""
        self._stopping = True
        self._wake.set()
        await stop_task(self._task)
        self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("writing the read audit failed; the entries wait for the next try", exc_info=True)

    async def flush(self) -> int:
        """Write what waits, in batches; on failure the batch goes back to the front (bounded).

        One flush at a time: a caller that flushes to read its own entries back (the export, the
        audit query) waits for a batch another flush has taken and not yet written.
        """
        async with self._writing:
            return await self._flush()

    async def _flush(self) -> int:
        written = 0
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            started = time.perf_counter()
            try:
                if self.resolve is not None:
                    await self.resolve([doc for doc in batch if doc["client_id"] is None])
                await self._pseudonymise_erased(batch)
                await self._insert(batch)
            except BaseException:
                self._pending[:0] = batch
                overflow = len(self._pending) - self.max_pending
                if overflow > 0:
                    del self._pending[:overflow]
                    self.lost.inc(overflow)
                    log.error("read audit: %d entries dropped, the database refused them too long", overflow)
                raise
            self.batch_seconds.observe(time.perf_counter() - started)
            self.recorded.inc(len(batch))
            written += len(batch)
        return written

    async def _insert(self, batch: list[Doc]) -> None:
        """Insert ``batch``; entries already there are not an error (an earlier try was written but not answered:
        a timeout, or a shutdown cancelling the writer mid-write, puts the batch back and it is written again)."""
        try:
            await self.collection.insert_many(batch, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise

    async def _pseudonymise_erased(self, batch: list[Doc]) -> None:
        """Entries about a client erased here name them by pseudonym only: the id must not come back."""
        from homework_shared.erasure import erased_among, pseudonym  # imports this module

        pairs = {(d["practice_id"], d["client_id"]) for d in batch if d["client_id"] is not None}
        erased = await erased_among(self.collection.database, pairs)
        for doc in batch:
            if (doc["practice_id"], doc["client_id"]) in erased:
                doc.update(client_pseudonym=pseudonym(doc["practice_id"], doc["client_id"]), client_id=None, params={})

    async def pseudonymise(self, practice_id: str, client_id: str, pseudonym: str, session: Any) -> int:
        """On erasure: the client's entries keep who read what and when, with the client pseudonymised."""
        result = await self.collection.update_many(
            {"practice_id": practice_id, "client_id": client_id},
            {"$set": {"client_id": None, "client_pseudonym": pseudonym, "params": {}}},
            session=session,
        )
        return result.modified_count


def resolve_by(db: AsyncDatabase[Doc], param: str, collection: str) -> Resolve:
    """A ``Resolve`` that reads the client of entries whose path names ``param`` from ``collection`` (by ``_id``)."""

    async def resolve(entries: list[Doc]) -> None:
        ids = {e["params"][param] for e in entries if param in e["params"]}
        if not ids:
            return
        found = db[collection].find({"_id": {"$in": list(ids)}}, {"practice_id": 1, "client_id": 1})
        owners = {d["_id"]: d async for d in found}
        for entry in entries:
            owner = owners.get(entry["params"].get(param))
            if owner is not None and owner.get("practice_id") == entry["practice_id"]:
                entry["client_id"] = owner.get("client_id")

    return resolve


def audited() -> Any:
    """``dependencies=[audited()]``: record this read (by a therapist or admin) in the service's read audit."""

    async def record_read(request: Request, principal: PrincipalDep) -> None:
        audit: ReadAudit | None = getattr(request.app.state, "read_audit", None)
        if audit is None:
            return
        route = request.scope.get("route")
        template = getattr(route, "path_format", request.url.path)
        params = {k: str(v) for k, v in request.path_params.items()}
        audit.record(principal, f"{request.method} {template}", params, params.get("client_id"))

    return Depends(record_read)


# ---------------------------------------------------------------- querying


class ReadAuditEntry(BaseModel):
    id: str
    at: datetime
    service: str
    practice_id: str
    actor: str
    role: str
    what: str = Field(description="METHOD and route template, e.g. GET /v1/clients/{client_id}/figures")
    params: dict[str, str]
    client_id: str | None = Field(description="None for an erased client (then client_pseudonym)")
    client_pseudonym: str | None = None
    request_id: str | None = None
    trace_id: str | None = None

    @classmethod
    def of(cls, doc: Doc) -> ReadAuditEntry:
        return cls(id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})


class ReadAuditPage(BaseModel):
    items: list[ReadAuditEntry]
    next_cursor: str | None = None


class AuditQuery(BaseModel):
    client_id: str | None = None
    actor: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    after: str | None = None
    limit: int = 100


def audit_query(
    client_id: Annotated[QueryId | None, Query()] = None,
    actor: Annotated[QueryId | None, Query()] = None,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditQuery:
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except InvalidCursor:
            raise Unprocessable("validation_failed", "cursor: not a cursor this service gave out") from None
    if start is not None and end is not None and end <= start:
        raise Unprocessable("validation_failed", "to: must be after from")
    return AuditQuery(client_id=client_id, actor=actor, start=start, end=end, after=after, limit=limit)


AuditQueryDep = Annotated[AuditQuery, Depends(audit_query)]
AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN))]


async def read_entries(db: AsyncDatabase[Doc], practice_id: str, q: AuditQuery, limit: int) -> list[Doc]:
    """Up to ``limit`` entries of the practice matching ``q``, oldest first, after ``q.after``."""
    query: Doc = {"practice_id": practice_id}
    if q.client_id is not None:
        query["client_id"] = q.client_id
    if q.actor is not None:
        query["actor"] = q.actor
    if q.after is not None:
        query["_id"] = {"$gt": q.after}
    at: Doc = {}
    if q.start is not None:
        at["$gte"] = q.start
    if q.end is not None:
        at["$lt"] = q.end
    if at:
        query["at"] = at
    return await db[READ_AUDIT].find(query).sort("_id", ASCENDING).limit(limit).to_list()


def page_of(docs: list[Doc], limit: int) -> ReadAuditPage:
    """The first ``limit`` of ``docs`` (sorted by id) and a cursor when there are more."""
    docs = sorted(docs, key=lambda d: str(d["_id"]))
    cursor = encode_cursor(str(docs[limit - 1]["_id"])) if len(docs) > limit else None
    return ReadAuditPage(items=[ReadAuditEntry.of(d) for d in docs[:limit]], next_cursor=cursor)


AUDIT_PART_ERRORS = ErrorAnswers(
    {403: "Only an admin reads the audit", 404: "No such route", 422: "Invalid filter or cursor, naming it"}
)


def audit_part_router() -> APIRouter:
    """``GET /v1/audit-part``: this service's read-audit entries of the caller's practice (admin only)."""
    router = APIRouter(prefix="/v1", tags=["data rights"])
    responses = AUDIT_PART_ERRORS(403, 404)

    @router.get("/audit-part", response_model=ReadAuditPage, responses=responses)
    async def audit_part(request: Request, principal: AdminDep, q: AuditQueryDep) -> ReadAuditPage:
        """This service's read-audit entries of the caller's practice, oldest first, paged."""
        await request.app.state.read_audit.flush()  # this replica's reads so far
        docs = await read_entries(request.app.state.runtime.db, principal.practice_id, q, q.limit + 1)
        return page_of(docs, q.limit)

    return router
