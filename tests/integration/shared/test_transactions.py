"""run_in_transaction against the real MongoDB server: commit, abort, and bounded retries on transient errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure

from homework_shared.mongo import make_mongo_client, mongo_ping, run_in_transaction
from homework_shared.settings import ServiceSettings
from tests.conftest import unique
from tests.infra import Infra

Client = AsyncMongoClient[dict[str, Any]]


class Boom(Exception):
    pass


def transient_error() -> OperationFailure:
    return OperationFailure("WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})


async def test_both_writes_commit_together(mongo: Client) -> None:
    db = mongo[unique("db")]

    async def write_both(session: AsyncClientSession) -> str:
        await db.assignments.insert_one({"_id": "a1"}, session=session)
        await db.outbox.insert_one({"_id": "e1"}, session=session)
        return "a1"

    assert await run_in_transaction(mongo, write_both) == "a1"
    assert await db.assignments.count_documents({}) == 1
    assert await db.outbox.count_documents({}) == 1


async def test_an_error_in_the_function_aborts_every_write(mongo: Client) -> None:
    db = mongo[unique("db")]
    await db.create_collection("assignments")

    async def write_then_fail(session: AsyncClientSession) -> None:
        await db.assignments.insert_one({"_id": "a1"}, session=session)
        raise Boom

    with pytest.raises(Boom):
        await run_in_transaction(mongo, write_then_fail)
    assert await db.assignments.count_documents({}) == 0


async def test_a_transient_error_reruns_the_whole_transaction(mongo: Client) -> None:
    db = mongo[unique("db")]
    attempts: list[int] = []

    async def flaky_once(session: AsyncClientSession) -> None:
        attempts.append(1)
        await db.assignments.insert_one({"_id": "a1"}, session=session)
        if len(attempts) == 1:
            raise transient_error()

    await run_in_transaction(mongo, flaky_once)
    assert len(attempts) == 2
    assert await db.assignments.count_documents({}) == 1


async def test_retries_stop_after_the_last_attempt(mongo: Client) -> None:
    db = mongo[unique("db")]
    await db.create_collection("assignments")
    attempts: list[int] = []

    async def always_transient(session: AsyncClientSession) -> None:
        attempts.append(1)
        await db.assignments.insert_one({"_id": f"a{len(attempts)}"}, session=session)
        raise transient_error()

    with pytest.raises(OperationFailure):
        await run_in_transaction(mongo, always_transient, max_attempts=3, backoff_s=0.001)
    assert len(attempts) == 3
    assert await db.assignments.count_documents({}) == 0


async def test_concurrent_transactions_on_one_document_all_land(mongo: Client) -> None:
    db = mongo[unique("db")]
    await db.counters.insert_one({"_id": "c", "n": 0})

    async def increment(session: AsyncClientSession) -> None:
        document = await db.counters.find_one({"_id": "c"}, session=session)
        assert document is not None
        await db.counters.update_one({"_id": "c"}, {"$set": {"n": document["n"] + 1}}, session=session)

    await asyncio.gather(*(run_in_transaction(mongo, increment, max_attempts=20) for _ in range(4)))
    document = await db.counters.find_one({"_id": "c"})
    assert document is not None
    assert document["n"] == 4


async def test_the_service_client_is_tz_aware_and_answers_ping(infra: Infra) -> None:
    settings = ServiceSettings(
        service_name="mongo-test",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=unique("db"),
    )
    client = make_mongo_client(settings)
    try:
        assert await mongo_ping(client)
        coll = client[settings.mongodb_database].stamps
        await coll.insert_one({"_id": 1, "at": datetime(2026, 3, 29, 1, 30, tzinfo=UTC)})
        found = await coll.find_one({"_id": 1})
        assert found is not None
        assert found["at"].tzinfo is not None
    finally:
        await client.close()
