"""Where the insights live: MongoDB collections (and an in-memory twin with the same update semantics, for tests).

Collections, each written with O(1) work per event (``$inc``, ``$set``, bounded ``$push``):

* ``assignments``: one per assignment: its plan (schedule segments, stops), tally cursor, totals,
  first-two-weeks totals, streak, latest values, last exposure attempts, flag episodes.
* ``days``: one per assignment and local day: due, done, partial, skipped, barriers, reminder
  effect, and per series the count, sum, minimum and maximum. Charts and 7/28-day figures read these.
* ``occurrences``: one per occurrence an event mentioned: resolution, reminders sent, missed report.
* ``held_events``: events that arrived before their assignment; applied when it arrives.
* ``clients``, ``thresholds``, ``summaries``; plus ``processed_events`` and ``outbox`` (shared).

Tenancy: a client id is unique only within a practice, so every document about a client carries
``practice_id`` and ``client_id`` and every query by client filters on both. ``clients`` and
``thresholds`` are keyed by :func:`client_key` (practice and client); the practice of a stored
record is never overwritten. An event whose practice or client differs from its assignment's is
refused (``UnappliableEvent``). ``migrate.py`` brings data written before this up to date.
"""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from homework_shared.erasure import TOMBSTONE_REASON, TOMBSTONES
from homework_shared.events.base import HomeworkEvent
from homework_shared.export import OPERATIONAL, ClientData, ClientKey, by_assignment, by_client
from homework_shared.outbox import Outbox
from homework_shared.read_audit import READ_AUDIT

Doc = dict[str, Any]
Update = Mapping[str, Mapping[str, Any]]

ASSIGNMENTS, DAYS, OCCURRENCES, HELD, CLIENTS, THRESHOLDS, SUMMARIES = (
    "assignments",
    "days",
    "occurrences",
    "held_events",
    "clients",
    "thresholds",
    "summaries",
)
FIGURE_COLLECTIONS = (ASSIGNMENTS, DAYS, OCCURRENCES, HELD, CLIENTS)
"""What the consumer writes: what a rebuild recreates and compares."""


def client_key(practice_id: str, client_id: str) -> str:
    """The ``_id`` of a client's ``clients`` and ``thresholds`` documents: practice and client, unambiguously.

    Each part is percent-encoded (``|`` and ``%`` included), so ``("a|b", "c")`` and ``("a", "b|c")`` differ.
    """
    return f"{quote(practice_id, safe=':@')}|{quote(client_id, safe=':@')}"


class Store(Protocol):
    """The reads and writes the handlers need; every method is O(1) or bounded by its arguments."""

    async def assignment(self, assignment_id: str) -> Doc | None: ...
    async def insert_assignment(self, doc: Doc) -> None: ...
    async def update_assignment(self, assignment_id: str, update: Update) -> None: ...
    async def assignments_of(
        self, practice_id: str, client_id: str, *, active_since: datetime | None = None
    ) -> list[Doc]: ...
    async def occurrence(self, occurrence_id: str) -> Doc | None: ...
    async def occurrences(self, occurrence_ids: list[str]) -> list[Doc]: ...
    async def outcomes_of(self, assignment_id: str) -> list[Doc]: ...
    async def update_occurrence(self, occurrence_id: str, update: Update) -> None: ...
    async def update_day(self, key: str, update: Update) -> None: ...
    async def days_of(self, practice_id: str, client_id: str, first: str, last: str) -> list[Doc]: ...
    async def hold(self, doc: Doc) -> None: ...
    async def held_for(self, assignment_id: str) -> list[Doc]: ...
    async def release(self, event_ids: list[str]) -> None: ...
    async def client(self, practice_id: str, client_id: str) -> Doc | None: ...
    async def update_client(self, practice_id: str, client_id: str, update: Update) -> None: ...
    async def thresholds(self, practice_id: str, client_id: str) -> Doc | None: ...
    async def put_thresholds(self, practice_id: str, client_id: str, doc: Doc) -> None: ...
    async def insert_summary(self, doc: Doc) -> None: ...
    async def summary(self, summary_id: str) -> Doc | None: ...
    async def summaries_of(
        self, practice_id: str, client_id: str, limit: int = 50, after: Doc | None = None
    ) -> list[Doc]: ...
    async def stage(self, event: HomeworkEvent, event_id: str) -> None: ...


BY_CLIENT = [("practice_id", ASCENDING), ("client_id", ASCENDING)]


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    """An index for every query the store makes (queries by client lead with the practice)."""
    await db[ASSIGNMENTS].create_index([*BY_CLIENT, ("active_until", ASCENDING)], name="by_practice_client")
    await db[DAYS].create_index([*BY_CLIENT, ("date", ASCENDING)], name="by_practice_client_day")
    await db[OCCURRENCES].create_index([("assignment_id", ASCENDING), ("opens_at", ASCENDING)], name="by_assignment")
    await db[HELD].create_index([("assignment_id", ASCENDING), ("seq", ASCENDING)], name="by_assignment")
    await db[SUMMARIES].create_index(
        [*BY_CLIENT, ("generated_at", DESCENDING), ("_id", DESCENDING)], name="by_practice_client_page"
    )


