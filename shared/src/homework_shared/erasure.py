"""Erasing a client (GDPR Art. 17), the step every service runs: an event-driven saga, see docs/data-rights.md.

The assignment service records the request and publishes ``homework.client.erasure_requested.v1``
through its outbox, keyed by the client id: on the assignment stream it comes after every earlier
event about that client. Each service (the assignment service too) consumes it and, in the
consumer's one transaction:

1. deletes the client's documents from every collection its ``CLIENT_DATA`` exports (the same
   filters the export reads, keyed by practice and client, or by the client's assignment ids);
2. writes a tombstone: the practice, a pseudonym of the client (a SHA-256 of practice and client
   id, never the id itself) and when;
3. stages ``homework.client.erasure_completed.v1`` with the documents removed per collection,
   under a deterministic event id.

The processed event id is inserted in that same transaction, so a service killed in the middle
rolls back whole and runs the step again when the event is redelivered; deletes are idempotent
and the tombstone keeps its first instant, so a replay changes nothing. Afterwards the tombstone
makes the service's consumer drop every event about the client (a late event already on a topic)
with a metric and a log line that carries ids only: the data must not come back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from homework_shared.after_commit import now_or_after_commit
from homework_shared.auth import PrincipalDep, can_see_client
from homework_shared.consumer import Apply
from homework_shared.errors import DomainError
from homework_shared.events import ClientErasureCompleted, ClientErasureRequested, Envelope
from homework_shared.export import ClientData, ClientKey
from homework_shared.ids import PathId
from homework_shared.outbox import Outbox
from homework_shared.read_audit import READ_AUDIT, ReadAudit

log = logging.getLogger(__name__)

TOMBSTONES = "erased_clients"
"""Per service: one document per erased client, ``_id`` the client's pseudonym; kept for good."""
TOMBSTONE_REASON = (
    "tombstones of erased clients: the practice, a one-way pseudonym of the client and when, so late events "
    "about them are dropped; no client data"
)
ServiceName = Literal["assignment", "reminder", "insights"]
Doc = dict[str, Any]


def pseudonym(practice_id: str, client_id: str) -> str:
    """A one-way, stable name for (practice, client): SHA-256 over both, length-prefixed so no two pairs collide.

    Client ids are opaque ids given out by the practice's identity provider, not names; the hash keeps
    even those out of the records that outlive an erasure (tombstones, the erasure record, audit).
    """
    raw = f"{len(practice_id)}:{practice_id}|{client_id}".encode()
    return hashlib.sha256(b"homework-client\x00" + raw).hexdigest()


class ClientErased(DomainError):
    """410 ``client_erased``: the client was erased (or is being erased); nothing new is written about them."""

    default_status = 410


def client_erased() -> ClientErased:
    return ClientErased("client_erased", "this client's data was erased on request or at the end of retention")


async def erased_among(
    db: AsyncDatabase[Any], pairs: Iterable[tuple[str, str]], session: AsyncClientSession | None = None
) -> set[tuple[str, str]]:
    """The (practice, client) pairs of ``pairs`` that have a tombstone here."""
    by_name = {pseudonym(p, c): (p, c) for p, c in pairs}
    if not by_name:
        return set()
    found = db[TOMBSTONES].find({"_id": {"$in": list(by_name)}}, {"_id": 1}, session=session)
    return {by_name[doc["_id"]] async for doc in found}


async def is_erased(
    db: AsyncDatabase[Any], practice_id: str, client_id: str, session: AsyncClientSession | None = None
) -> bool:
    doc = await db[TOMBSTONES].find_one({"_id": pseudonym(practice_id, client_id)}, {"_id": 1}, session=session)
    return doc is not None


async def refuse_if_erased(
    db: AsyncDatabase[Any], practice_id: str, client_id: str, session: AsyncClientSession | None = None
) -> None:
    """Raise 410 ``client_erased`` if the client has a tombstone here."""
    if await is_erased(db, practice_id, client_id, session):
        raise client_erased()


async def write_tombstone(
    db: AsyncDatabase[Any], practice_id: str, client_id: str, at: datetime, session: AsyncClientSession
) -> None:
    """The client's tombstone; a second write keeps the first instant."""
    await db[TOMBSTONES].update_one(
        {"_id": pseudonym(practice_id, client_id)},
        {"$setOnInsert": {"practice_id": practice_id, "erased_at": at}},
        upsert=True,
        session=session,
    )


