"""The MongoDB-protocol server does what the services rely on: transactions that abort cleanly, unique indexes."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from tests.conftest import unique


class Boom(Exception):
    pass


async def test_an_aborted_multi_document_transaction_leaves_no_trace(mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    db = mongo[unique("db")]
    await db.create_collection("assignments")
    await db.create_collection("outbox")

    async def write_both_then_fail() -> None:
        async with mongo.start_session() as session, await session.start_transaction():
            await db.assignments.insert_one({"_id": "a1"}, session=session)
            await db.outbox.insert_one({"_id": "e1"}, session=session)
            raise Boom

    with pytest.raises(Boom):
        await write_both_then_fail()
    assert await db.assignments.count_documents({}) == 0
    assert await db.outbox.count_documents({}) == 0

    async with mongo.start_session() as session, await session.start_transaction():
        await db.assignments.insert_one({"_id": "a2"}, session=session)
        await db.outbox.insert_one({"_id": "e2"}, session=session)
    assert await db.assignments.count_documents({}) == 1
    assert await db.outbox.count_documents({}) == 1


async def test_a_unique_index_rejects_a_duplicate(mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    coll = mongo[unique("db")].keys
    await coll.create_index("key", unique=True)
    await coll.insert_one({"key": "k1"})
    with pytest.raises(DuplicateKeyError):
        await coll.insert_one({"key": "k1"})
    assert await coll.count_documents({"key": "k1"}) == 1