class MongoStore:
    """The store on MongoDB, every operation inside ``session`` (the caller's transaction) when given."""

    def __init__(self, db: AsyncDatabase[Doc], session: AsyncClientSession | None = None, outbox: Outbox | None = None):
        self.db = db
        self.s = session
        self.outbox = outbox

    async def assignment(self, assignment_id: str) -> Doc | None:
        return await self.db[ASSIGNMENTS].find_one({"_id": assignment_id}, session=self.s)

    async def insert_assignment(self, doc: Doc) -> None:
        await self.db[ASSIGNMENTS].insert_one(doc, session=self.s)

    async def update_assignment(self, assignment_id: str, update: Update) -> None:
        if update:
            await self.db[ASSIGNMENTS].update_one({"_id": assignment_id}, dict(update), session=self.s)

    async def assignments_of(
        self, practice_id: str, client_id: str, *, active_since: datetime | None = None
    ) -> list[Doc]:
        query: Doc = {"practice_id": practice_id, "client_id": client_id}
        if active_since is not None:
            query["active_until"] = {"$gte": active_since}
        return await self.db[ASSIGNMENTS].find(query, session=self.s).sort("created_at", ASCENDING).to_list()

    async def occurrence(self, occurrence_id: str) -> Doc | None:
        return await self.db[OCCURRENCES].find_one({"_id": occurrence_id}, session=self.s)

    async def occurrences(self, occurrence_ids: list[str]) -> list[Doc]:
        if not occurrence_ids:
            return []
        return await self.db[OCCURRENCES].find({"_id": {"$in": occurrence_ids}}, session=self.s).to_list()

    async def outcomes_of(self, assignment_id: str) -> list[Doc]:
        query = {"assignment_id": assignment_id, "opens_at": {"$ne": None}}
        cursor = self.db[OCCURRENCES].find(query, {"opens_at": 1, "resolution": 1, "missed": 1}, session=self.s)
        return await cursor.sort("opens_at", ASCENDING).to_list()

    async def update_occurrence(self, occurrence_id: str, update: Update) -> None:
        if update:
            await self.db[OCCURRENCES].update_one({"_id": occurrence_id}, dict(update), upsert=True, session=self.s)

    async def update_day(self, key: str, update: Update) -> None:
        if update:
            await self.db[DAYS].update_one({"_id": key}, dict(update), upsert=True, session=self.s)

    async def days_of(self, practice_id: str, client_id: str, first: str, last: str) -> list[Doc]:
        query = {"practice_id": practice_id, "client_id": client_id, "date": {"$gte": first, "$lte": last}}
        return await self.db[DAYS].find(query, session=self.s).sort("date", ASCENDING).to_list()

    async def hold(self, doc: Doc) -> None:
        fields = {k: v for k, v in doc.items() if k != "_id"}
        await self.db[HELD].update_one({"_id": doc["_id"]}, {"$setOnInsert": fields}, upsert=True, session=self.s)

    async def held_for(self, assignment_id: str) -> list[Doc]:
        cursor = self.db[HELD].find({"assignment_id": assignment_id}, session=self.s)
        return await cursor.sort("seq", ASCENDING).to_list()

    async def release(self, event_ids: list[str]) -> None:
        if event_ids:
            await self.db[HELD].delete_many({"_id": {"$in": event_ids}}, session=self.s)

    async def client(self, practice_id: str, client_id: str) -> Doc | None:
        return await self.db[CLIENTS].find_one({"_id": client_key(practice_id, client_id)}, session=self.s)

    async def update_client(self, practice_id: str, client_id: str, update: Update) -> None:
        key = client_key(practice_id, client_id)
        keyed = _keyed(update, practice_id, client_id)
        await self.db[CLIENTS].update_one({"_id": key}, keyed, upsert=True, session=self.s)

    async def thresholds(self, practice_id: str, client_id: str) -> Doc | None:
        return await self.db[THRESHOLDS].find_one({"_id": client_key(practice_id, client_id)}, session=self.s)

    async def put_thresholds(self, practice_id: str, client_id: str, doc: Doc) -> None:
        key = client_key(practice_id, client_id)
        full = {**doc, "practice_id": practice_id, "client_id": client_id}
        await self.db[THRESHOLDS].replace_one({"_id": key}, full, upsert=True, session=self.s)

    async def insert_summary(self, doc: Doc) -> None:
        await self.db[SUMMARIES].insert_one(doc, session=self.s)

    async def summary(self, summary_id: str) -> Doc | None:
        return await self.db[SUMMARIES].find_one({"_id": summary_id}, session=self.s)

    async def summaries_of(
        self, practice_id: str, client_id: str, limit: int = 50, after: Doc | None = None
    ) -> list[Doc]:
        query: Doc = {"practice_id": practice_id, "client_id": client_id}
        if after is not None:  # the page after the summary ``after``, newest first
            at, summary_id = after["generated_at"], after["_id"]
            query["$or"] = [{"generated_at": {"$lt": at}}, {"generated_at": at, "_id": {"$lt": summary_id}}]
        cursor = self.db[SUMMARIES].find(query, session=self.s)
        return await cursor.sort([("generated_at", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list()

    async def stage(self, event: HomeworkEvent, event_id: str) -> None:
        if self.outbox is None or self.s is None:
            raise RuntimeError("staging an event needs the outbox and a transaction")
        await self.outbox.stage(self.s, event, event_id=event_id)


def _keyed(update: Update, practice_id: str, client_id: str) -> dict[str, Any]:
    """``update`` that also writes the practice and client on insert (and never changes them afterwards)."""
    out = {op: dict(fields) for op, fields in update.items()}
    out["$setOnInsert"] = {**out.get("$setOnInsert", {}), "practice_id": practice_id, "client_id": client_id}
    for op in ("$set", "$unset", "$inc", "$min", "$max"):
        for name in ("practice_id", "client_id"):
            out.get(op, {}).pop(name, None)
    return out


# ------------------------------------------------------------------ in memory, for unit tests and bulk loading


def apply_update(doc: Doc, update: Update, *, inserting: bool = False) -> Doc:
    """Apply a MongoDB update document (``$set``, ``$setOnInsert``, ``$inc``, ``$min``, ``$max``, ``$push``,
    ``$unset``) to ``doc`` in place, as MongoDB would; returns ``doc``."""
    for op, fields in update.items():
        for path, value in fields.items():
            parent, leaf = _parent(doc, path)
            if op == "$set" or (op == "$setOnInsert" and inserting):
                parent[leaf] = copy.deepcopy(value)
            elif op == "$setOnInsert":
                continue
            elif op == "$unset":
                parent.pop(leaf, None)
            elif op == "$inc":
                parent[leaf] = parent.get(leaf, 0) + value
            elif op == "$min":
                parent[leaf] = value if leaf not in parent else min(parent[leaf], value)
            elif op == "$max":
                parent[leaf] = value if leaf not in parent else max(parent[leaf], value)
            elif op == "$push":
                items = list(value["$each"]) if isinstance(value, dict) and "$each" in value else [value]
                merged = [*parent.get(leaf, []), *copy.deepcopy(items)]
                if isinstance(value, dict) and "$slice" in value:
                    n = value["$slice"]
                    merged = merged[n:] if n < 0 else merged[:n]
                parent[leaf] = merged
            else:
                raise ValueError(f"update operator {op} is not supported")
    return doc


def _parent(doc: Doc, path: str) -> tuple[Doc, str]:
    *head, leaf = path.split(".")
    node = doc
    for part in head:
        node = node.setdefault(part, {})
    return node, leaf


def _copy(doc: Doc | None) -> Doc | None:
    """A deep copy, the fast way (documents hold only plain values)."""
    return None if doc is None else pickle.loads(pickle.dumps(doc, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own data


class MemoryStore:
    """The store in dictionaries, with the same semantics as :class:`MongoStore` (no transactions)."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Doc]] = {
            name: {} for name in (*FIGURE_COLLECTIONS, THRESHOLDS, SUMMARIES)
        }
        self.staged: list[tuple[str, HomeworkEvent]] = []

    def _c(self, name: str) -> dict[str, Doc]:
        return self.collections[name]

    async def assignment(self, assignment_id: str) -> Doc | None:
        return _copy(self._c(ASSIGNMENTS).get(assignment_id))

    async def insert_assignment(self, doc: Doc) -> None:
        if doc["_id"] in self._c(ASSIGNMENTS):
            raise ValueError(f"duplicate assignment {doc['_id']}")
        self._c(ASSIGNMENTS)[doc["_id"]] = copy.deepcopy(doc)

    async def update_assignment(self, assignment_id: str, update: Update) -> None:
        if assignment_id in self._c(ASSIGNMENTS):
            apply_update(self._c(ASSIGNMENTS)[assignment_id], update)

    async def assignments_of(
        self, practice_id: str, client_id: str, *, active_since: datetime | None = None
    ) -> list[Doc]:
        found = [
            copy.deepcopy(a)
            for a in self._c(ASSIGNMENTS).values()
            if (a["practice_id"], a["client_id"]) == (practice_id, client_id)
            and (active_since is None or a["active_until"] >= active_since)
        ]
        return sorted(found, key=lambda a: a["created_at"])

    async def occurrence(self, occurrence_id: str) -> Doc | None:
        return _copy(self._c(OCCURRENCES).get(occurrence_id))

    async def occurrences(self, occurrence_ids: list[str]) -> list[Doc]:
        return [copy.deepcopy(d) for i in occurrence_ids if (d := self._c(OCCURRENCES).get(i)) is not None]

    async def outcomes_of(self, assignment_id: str) -> list[Doc]:
        found = [
            copy.deepcopy(o)
            for o in self._c(OCCURRENCES).values()
            if o.get("assignment_id") == assignment_id and o.get("opens_at") is not None
        ]
        return sorted(found, key=lambda o: o["opens_at"])

    def _upsert(self, name: str, key: str, update: Update) -> None:
        docs = self._c(name)
        if key in docs:
            apply_update(docs[key], update)
        else:
            docs[key] = apply_update({"_id": key}, update, inserting=True)

    async def update_occurrence(self, occurrence_id: str, update: Update) -> None:
        if update:
            self._upsert(OCCURRENCES, occurrence_id, update)

    async def update_day(self, key: str, update: Update) -> None:
        if update:
            self._upsert(DAYS, key, update)

    async def days_of(self, practice_id: str, client_id: str, first: str, last: str) -> list[Doc]:
        found = [
            copy.deepcopy(d)
            for d in self._c(DAYS).values()
            if (d.get("practice_id"), d.get("client_id")) == (practice_id, client_id) and first <= d["date"] <= last
        ]
        return sorted(found, key=lambda d: d["date"])

    async def hold(self, doc: Doc) -> None:
        self._c(HELD).setdefault(doc["_id"], {**copy.deepcopy(doc), "seq": doc.get("seq", time.time_ns())})

    async def held_for(self, assignment_id: str) -> list[Doc]:
        found = [copy.deepcopy(h) for h in self._c(HELD).values() if h["assignment_id"] == assignment_id]
        return sorted(found, key=lambda h: h["seq"])

    async def release(self, event_ids: list[str]) -> None:
        for i in event_ids:
            self._c(HELD).pop(i, None)

    async def client(self, practice_id: str, client_id: str) -> Doc | None:
        return copy.deepcopy(self._c(CLIENTS).get(client_key(practice_id, client_id)))

    async def update_client(self, practice_id: str, client_id: str, update: Update) -> None:
        self._upsert(CLIENTS, client_key(practice_id, client_id), _keyed(update, practice_id, client_id))

    async def thresholds(self, practice_id: str, client_id: str) -> Doc | None:
        return _copy(self._c(THRESHOLDS).get(client_key(practice_id, client_id)))

    async def put_thresholds(self, practice_id: str, client_id: str, doc: Doc) -> None:
        key = client_key(practice_id, client_id)
        full = {**doc, "_id": key, "practice_id": practice_id, "client_id": client_id}
        self._c(THRESHOLDS)[key] = copy.deepcopy(full)

    async def insert_summary(self, doc: Doc) -> None:
        self._c(SUMMARIES)[doc["_id"]] = copy.deepcopy(doc)

    async def summary(self, summary_id: str) -> Doc | None:
        return copy.deepcopy(self._c(SUMMARIES).get(summary_id))

    async def summaries_of(
        self, practice_id: str, client_id: str, limit: int = 50, after: Doc | None = None
    ) -> list[Doc]:
        found = [
            copy.deepcopy(s)
            for s in self._c(SUMMARIES).values()
            if (s["practice_id"], s["client_id"]) == (practice_id, client_id)
            and (after is None or (s["generated_at"], s["_id"]) < (after["generated_at"], after["_id"]))
        ]
        return sorted(found, key=lambda s: (s["generated_at"], s["_id"]), reverse=True)[:limit]

    async def stage(self, event: HomeworkEvent, event_id: str) -> None:
        if all(i != event_id for i, _ in self.staged):
            self.staged.append((event_id, event))


def _by_client_key(key: ClientKey) -> Doc:
    return {"_id": client_key(key.practice_id, key.client_id)}


CLIENT_DATA = ClientData(
    exported={
        READ_AUDIT: by_client,  # who read the client's data: theirs to see; pseudonymised, not deleted, on erasure
        ASSIGNMENTS: by_client,
        DAYS: by_client,
        OCCURRENCES: by_assignment,
        HELD: by_client,
        CLIENTS: _by_client_key,
        THRESHOLDS: _by_client_key,
        SUMMARIES: by_client,
    },
    client_free={
        **OPERATIONAL,
        TOMBSTONES: TOMBSTONE_REASON,
        "migrations": "which data migrations ran, and when: nothing about a client",
    },
    assignments=ASSIGNMENTS,
)
"""Which collections hold a client's data and how they are keyed (the export reads these; its test checks them)."""
