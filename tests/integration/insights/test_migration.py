"""The startup migration to (practice, client) keys, on the real MongoDB server, from data in the old shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from homework_insights.figures import client_figures
from homework_insights.migrate import MigrationReport, migrate_tenancy
from homework_insights.rebuild import snapshot
from homework_insights.store import (
    ASSIGNMENTS,
    CLIENTS,
    DAYS,
    OCCURRENCES,
    SUMMARIES,
    THRESHOLDS,
    MongoStore,
    client_key,
    ensure_indexes,
)
from tests.conftest import unique
from tests.infra import Infra
from tests.unit.insights.builders import CLIENT, PRACTICE, Assignment, Harness, daily, utc

OTHER = "practice-2"
EVENING = datetime(2026, 3, 21, 20, 0)
CREATED_A, CREATED_B = utc(2026, 3, 20, 9), utc(2026, 3, 22, 9)
NOW = utc(2026, 3, 25, 12)
RULES = [{"metric": "mood", "direction": "at_most", "value": 3.0}]

Db = AsyncDatabase[dict[str, Any]]


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    name = unique("insights-migrate")
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def figures_of_two_practices() -> Harness:
    """Practice A's client-1 with two mood ratings, practice B's own client-1 with one assignment."""
    h = Harness(NOW)
    a = Assignment("asg-mig-a", daily(EVENING, 14))
    b = Assignment("asg-mig-b", daily(EVENING, 14), practice_id=OTHER)
    await h.apply(a.created(CREATED_A, title="A's homework"), a.mood(EVENING, 2))
    await h.apply(a.mood(datetime(2026, 3, 22, 20, 0), 4))
    await h.apply(b.created(CREATED_B, title="B's homework"))
    return h


async def write_old_shape(db: Db, h: Harness) -> None:
    """What the service wrote before: clients and thresholds keyed by client id, B's practice over A's client."""
    c = h.store.collections
    await db[ASSIGNMENTS].insert_many(list(c[ASSIGNMENTS].values()))
    for name in (DAYS, OCCURRENCES):
        await db[name].insert_many([{k: v for k, v in d.items() if k != "practice_id"} for d in c[name].values()])
    b_client = c[CLIENTS][client_key(OTHER, CLIENT)]
    await db[CLIENTS].insert_one(
        {
            "_id": CLIENT,
            "practice_id": OTHER,  # AssignmentCreated of practice B overwrote it: the reported leak
            "timezone": b_client["timezone"],
            "first_assignment_at": CREATED_A,
        }
    )
    await db[THRESHOLDS].insert_one({"_id": CLIENT, "practice_id": PRACTICE, "rules": RULES, "by": "therapist-1"})
    await db[ASSIGNMENTS].create_index([("client_id", ASCENDING), ("active_until", ASCENDING)], name="by_client")
    await db[DAYS].create_index([("client_id", ASCENDING), ("date", ASCENDING)], name="by_client_day")
    await db[SUMMARIES].create_index([("client_id", ASCENDING), ("generated_at", DESCENDING)], name="by_client")


async def test_old_data_is_rekeyed_per_practice_and_each_practice_reads_its_own_client_again(db: Db) -> None:
    h = await figures_of_two_practices()
    await write_old_shape(db, h)

    report = await migrate_tenancy(db)

    assert report.clients == 1
    assert report.thresholds == 1
    assert report.days == len(h.store.collections[DAYS])
    assert report.occurrences == len(h.store.collections[OCCURRENCES])
    assert report.indexes_dropped == 0, "additive: the previous version's pods still use the old indexes"
    await ensure_indexes(db)
    assert await db[CLIENTS].find_one({"_id": CLIENT}) is not None, "additive: the old document stays until cleanup"
    await check_each_practice_reads_its_own(db, h)
    clients = [k for k in await snapshot(db, NOW) if k.startswith("client ")]
    assert sorted(clients) == [f"client {PRACTICE}/{CLIENT}", f"client {OTHER}/{CLIENT}"]

    cleaned = await migrate_tenancy(db, cleanup=True)
    assert (cleaned.clients, cleaned.thresholds, cleaned.indexes_dropped) == (1, 1, 3)
    assert await db[CLIENTS].count_documents({}) == 2
    assert await db[THRESHOLDS].count_documents({}) == 1
    assert "by_client" not in await db[ASSIGNMENTS].index_information()
    await ensure_indexes(db)
    await check_each_practice_reads_its_own(db, h)


async def check_each_practice_reads_its_own(db: Db, h: Harness) -> None:
    """Each practice's client-1: its own client document, thresholds and the figures folded fresh."""
    a_client = await db[CLIENTS].find_one({"_id": client_key(PRACTICE, CLIENT)})
    b_client = await db[CLIENTS].find_one({"_id": client_key(OTHER, CLIENT)})
    assert a_client is not None
    assert b_client is not None
    assert (a_client["practice_id"], a_client["client_id"], a_client["first_assignment_at"]) == (
        PRACTICE,
        CLIENT,
        CREATED_A,
    )
    assert (b_client["practice_id"], b_client["first_assignment_at"]) == (OTHER, CREATED_B)
    assert await db[DAYS].count_documents({"practice_id": {"$exists": False}}) == 0
    thresholds = await MongoStore(db).thresholds(PRACTICE, CLIENT)
    assert thresholds is not None
    assert thresholds["rules"] == RULES
    assert await MongoStore(db).thresholds(OTHER, CLIENT) is None

    store = MongoStore(db)
    for practice in (PRACTICE, OTHER):
        migrated = await client_figures(store, practice, CLIENT, NOW, with_flags=True)
        expected = await h.figures(CLIENT, practice_id=practice)
        assert [x["title"] for x in migrated["assignments"]] == [x["title"] for x in expected["assignments"]]
        assert migrated["overall"] == expected["overall"]
        assert migrated["assignments"][0]["series"] == expected["assignments"][0]["series"]
    a_figures = await client_figures(store, PRACTICE, CLIENT, NOW, with_flags=True)
    assert a_figures["overall"]["done"] == 2


async def test_the_migration_is_idempotent_and_notes_when_it_is_done(db: Db) -> None:
    h = await figures_of_two_practices()
    await write_old_shape(db, h)
    await migrate_tenancy(db)
    before = {name: await db[name].find({}).sort("_id").to_list() for name in (CLIENTS, THRESHOLDS, DAYS)}

    assert await migrate_tenancy(db) == MigrationReport(skipped=True)
    await migrate_tenancy(db, force=True)
    after = {name: await db[name].find({}).sort("_id").to_list() for name in (CLIENTS, THRESHOLDS, DAYS)}
    assert after == before
    await migrate_tenancy(db, cleanup=True)
    assert await migrate_tenancy(db, cleanup=True) == MigrationReport()


async def test_a_fresh_database_needs_nothing(db: Db) -> None:
    assert await migrate_tenancy(db) == MigrationReport()
    await ensure_indexes(db)
    assert "by_practice_client" in await db[ASSIGNMENTS].index_information()