async def erase_documents(
    db: AsyncDatabase[Any],
    data: ClientData,
    practice_id: str,
    client_id: str,
    session: AsyncClientSession,
    keep: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """Delete the client's documents from every exported collection; documents removed per collection.

    The client's assignment ids are read first (the by-assignment filters need them) and the
    assignments collection is emptied last. Idempotent: run again, it removes nothing more.
    """
    cursor = db[data.assignments].find(
        {"practice_id": practice_id, "client_id": client_id}, {"_id": 1}, session=session
    )
    key = ClientKey(practice_id, client_id, tuple(sorted([doc["_id"] async for doc in cursor])))
    counts: dict[str, int] = {}
    for name in sorted(set(data.exported) - keep, key=lambda n: (n == data.assignments, n)):
        result = await db[name].delete_many(data.exported[name](key), session=session)
        counts[name] = result.deleted_count
    return counts


def completed_event_class(service: ServiceName) -> type[ClientErasureCompleted]:
    """``ClientErasureCompleted`` published on ``service``'s own stream (one type, one schema, three topics)."""
    if service == "assignment":
        return ClientErasureCompleted
    return type(f"ClientErasureCompletedBy{service.capitalize()}", (ClientErasureCompleted,), {"stream": service})


class ErasureStep:
    """One service's part of the saga, and the guard that keeps erased clients out of its consumer."""

    def __init__(
        self,
        service: ServiceName,
        db: AsyncDatabase[Any],
        data: ClientData,
        outbox: Outbox,
        registry: CollectorRegistry,
        now: Any,
        also: Callable[[ClientErasureRequested, AsyncClientSession], Awaitable[None]] | None = None,
        read_audit: ReadAudit | None = None,
    ) -> None:
        """``also``: a service's own extra step in the same transaction (the assignment service deletes the key)."""
        self.service = service
        self.db = db
        self.data = data
        self.outbox = outbox
        self.now = now
        self.also = also
        self.read_audit = read_audit
        self.completed_cls = completed_event_class(service)
        self.erased = Counter("client_erasures_total", "Clients erased by this service", registry=registry)
        self.dropped = Counter(
            "erased_client_events_dropped_total",
            "Events about an erased client, dropped by the consumer (the data must not come back)",
            ["type"],
            registry=registry,
        )

    async def erase(self, event: ClientErasureRequested, session: AsyncClientSession) -> dict[str, int]:
        """Delete, tombstone and stage ``erasure_completed``, all in ``session``'s transaction."""
        keep = frozenset({READ_AUDIT}) if self.read_audit is not None else frozenset()
        counts = await erase_documents(self.db, self.data, event.practice_id, event.client_id, session, keep)
        if self.also is not None:
            await self.also(event, session)
        if self.read_audit is not None:  # who read what stays, about a pseudonym
            name = pseudonym(event.practice_id, event.client_id)
            counts[READ_AUDIT] = await self.read_audit.pseudonymise(event.practice_id, event.client_id, name, session)
        now = self.now()
        await write_tombstone(self.db, event.practice_id, event.client_id, now, session)
        completed = self.completed_cls(
            client_id=event.client_id,
            practice_id=event.practice_id,
            erasure_id=event.erasure_id,
            service=self.service,
            counts=counts,
            completed_at=now,
        )
        await self.outbox.stage(session, completed, event_id=f"erasure-completed:{self.service}:{event.erasure_id}")
        now_or_after_commit(self.erased.inc)
        log.info(
            "client erased",
            extra={"erasure_id": event.erasure_id, "practice_id": event.practice_id, "removed": sum(counts.values())},
        )
        return counts

    def guard(self, apply: Apply | None, on_completed: Apply | None = None) -> Apply:
        """``apply`` behind the saga: runs the erasure step, drops events about erased clients.

        ``erasure_completed`` events go to ``on_completed`` (the assignment service's record of the
        saga) or are ignored; every other event about a client with a tombstone is dropped.
        ``apply`` None: this service consumes only the saga's events (the assignment service).
        """

        async def guarded(env: Envelope[Any], session: AsyncClientSession) -> None:
            data = env.data
            if isinstance(data, ClientErasureRequested):
                await self.erase(data, session)
                return
            if isinstance(data, ClientErasureCompleted):
                if on_completed is not None:
                    await on_completed(env, session)
                return
            if apply is None:
                return
            if await is_erased(self.db, data.practice_id, data.client_id, session):
                now_or_after_commit(self.dropped.labels(env.type).inc)
                # Ids only: no free text of the event may reach the logs either.
                log.info(
                    "event about an erased client dropped",
                    extra={"event_id": env.id, "event_type": env.type, "practice_id": data.practice_id},
                )
                return
            await apply(env, session)

        return guarded


async def _refuse_erased_client(request: Request, client_id: PathId, principal: PrincipalDep) -> None:
    """For write routes with a ``client_id`` path parameter: 410 once this service holds the client's tombstone.

    ``client_id`` is validated as the route's own (an invalid id is 422 before any read). Only for
    callers who may see the client (the route itself answers the others 403 or 404), so
    the answer tells nobody else whether a client was erased.
    """
    if can_see_client(principal, client_id, principal.practice_id):
        await refuse_if_erased(request.app.state.runtime.db, principal.practice_id, client_id)


NOT_ERASED = Depends(_refuse_erased_client)
"""``dependencies=[NOT_ERASED]`` on a write route that names the client in its path."""
