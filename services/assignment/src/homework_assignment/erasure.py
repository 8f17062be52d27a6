"""Erasing a client: the request, the saga's record, and the per-client keys of sealed free text.

``POST /v1/clients/{client_id}/erasure`` (admin) records the request in ``erasures`` (keyed by the
client's pseudonym, never the id), writes this service's tombstone (from then on every write about
the client answers 410 ``client_erased``), deletes the client's free-text key (crypto-shredding:
sealed copies on topics and in subscribers' stores become unreadable at once) and stages
``homework.client.erasure_requested.v1``: one transaction. Each service, this one included, then
runs ``homework_shared.erasure.ErasureStep`` on the event; this service consumes their
``erasure_completed`` events and marks each service completed, with when and what it removed.
``GET /v1/clients/{client_id}/erasure`` shows that state. See docs/data-rights.md.

The ``erasures`` record stays after the erasure: who asked, when, why, and what was removed, with
the client pseudonymised (GDPR Art. 17(3)(b)/(e); HIPAA keeps documentation of actions 6 years).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from homework_assignment.store import new_id
from homework_shared.auth import Principal, Role, TherapistDep
from homework_shared.auth.deps import require_role
from homework_shared.clock import Clock
from homework_shared.erasure import ServiceName, pseudonym, write_tombstone
from homework_shared.errors import NotFound
from homework_shared.events import (
    ClientErasureCompleted,
    ClientErasureRequested,
    CompletionRecorded,
    Envelope,
    OccurrenceSkipped,
)
from homework_shared.http import ErrorAnswers, from_app_state
from homework_shared.mongo import MongoClient, run_in_transaction
from homework_shared.outbox import Outbox
from homework_shared.read_audit import audited

log = logging.getLogger(__name__)

ERASURES = "erasures"
"""One document per erased client: the saga's state and the record of the erasure (client pseudonymised)."""
CLIENT_KEYS = "client_keys"
"""One Fernet key per client whose free text left in events (``INCLUDE_FREE_TEXT``); deleted on erasure."""
SERVICES: tuple[ServiceName, ...] = ("assignment", "reminder", "insights")
Doc = dict[str, Any]

AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN))]
ClientId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$")]

router = APIRouter(prefix="/v1", tags=["data rights"])


class ServiceErasure(BaseModel):
    state: Literal["pending", "completed"]
    completed_at: datetime | None = None
    counts: dict[str, int] | None = Field(default=None, description="Documents removed, per collection")


class ErasurePublic(BaseModel):
    """An erasure and where each service stands."""

    client_id: str
    practice_id: str
    erasure_id: str
    reason: Literal["request", "retention"]
    requested_by: str = Field(description="The admin who asked, or 'retention' for the retention sweeper")
    requested_at: datetime
    state: Literal["pending", "completed"] = Field(description="completed once every service completed")
    completed_at: datetime | None = None
    services: dict[str, ServiceErasure]

    @classmethod
    def of(cls, doc: Doc, client_id: str) -> ErasurePublic:
        services = {name: ServiceErasure(**doc["services"][name]) for name in SERVICES}
        done = [s.completed_at for s in services.values() if s.completed_at is not None]
        complete = len(done) == len(services)
        return cls(
            client_id=client_id,
            practice_id=doc["practice_id"],
            erasure_id=doc["erasure_id"],
            reason=doc["reason"],
            requested_by=doc["requested_by"],
            requested_at=doc["requested_at"],
            state="completed" if complete else "pending",
            completed_at=max(done) if complete else None,
            services=services,
        )


_RESPONSES = ErrorAnswers(
    {
        404: "No erasure of this client in the caller's practice",
        422: "Invalid client id",
    }
)(403, 404)


