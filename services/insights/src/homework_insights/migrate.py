"""The startup migration to tenancy keys: data written when insights keyed a client by ``client_id`` alone.

Run by the service at every start and by ``python -m homework_insights.migrate``. It is
idempotent and safe to run from several replicas at once (``$setOnInsert``/``$min`` upserts of
the new documents; it looks only at documents still in the old shape). It is additive, as
docs/deploy.md asks of a release: old documents and indexes stay, so pods of the previous
version keep working during a rolling update and a rollback is the previous image. Once the
release is final, ``--cleanup`` deletes the old documents and drops the old indexes. What it does:

* ``clients``: beside an old document (``_id`` = the client id), one per practice that has
  assignments for that client id, keyed by :func:`client_key`; its practice comes from those
  assignments (whose practice the consumer never overwrote), so a client another practice had
  taken over is given back to its own practice. Time zone: that of the practice's newest assignment.
* ``thresholds``: re-keyed by the practice stored in the document.
* ``days`` and ``occurrences``: gain the ``practice_id`` of their assignment.
* with ``cleanup``: the old ``clients`` and ``thresholds`` documents are deleted and the old
  ``client_id``-only indexes dropped (``ensure_indexes`` creates the new ones in any case).

A run notes itself in ``migrations``, so later starts cost one read (``--force`` looks again).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from homework_insights.store import ASSIGNMENTS, CLIENTS, DAYS, OCCURRENCES, SUMMARIES, THRESHOLDS, Doc, client_key

log = logging.getLogger(__name__)

MIGRATIONS = "migrations"
TENANCY = "tenancy-keys-1"
OLD_INDEXES = ((ASSIGNMENTS, "by_client"), (DAYS, "by_client_day"), (SUMMARIES, "by_client"))
OLD_SHAPE = {"client_id": {"$exists": False}}
NO_PRACTICE = {"practice_id": {"$exists": False}}


@dataclass
class MigrationReport:
    """What one run changed."""

    skipped: bool = False
    clients: int = 0
    thresholds: int = 0
    days: int = 0
    occurrences: int = 0
    indexes_dropped: int = 0


async def migrate_tenancy(db: AsyncDatabase[Doc], *, force: bool = False, cleanup: bool = False) -> MigrationReport:
    """Bring data of the client-id-only keys to (practice, client) keys; a no-op once done (unless ``force`` or
    ``cleanup``, which also removes the old documents and indexes)."""
    if not (force or cleanup) and await db[MIGRATIONS].find_one({"_id": TENANCY}) is not None:
        return MigrationReport(skipped=True)
    report = MigrationReport()
    report.clients = await _clients(db, cleanup=cleanup)
    report.thresholds = await _thresholds(db, cleanup=cleanup)
    report.days = await _add_practice(db, DAYS)
    report.occurrences = await _add_practice(db, OCCURRENCES)
    report.indexes_dropped = await _drop_old_indexes(db) if cleanup else 0
    await db[MIGRATIONS].update_one(
        {"_id": TENANCY}, {"$set": {"done_at": datetime.now(UTC), "last": report.__dict__}}, upsert=True
    )
    if report != MigrationReport():
        log.info("tenancy migration: %s", report)
    return report


async def _clients(db: AsyncDatabase[Doc], *, cleanup: bool) -> int:
    moved = 0
    async for old in db[CLIENTS].find(OLD_SHAPE):
        client_id = old["_id"]
        per_practice: dict[str, list[Doc]] = {}
        projection = {"practice_id": 1, "created_at": 1, "timezone": 1}
        async for a in db[ASSIGNMENTS].find({"client_id": client_id}, projection):
            per_practice.setdefault(a["practice_id"], []).append(a)
        if not per_practice and old.get("practice_id"):
            per_practice[old["practice_id"]] = [
                {"created_at": old.get("first_assignment_at"), "timezone": old.get("timezone")}
            ]
        for practice_id, assignments in per_practice.items():
            dated = [a for a in assignments if a.get("created_at") is not None]
            newest = max(dated, key=lambda a: a["created_at"]) if dated else assignments[-1]
            update: dict[str, Any] = {
                "$setOnInsert": {"practice_id": practice_id, "client_id": client_id, "timezone": newest["timezone"]}
            }
            if dated:
                update["$min"] = {"first_assignment_at": min(a["created_at"] for a in dated)}
            await db[CLIENTS].update_one({"_id": client_key(practice_id, client_id)}, update, upsert=True)
        if cleanup:
            await db[CLIENTS].delete_one({"_id": client_id, **OLD_SHAPE})
        moved += 1
    return moved


async def _thresholds(db: AsyncDatabase[Doc], *, cleanup: bool) -> int:
    moved = 0
    async for old in db[THRESHOLDS].find(OLD_SHAPE):
        client_id, practice_id = old["_id"], old.get("practice_id")
        if practice_id:
            fields = {k: v for k, v in old.items() if k != "_id"}
            await db[THRESHOLDS].update_one(
                {"_id": client_key(practice_id, client_id)},
                {"$setOnInsert": {**fields, "client_id": client_id}},
                upsert=True,
            )
        else:
            log.warning("tenancy migration: thresholds of client %s name no practice; not migrated", client_id)
        if cleanup:
            await db[THRESHOLDS].delete_one({"_id": client_id, **OLD_SHAPE})
        moved += 1
    return moved


async def _add_practice(db: AsyncDatabase[Doc], collection: str) -> int:
    """Give the documents of ``collection`` that lack one the practice of their assignment."""
    changed = 0
    assignment_ids = await db[collection].distinct("assignment_id", NO_PRACTICE)
    for assignment_id in assignment_ids:
        a = await db[ASSIGNMENTS].find_one({"_id": assignment_id}, {"practice_id": 1})
        if a is None:
            continue
        query = {"assignment_id": assignment_id, **NO_PRACTICE}
        result = await db[collection].update_many(query, {"$set": {"practice_id": a["practice_id"]}})
        changed += result.modified_count
    return changed


async def _drop_old_indexes(db: AsyncDatabase[Doc]) -> int:
    dropped = 0
    for collection, name in OLD_INDEXES:
        info = await db[collection].index_information()
        keys = [k for k, _ in info.get(name, {}).get("key", [])]
        if name in info and "practice_id" not in keys:
            try:
                await db[collection].drop_index(name)
                dropped += 1
            except OperationFailure as exc:  # another replica dropped it first
                log.info("tenancy migration: index %s.%s: %s", collection, name, exc)
    return dropped


def main(argv: list[str] | None = None) -> int:
    """Run the migration against the configured database (``--force``: look again after a rolling update;
    ``--cleanup``: also delete the old documents and indexes, once no previous version runs or is rolled back to)."""
    from homework_insights.config import InsightsSettings
    from homework_shared.mongo import make_mongo_client
    from homework_shared.settings import load_settings

    args = argv if argv is not None else sys.argv[1:]
    settings = load_settings(InsightsSettings)

    async def run() -> MigrationReport:
        mongo = make_mongo_client(settings)
        try:
            db = mongo[settings.mongodb_database]
            return await migrate_tenancy(db, force="--force" in args, cleanup="--cleanup" in args)
        finally:
            await mongo.close()

    print(asyncio.run(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
