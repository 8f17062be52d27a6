"""Recording completions and skips: the use case, and its group commit (the requests waiting at one moment
share one transaction).

``ResolutionWriter.record_resolution`` is the whole use case behind the completion and skip
routes: the domain rule, the write, the Idempotency-Key replay (a retried request gets its
first answer again; a reused key, 422), the mapping of a lost race to 409
``occurrence_already_resolved``, and the ``homework_resolutions_total`` count.

A completion is the service's hot path. Written alone it costs a transaction of about eight
round trips; here one writer task takes every request waiting and writes them together:

1. read their assignments and which of their occurrences are already resolved (two finds);
2. apply the domain rules to each request, in that request's own context, so its event and
   audit entry carry its request and trace ids; a request a rule refuses gets its own error;
3. insert the resolutions, outbox records, audit entries and remembered responses (one insert each);
4. count the resolutions on their assignments (one bulk write; the write also makes a
   concurrent pause, cancel or revision of the same assignment conflict with this transaction,
   so nothing is recorded after a pause). Last, so the assignments are held only until the commit;
5. commit. Transient errors rerun the whole transaction.

A batch is cut ``linger_s`` after its first request arrives (3 ms), so requests answered by
the previous commit can join it.

Two requests of one batch with one idempotency key cannot both be written: the second gets
:class:`Clash` at once (the API then replays the first's answer, or refuses a reuse), without
costing the batch a transaction. When an insert runs into a unique index all the same (another
replica took the occurrence or key meanwhile), the request it names gets :class:`Clash` and the
others are written again together: on a replica set every aborted group is a whole transaction
redone, so one clash costs one retry, not one per request. A clash that names no request (or a
concurrent change of an assignment) has each request written again alone. Only one transaction is in
flight per process: requests arriving meanwhile form the next batch, so a lone request waits
for nothing and a busy service writes in large batches. When a batch fails because the database
cannot be reached, the requests queued behind it fail with it, at once, instead of each batch
waiting out its own server selection: writes fail fast while the database is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from prometheus_client import Counter as Count
from prometheus_client import Histogram
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

from homework_assignment import domain
from homework_assignment.domain import Assignment, Resolution, assignment_not_found, occurrence_already_resolved
from homework_assignment.erasure import Erasures, seal
from homework_assignment.events_out import resolution_event
from homework_assignment.models import ResolutionPublic
from homework_assignment.store import AssignmentStore, Doc, audit_entry, new_id, resolution_doc
from homework_shared.auth import Principal, can_see_client
from homework_shared.clock import Clock, SystemClock
from homework_shared.erasure import client_erased, erased_among
from homework_shared.errors import DomainError
from homework_shared.idempotency import Fingerprinted, StoredResponse, caller_scope, remembered, replay_or_none
from homework_shared.mongo import MongoClient, run_in_transaction
from homework_shared.observability import batch_span, span_context_in
from homework_shared.outbox import Outbox

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000

Decide = Callable[[Assignment, datetime], Resolution]
"""The domain rule of one request (``record_completion`` or ``record_skip`` with its fields bound)."""


ResolutionKind = Literal["completion", "skip"]
_RULES: dict[ResolutionKind, tuple[Callable[..., Resolution], str]] = {
    "completion": (domain.record_completion, "cmp"),
    "skip": (domain.record_skip, "skp"),
}
"""Each kind's domain rule and the prefix of its ids."""


class Clash(Exception):
    """Written alone, the request still hit a unique index: its occurrence or its idempotency key is taken."""


class _Raced(Exception):
    """An assignment changed between the read and the write of a batch."""


class _Clashed(Exception):
    """One request's insert hit a unique index: it is answered alone, the rest of its batch written again."""

    def __init__(self, request: ResolutionRequest) -> None:
        super().__init__(request.occurrence_id)
        self.request = request


@dataclass(eq=False)
class ResolutionRequest:
    """One request to resolve an occurrence, waiting for its batch."""

    principal: Principal
    assignment_id: str
    occurrence_id: str
    now: datetime
    decide: Decide
    respond: Callable[[Resolution], Any]
    idempotency: tuple[str, str] | None = None
    """(key, request fingerprint) when the request has an ``Idempotency-Key``."""
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Accepted:
    request: ResolutionRequest
    assignment: Assignment
    body: Any
    resolution: Doc
    record: Doc
    audit: Doc
    remembered: Doc | None


