"""Idempotency-Key for POST routes: a retried request gets the first response again instead of a second write.

The remembered response is inserted in the same transaction as the business write, so both
commit or neither does. Of two concurrent requests with one key, one commits; the other fails
on the unique ``_id`` (``DuplicateKeyError``, after ``run_in_transaction`` has retried any
write conflict) and replays what the first stored. ``respond_idempotently`` does all of this::

    @router.post("/v1/assignments", status_code=201)
    async def create_assignment(
        request: Request, payload: AssignmentCreate, principal: TherapistDep, key: IdempotencyKeyDep
    ) -> Response:
        async def write(session: AsyncClientSession) -> dict[str, Any]:
            assignment = await store.insert(payload, session=session)
            return AssignmentPublic.of(assignment).model_dump(mode="json")

        return await respond_idempotently(client, db, request, caller_scope(principal), key, 201, write)

Keys are per caller within a practice (``_id = f"{caller_scope(principal)}:{key}"``: practice, role
and subject), so two practices whose token issuers hand out the same ``sub`` never replay each
other's answers, and kept 24 hours (``IDEMPOTENCY_KEY_TTL_S``; a TTL index from
``ensure_idempotency_indexes``, so the server's TTL monitor deletes them within about a minute
after that). The same key with a different method, path or body answers
422 ``idempotency_key_reused``, as the IETF Idempotency-Key draft recommends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from homework_shared.auth.jwt import Principal
from homework_shared.errors import Unprocessable
from homework_shared.mongo import MongoClient, run_in_transaction

COLLECTION = "idempotency_keys"
KEEP_FOR_S = 24 * 60 * 60
TTL_INDEX = "created_at_ttl"
INDEX_CONFLICTS = (85, 86)
"""IndexOptionsConflict, IndexKeySpecsConflict: what creating an index of another TTL under the same name answers."""
REPLAYED_HEADER = "Idempotent-Replayed"

Database = AsyncDatabase[dict[str, Any]]


def idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)] = None,
) -> str | None:
    """The request's ``Idempotency-Key`` header, if it has one."""
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


@dataclass(frozen=True, slots=True)
class Fingerprinted:
    """An ``Idempotency-Key`` and the fingerprint of the request that came with it."""

    key: str
    fingerprint: str


async def fingerprinted(request: Request, key: IdempotencyKeyDep) -> Fingerprinted | None:
    """The request's key with its fingerprint (``request_fingerprint``); None without a key."""
    if key is None:
        return None
    return Fingerprinted(key, request_fingerprint(request.method, request.url.path, await request.body()))


FingerprintedDep = Annotated[Fingerprinted | None, Depends(fingerprinted)]
"""For use cases that write through their own transaction (group commit) and replay with ``replay_or_none``."""


def caller_scope(principal: Principal) -> str:
    """Whose keys these are: the caller's practice, role and subject, each percent-encoded (no part can spoof
    another), because a ``sub`` is unique only within its issuer and practice."""
    return "|".join(quote(part, safe="@") for part in (principal.practice_id, principal.role.value, principal.sub))


class IdempotencyKeyReused(Unprocessable):
    """The key was already used for a different request."""

    def __init__(self) -> None:
        super().__init__("idempotency_key_reused", "this Idempotency-Key was used for a different request")


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The response first given for an idempotency key (``replayed=False``: the first answer, given now)."""

    status: int
    body: Any
    replayed: bool = True

    def to_response(self) -> JSONResponse:
        """The response, marked as a replay when it is one."""
        headers = {REPLAYED_HEADER: "true"} if self.replayed else None
        return JSONResponse(self.body, status_code=self.status, headers=headers)


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests the same request: method, path and a SHA-256 of the body."""
    return f"{method.upper()} {path} {hashlib.sha256(body).hexdigest()}"


async def ensure_idempotency_indexes(db: Database, keep_for_s: int = KEEP_FOR_S) -> None:
    """Create the TTL index that forgets keys after ``keep_for_s``; a changed setting updates the existing index."""
    try:
        await db[COLLECTION].create_index("created_at", expireAfterSeconds=keep_for_s, name=TTL_INDEX)
    except OperationFailure as error:
        # The index exists with another TTL (mongod answers 85, SecantusDB 86): change it in place.
        existing = {i["name"]: i async for i in await db[COLLECTION].list_indexes()}.get(TTL_INDEX)
        if error.code not in INDEX_CONFLICTS or existing is None or dict(existing["key"]) != {"created_at": 1}:
            raise
        await db.command("collMod", COLLECTION, index={"name": TTL_INDEX, "expireAfterSeconds": keep_for_s})


async def replay_or_none(
    db: Database, caller: str, key: str, fingerprint: str, session: AsyncClientSession | None = None
) -> StoredResponse | None:
    """The response stored for this caller's key, None if there is none; ``IdempotencyKeyReused`` on a mismatch."""
    stored = await db[COLLECTION].find_one({"_id": f"{caller}:{key}"}, session=session)
    if stored is None:
        return None
    if stored["fingerprint"] != fingerprint:
        raise IdempotencyKeyReused
    return StoredResponse(status=int(stored["status"]), body=json.loads(stored["body"]))


async def remember(
    db: Database,
    session: AsyncClientSession,
    caller: str,
    key: str,
    fingerprint: str,
    status: int,
    body: Any,
) -> None:
    """Store the response inside the caller's transaction; a concurrent twin makes the commit fail on ``_id``."""
    await db[COLLECTION].insert_one(remembered(caller, key, fingerprint, status, body), session=session)


def remembered(caller: str, key: str, fingerprint: str, status: int, body: Any) -> dict[str, Any]:
    """The document ``remember`` stores, for callers that insert many at once (group commit)."""
    return {
        "_id": f"{caller}:{key}",
        "fingerprint": fingerprint,
        "status": status,
        # Kept as JSON text: any body round-trips exactly, whatever its keys.
        "body": json.dumps(body, separators=(",", ":")),
        "created_at": datetime.now(UTC),
    }


async def respond_idempotently(
    client: MongoClient,
    db: Database,
    request: Request,
    caller: str,
    key: str | None,
    status: int,
    write: Callable[[AsyncClientSession], Awaitable[Any]],
) -> JSONResponse:
    """Run ``write`` in a transaction and answer its JSON body; with a key, replay instead of writing twice."""
    if key is None:
        return JSONResponse(await run_in_transaction(client, write), status_code=status)
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    if (stored := await replay_or_none(db, caller, key, fingerprint)) is not None:
        return stored.to_response()

    async def write_and_remember(session: AsyncClientSession) -> Any:
        body = await write(session)
        await remember(db, session, caller, key, fingerprint, status, body)
        return body

    try:
        return JSONResponse(await run_in_transaction(client, write_and_remember), status_code=status)
    except DuplicateKeyError:
        # Either a concurrent twin committed first (replay its answer) or the business write clashed.
        if (stored := await replay_or_none(db, caller, key, fingerprint)) is not None:
            return stored.to_response()
        raise
