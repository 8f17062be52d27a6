"""MongoDB access the services share: a client that fails fast, transactions retried on transient errors, a ping.

:func:`run_in_transaction` is the one way the platform runs a transaction (HTTP writes, the
event consumer, the schedulers): work that must follow the commit (waking the outbox relay,
counting) is registered inside with :func:`homework_shared.after_commit.after_commit` and runs
once the commit succeeded, never for an attempt that aborted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pymongo
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from homework_shared import after_commit
from homework_shared.settings import ServiceSettings

T = TypeVar("T")
MongoClient = AsyncMongoClient[dict[str, Any]]

TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError"
UNKNOWN_COMMIT_RESULT = "UnknownTransactionCommitResult"
ABORT_WHEN_AWAY_S = 0.1
"""How long an abort may wait when the server could not be reached (its errors are ignored anyway)."""

log = logging.getLogger("homework.mongo")


def make_mongo_client(settings: ServiceSettings) -> MongoClient:
    """A client for ``settings.mongodb_uri`` that gives up after ``mongo_timeout_ms`` when the server is away."""
    return AsyncMongoClient(
        settings.mongodb_uri,
        appname=settings.service_name,
        tz_aware=True,
        retryWrites=True,
        retryReads=True,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        # Long enough for a slow aggregation, short enough that a hung server frees the request.
        socketTimeoutMS=max(10_000, 5 * settings.mongo_timeout_ms),
    )


async def run_in_transaction(
    client: MongoClient,
    fn: Callable[[AsyncClientSession], Awaitable[T]],
    *,
    max_attempts: int = 5,
    backoff_s: float = 0.02,
) -> T:
    """Run ``fn(session)`` in a transaction and commit it, retrying the whole on transient errors.

    At most ``max_attempts`` tries, with jittered exponential back-off between them; none more when
    no server could be selected (the client already waited its timeout). ``fn`` may
    run more than once, so it must write only through ``session`` and defer any other side effect
    with :func:`~homework_shared.after_commit.after_commit`: the callbacks an attempt registers
    run once, after its commit; those of an aborted attempt are dropped.
    """
    async with client.start_session() as session:
        for attempt in range(1, max_attempts + 1):
            try:
                with after_commit.collecting() as hooks:
                    result = await _attempt(session, fn, max_attempts)
            except PyMongoError as error:
                # No server to select has already cost the whole selection timeout: another try
                # would only make a request that must fail fast (503) wait that long again.
                unreachable = isinstance(error, ServerSelectionTimeoutError)
                if unreachable or not error.has_error_label(TRANSIENT_TRANSACTION_ERROR) or attempt == max_attempts:
                    raise
                log.info("transaction retried after a transient error", extra={"attempt": attempt})
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
                continue
            after_commit.run(hooks)
            return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _attempt(
    session: AsyncClientSession, fn: Callable[[AsyncClientSession], Awaitable[T]], max_attempts: int
) -> T:
    """One try: start, run ``fn``, commit; on any error the transaction is aborted and the error raised."""
    await session.start_transaction(write_concern=WriteConcern("majority"))
    try:
        result = await fn(session)
        await _commit(session, max_attempts)
    except PyMongoError as error:
        if session.in_transaction:
            await _abort(session, error)
        raise
    except BaseException:
        if session.in_transaction:
            await session.abort_transaction()
        raise
    return result


async def _abort(session: AsyncClientSession, error: PyMongoError) -> None:
    """Abort the session's transaction; briefly when the server is away.

    An abort whose errors are ignored would otherwise wait out a server selection (and the
    driver's one retry of it) when the server cannot be reached, making a request that must fail
    fast with 503 wait seconds longer; the server aborts an orphaned transaction itself when its
    lifetime ends (mongod's ``transactionLifetimeLimitSeconds``).
    """
    if isinstance(error, ConnectionFailure):
        with pymongo.timeout(ABORT_WHEN_AWAY_S):
            await session.abort_transaction()
    else:
        await session.abort_transaction()


async def _commit(session: AsyncClientSession, max_attempts: int) -> None:
    # pymongo retries a commit once by itself; an unknown result is retried again, the commit being idempotent.
    for attempt in range(1, max_attempts + 1):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as error:
            if not error.has_error_label(UNKNOWN_COMMIT_RESULT) or attempt == max_attempts:
                raise


async def mongo_ping(client: MongoClient) -> bool:
    """Readiness check: True when the server answers ``ping``."""
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True