class ResolutionWriter:
    """Writes resolutions in group commits; ``record`` answers each request's response body or raises its error."""

    def __init__(
        self,
        store: AssignmentStore,
        outbox: Outbox,
        client: MongoClient,
        *,
        clock: Clock | None = None,
        batch_sizes: Histogram | None = None,
        recorded: Count | None = None,
        max_batch: int = 200,
        linger_s: float = 0.003,
        erasures: Erasures | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.client = client
        self.clock = clock or SystemClock()
        self.batch_sizes = batch_sizes
        self.recorded = recorded
        """``homework_resolutions_total`` by type (completion, skip)."""
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.erasures = erasures
        """Set when free text leaves in events: it is sealed with the client's key (see ``erasure.py``)."""
        self._waiting: list[ResolutionRequest] = []
        self._task: asyncio.Task[None] | None = None

    async def record_resolution(
        self,
        kind: ResolutionKind,
        principal: Principal,
        assignment_id: str,
        occurrence_id: str,
        fields: dict[str, Any],
        idempotency: Fingerprinted | None = None,
    ) -> StoredResponse:
        """Record a completion (``fields`` of a ``CompletionCreate``) or a skip (of a ``SkipCreate``): 201 with it.

        A request that was not written (a rule refused it, or it lost a race for its occurrence or
        key) replays the answer stored for its Idempotency-Key if there is one (422 for a reused
        key); otherwise the rule's error, or 409 ``occurrence_already_resolved`` for a lost race.
        """
        rule, prefix = _RULES[kind]

        def decide(a: Assignment, now: datetime) -> Resolution:
            return rule(a, occurrence_id, now, id=new_id(prefix), recorded_by=principal.sub, **fields)

        pending = ResolutionRequest(
            principal=principal,
            assignment_id=assignment_id,
            occurrence_id=occurrence_id,
            now=self.clock.now(),
            decide=decide,
            respond=lambda r: ResolutionPublic.of(r).model_dump(mode="json"),
            idempotency=(idempotency.key, idempotency.fingerprint) if idempotency else None,
        )
        try:
            body = await self.record(pending)
        except (DomainError, Clash) as error:
            if idempotency and (stored := await self._replay(principal, idempotency)) is not None:
                return stored
            if isinstance(error, Clash):
                raise occurrence_already_resolved(occurrence_id) from None
            raise
        if self.recorded is not None:
            self.recorded.labels(kind).inc()
        return StoredResponse(201, body, replayed=False)

    async def _replay(self, principal: Principal, idempotency: Fingerprinted) -> StoredResponse | None:
        return await replay_or_none(self.store.db, caller_scope(principal), idempotency.key, idempotency.fingerprint)

    async def record(self, request: ResolutionRequest) -> Any:
        """Queue ``request`` for the next transaction and wait for its outcome."""
        self._waiting.append(request)
        if self._task is None or self._task.done():
            # A context of its own: log lines of the writer belong to no single request.
            self._task = asyncio.create_task(self._drain(), name="resolution-writer", context=contextvars.Context())
        return await request.future

    async def close(self) -> None:
        """Wait for the requests already queued to be written."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        while self._waiting:
            if len(self._waiting) < self.max_batch:
                # Let the requests answered by the last commit come back before cutting the batch:
                # without this, batches alternate between one request and all the others.
                await asyncio.sleep(self.linger_s)
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            await self._flush([r for r in batch if not r.future.done()])

    async def _flush(self, batch: list[ResolutionRequest]) -> None:
        if not batch:
            return
        if self.batch_sizes is not None:
            self.batch_sizes.observe(len(batch))
        try:
            if self.erasures is not None:
                await self.erasures.ensure_keys({_client_of(r) for r in batch})
            with batch_span(
                "write resolutions", [span_context_in(r.context) for r in batch], {"homework.batch.size": len(batch)}
            ):
                outcomes = await run_in_transaction(self.client, lambda session: self._write(session, batch))
        except _Clashed as clash:
            log.info("a resolution of a batch of %d clashed with one written before; writing the others", len(batch))
            _settle(clash.request, Clash(str(clash.__cause__)))
            await self._flush([r for r in batch if r is not clash.request])
            return
        except (DuplicateKeyError, BulkWriteError, _Raced) as error:
            if len(batch) == 1:
                _settle(batch[0], Clash(str(error)))
                return
            log.info("a batch of %d resolutions clashed; writing each alone", len(batch))
            for request in batch:
                await self._flush([request])
            return
        except Exception as error:  # noqa: BLE001 - handed to every request of the batch, which raises it
            if isinstance(error, ConnectionFailure):
                # The database is away: the requests queued meanwhile would each wait out another server
                # selection in the next batch; they get the same answer (503) now.
                batch += self._waiting
                self._waiting = []
            for request in batch:
                _settle(request, error)
            return
        for request, outcome in outcomes:
            _settle(request, outcome)

    async def _write(
        self, session: AsyncClientSession, batch: list[ResolutionRequest]
    ) -> list[tuple[ResolutionRequest, Any]]:
        assignments = await self.store.assignments_by_id({r.assignment_id for r in batch}, session)
        taken = await self.store.resolved_among([r.occurrence_id for r in batch], session)
        clients = {_client_of(r) for r in batch}
        erased = await erased_among(self.store.db, clients, session)
        ciphers = await self.erasures.ciphers(clients, session) if self.erasures is not None else {}
        outcomes: list[tuple[ResolutionRequest, Any]] = []
        accepted: list[_Accepted] = []
        keys: set[str] = set()
        for request in batch:
            if _client_of(request) in erased:
                outcomes.append((request, client_erased()))
                continue
            key = f"{caller_scope(request.principal)}:{request.idempotency[0]}" if request.idempotency else None
            if key in keys:  # the same key twice in one batch: the first one's answer is the answer
                outcomes.append((request, Clash(f"idempotency key {request.idempotency} used twice in one batch")))
                continue
            try:
                a = assignments.get(request.assignment_id)
                item = request.context.run(self._accept, request, a, taken, ciphers)
            except DomainError as error:
                outcomes.append((request, error))
                continue
            taken.add(request.occurrence_id)
            if key is not None:
                keys.add(key)
            accepted.append(item)
            outcomes.append((request, item.body))
        if accepted:
            await _insert(self.store.resolutions.insert_many, accepted, [i.resolution for i in accepted], session)
            await self.outbox.stage_prepared(session, [i.record for i in accepted], check_existing=False)
            await self.store.append_audit([i.audit for i in accepted], session)
            keyed = [i for i in accepted if i.remembered is not None]
            if keyed:
                await _insert(self.store.idempotency_keys.insert_many, keyed, [i.remembered for i in keyed], session)
            # The assignments last: a pause writing one meanwhile is aborted (write conflict) and redone after this
            # commits, so the shorter this transaction holds them, the fewer times it is redone.
            if not await self.store.count_resolutions(Counter(item.assignment.id for item in accepted), session):
                raise _Raced
        return outcomes

    def _accept(
        self, request: ResolutionRequest, a: Assignment | None, taken: set[str], ciphers: dict[tuple[str, str], Any]
    ) -> _Accepted:
        """Apply the rules to one request; runs in the request's context (its request and trace ids)."""
        if a is None or not can_see_client(request.principal, a.client_id, a.practice_id):
            raise assignment_not_found(request.assignment_id)
        if request.occurrence_id in taken:
            raise occurrence_already_resolved(request.occurrence_id)
        resolution = request.decide(a, request.now)
        body = request.respond(resolution)
        occurrence_id = resolution.occurrence.occurrence_id
        event = resolution_event(resolution, a.content.kind)
        if self.erasures is not None:
            event = seal(event, ciphers.get((a.practice_id, a.client_id)))
        return _Accepted(
            request=request,
            assignment=a,
            body=body,
            resolution=resolution_doc(resolution),
            record=self.outbox.prepare(event, time=resolution.recorded_at),
            audit=audit_entry(request.principal, resolution.type, a, a, request.now, occurrence_id=occurrence_id),
            remembered=remembered(caller_scope(request.principal), *request.idempotency, 201, body)
            if request.idempotency
            else None,
        )


async def _insert(insert_many: Any, items: list[_Accepted], docs: list[Any], session: AsyncClientSession) -> None:
    """Insert ``docs`` (one per item, in order); a duplicate key raises ``_Clashed`` naming the item's request."""
    try:
        await insert_many(docs, session=session)
    except BulkWriteError as error:
        first = (error.details.get("writeErrors") or [{}])[0]
        if first.get("code") == DUPLICATE_KEY and isinstance(first.get("index"), int) and first["index"] < len(items):
            raise _Clashed(items[first["index"]].request) from error
        raise


def _client_of(request: ResolutionRequest) -> tuple[str, str]:
    """(practice, client) of a request: only the client records their own completions and skips."""
    return request.principal.practice_id, request.principal.sub


def _settle(request: ResolutionRequest, outcome: Any) -> None:
    if request.future.done():  # the caller went away
        return
    if isinstance(outcome, BaseException):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)