class Erasures:
    """The saga's record in this service, and the per-client free-text keys."""

    def __init__(self, db: AsyncDatabase[Doc], mongo: MongoClient, outbox: Outbox, clock: Clock) -> None:
        self.db = db
        self.mongo = mongo
        self.outbox = outbox
        self.clock = clock
        self.erasures = db[ERASURES]
        self.keys = db[CLIENT_KEYS]

    async def ensure_indexes(self) -> None:
        await self.erasures.create_index("erasure_id", unique=True, name="erasure_id")
        await self.erasures.create_index([("practice_id", 1), ("requested_at", 1)], name="practice_requested")

    async def request(
        self, practice_id: str, client_id: str, requested_by: str, reason: Literal["request", "retention"]
    ) -> tuple[Doc, bool]:
        """Record the erasure and stage its event; a repeated request returns the first record, changing nothing."""

        async def write(session: AsyncClientSession) -> tuple[Doc, bool]:
            name = pseudonym(practice_id, client_id)
            existing = await self.erasures.find_one({"_id": name}, session=session)
            if existing is not None:
                return existing, False
            now = self.clock.now()
            doc: Doc = {
                "_id": name,
                "practice_id": practice_id,
                "erasure_id": new_id("era"),
                "reason": reason,
                "requested_by": requested_by,
                "requested_at": now,
                "services": {s: {"state": "pending"} for s in SERVICES},
            }
            await self.erasures.insert_one(doc, session=session)
            await write_tombstone(self.db, practice_id, client_id, now, session)
            await self.keys.delete_one({"_id": name}, session=session)
            event = ClientErasureRequested(
                client_id=client_id,
                practice_id=practice_id,
                erasure_id=doc["erasure_id"],
                reason=reason,
                requested_at=now,
            )
            await self.outbox.stage(session, event, event_id=f"erasure-requested:{doc['erasure_id']}", time=now)
            return doc, True

        try:
            doc, created = await run_in_transaction(self.mongo, write)
        except DuplicateKeyError:  # the same request, at the same time: the other one recorded it
            found = await self.erasures.find_one({"_id": pseudonym(practice_id, client_id)})
            if found is None:
                raise
            return found, False
        if created:  # staging the event registered the relay's wake-up after the commit
            log.info("erasure requested", extra={"erasure_id": doc["erasure_id"], "reason": reason})
        return doc, created

    async def get(self, practice_id: str, client_id: str) -> Doc | None:
        return await self.erasures.find_one({"_id": pseudonym(practice_id, client_id)})

    async def on_completed(self, env: Envelope[Any], session: AsyncClientSession) -> None:
        """A service's ``erasure_completed``: mark it completed once (a replay keeps the first record)."""
        event: ClientErasureCompleted = env.data
        await self.erasures.update_one(
            {
                "_id": pseudonym(event.practice_id, event.client_id),
                "erasure_id": event.erasure_id,
                f"services.{event.service}.state": "pending",
            },
            {
                "$set": {
                    f"services.{event.service}": {
                        "state": "completed",
                        "completed_at": event.completed_at,
                        "counts": event.counts,
                    }
                }
            },
            session=session,
        )

    # ------------------------------------------------------------ sealed free text (crypto-shredding)

    async def ensure_keys(self, pairs: set[tuple[str, str]]) -> None:
        """A key for each (practice, client) without one and not erased; outside any transaction (idempotent).

        Created before the writing transaction so two transactions never race to insert the same key
        (a duplicate-key error there would abort a batch of completions).
        """
        for practice_id, client_id in pairs:
            name = pseudonym(practice_id, client_id)
            if await self.erasures.find_one({"_id": name}, {"_id": 1}) is not None:
                continue
            with contextlib.suppress(DuplicateKeyError):  # two upserts raced: the other one made the key
                await self.keys.update_one(
                    {"_id": name},
                    {"$setOnInsert": {"practice_id": practice_id, "key": Fernet.generate_key().decode()}},
                    upsert=True,
                )

    async def ciphers(self, pairs: set[tuple[str, str]], session: AsyncClientSession) -> dict[tuple[str, str], Fernet]:
        """The keys of ``pairs`` that exist, read in the writing transaction (an erasure deletes them)."""
        by_name = {pseudonym(p, c): (p, c) for p, c in pairs}
        found = self.keys.find({"_id": {"$in": list(by_name)}}, session=session)
        return {by_name[doc["_id"]]: Fernet(doc["key"].encode()) async for doc in found}

    async def shred(self, event: ClientErasureRequested, session: AsyncClientSession) -> None:
        """This service's extra erasure step: the client's key again (one made while the request was racing)."""
        await self.keys.delete_one({"_id": pseudonym(event.practice_id, event.client_id)}, session=session)

    async def cipher(self, practice_id: str, client_id: str) -> Fernet | None:
        doc = await self.keys.find_one({"_id": pseudonym(practice_id, client_id)})
        return Fernet(doc["key"].encode()) if doc else None


def seal(event: Any, cipher: Fernet | None) -> Any:
    """The event with its free text sealed under the client's key (``note_sealed``, ``barrier_text_sealed``).

    The plain field is left out. Without a key (the client is being erased) the free text is left out.
    Fernet (from ``cryptography``, as the reminder's webhook secrets use) authenticates as well as
    encrypts, so a tampered copy does not decrypt.
    """
    if isinstance(event, CompletionRecorded) and event.note is not None:
        sealed = cipher.encrypt(event.note.encode()).decode() if cipher else None
        return event.model_copy(update={"note": None, "note_sealed": sealed})
    if isinstance(event, OccurrenceSkipped) and event.barrier_text is not None:
        sealed = cipher.encrypt(event.barrier_text.encode()).decode() if cipher else None
        return event.model_copy(update={"barrier_text": None, "barrier_text_sealed": sealed})
    return event


def unseal(token: str, cipher: Fernet | None) -> str | None:
    """The free text of a sealed field, or None once the key is gone (or the token is not under it)."""
    if cipher is None:
        return None
    try:
        return cipher.decrypt(token.encode()).decode()
    except InvalidToken:
        return None


ErasuresDep = Annotated[Erasures, Depends(from_app_state("erasures"))]


@router.post(
    "/clients/{client_id}/erasure",
    status_code=202,
    response_model=ErasurePublic,
    responses={**_RESPONSES, 200: {"model": ErasurePublic, "description": "Already requested: the same erasure"}},
)
async def request_erasure(client_id: ClientId, principal: AdminDep, e: ErasuresDep) -> JSONResponse:
    """Erase a client of the caller's practice everywhere (admin only); 202, or 200 with the same erasure again.

    From now on every write about the client answers 410 ``client_erased``. Publishes
    ``homework.client.erasure_requested.v1``; each service deletes the client's data and reports back.
    """
    doc, created = await e.request(principal.practice_id, client_id, principal.sub, "request")
    body = ErasurePublic.of(doc, client_id).model_dump(mode="json")
    return JSONResponse(body, status_code=202 if created else 200)


@router.get(
    "/clients/{client_id}/erasure", response_model=ErasurePublic, responses=_RESPONSES, dependencies=[audited()]
)
async def get_erasure(client_id: ClientId, principal: TherapistDep, e: ErasuresDep) -> ErasurePublic:
    """Where the client's erasure stands in each service: pending, or completed with when and what was removed."""
    doc = await e.get(principal.practice_id, client_id)
    if doc is None:
        raise NotFound("erasure_not_found", "no erasure of this client in the caller's practice")
    return ErasurePublic.of(doc, client_id)
