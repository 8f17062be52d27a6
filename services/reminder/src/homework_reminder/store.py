"""The reminder service's MongoDB collections, their indexes, and the queries the handlers and loops make.

* ``plans``: one document per assignment (schedule history, pauses, stop, ``expanded_until``).
* ``occurrences``: every occurrence up to the horizon, for missed detection (even without reminders).
* ``reminders``: one document per reminder, claimed with an expiring lease when due.
* ``preferences``: per client and practice; ``webhooks``: per practice; ``deliveries``: the webhook queue.

Every query here has an index (``ensure_indexes``). Nothing is kept in memory: what is pending lives here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from pydantic import TypeAdapter
from pymongo import ASCENDING, InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from homework_reminder.domain import (
    WAITING,
    OccurrenceState,
    Plan,
    Preferences,
    QuietHours,
    ReminderState,
    Segment,
)
from homework_reminder.held import HELD
from homework_shared.erasure import TOMBSTONE_REASON, TOMBSTONES
from homework_shared.events import Channel, HomeworkKind, ReminderWish, Schedule
from homework_shared.export import OPERATIONAL, ClientData, ClientKey, by_assignment, by_client
from homework_shared.mongo import MongoClient, run_in_transaction
from homework_shared.occurrences import Pause
from homework_shared.read_audit import READ_AUDIT

Doc = dict[str, Any]
Session = AsyncClientSession | None
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
PENDING = "pending"
COUNTER_SHARDS = 32
"""Counter documents ``pending:0`` to ``pending:31`` of earlier versions, each written by a random transaction;
they are still summed (their counts stand), and new changes land in deltas (see ``count_pending``)."""
_PENDING_SHARDS = [f"{PENDING}:{i}" for i in range(COUNTER_SHARDS)]
_PENDING_BASE = _PENDING_SHARDS[0]
_PENDING_DELTA = f"{PENDING}+"
_ALL_PENDING = {"_id": {"$gt": PENDING, "$lt": f"{PENDING}~"}}
"""Every counter document of the pending count: the shards (``pending:<i>``) and the deltas (``pending+<id>``)."""
FOLD_BATCH = 1000
FINISHED_RETENTION = timedelta(days=45)
"""Fired and cancelled reminders, and finished webhook deliveries, are forgotten after this."""
UPCOMING = [("practice_id", ASCENDING), ("client_id", ASCENDING), ("state", ASCENDING), ("due_at", ASCENDING)]
"""A client's waiting reminders, soonest first: the practice leads, as in every query by client."""


_SUM: Doc = {"$group": {"_id": None, "n": {"$sum": "$n"}}}
_NO_LEASE: Doc = {"lease_until": EPOCH, "lease_owner": None}
"""The lease fields of a reminder or delivery nobody holds."""


@dataclass(frozen=True)
class Lease:
    """A claim on reminders (or deliveries) by one replica, until ``until``, marked with ``token``."""

    owner: str
    until: datetime
    token: str


def _take(lease: Lease, state: str = ReminderState.CLAIMED) -> Doc:
    held = {"lease_owner": lease.owner, "lease_until": lease.until, "claim_token": lease.token}
    return {"$set": {"state": state} | held}


def _held(lease: Lease) -> Doc:
    return {"claim_token": lease.token, "state": ReminderState.CLAIMED, "lease_owner": lease.owner}


@dataclass(frozen=True)
class OccurrenceChange:
    """A stored occurrence moves to ``state`` (pending or void, with its void reason), and to ``window`` if given."""

    occurrence_id: str
    state: OccurrenceState
    reason: str | None = None
    window: tuple[datetime, datetime] | None = None


@dataclass
class ReminderWrites:
    """What scheduling writes: new reminders (whole documents), cancelled ones revived (their new fields with
    ``_id``), and waiting ones changed (id, fields, and whether that gives them a new due instant)."""

    inserts: list[Doc] = field(default_factory=list)
    revivals: list[Doc] = field(default_factory=list)
    moves: list[tuple[str, Doc, bool]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.inserts or self.revivals or self.moves)


def finished_now() -> datetime:
    """The ``finished_at`` stamp: real time, not the platform clock, since MongoDB's TTL monitor reads it."""
    return datetime.now(UTC)


_schedule = TypeAdapter(Schedule)


class Store:
    """The collections of one reminder database."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.plans: AsyncCollection[Doc] = db["plans"]
        self.occurrences: AsyncCollection[Doc] = db["occurrences"]
        self.reminders: AsyncCollection[Doc] = db["reminders"]
        self.preferences: AsyncCollection[Doc] = db["preferences"]
        self.webhooks: AsyncCollection[Doc] = db["webhooks"]
        self.deliveries: AsyncCollection[Doc] = db["deliveries"]
        self.counters: AsyncCollection[Doc] = db["counters"]

    async def ensure_indexes(self) -> None:
        """Create every index the queries below use (idempotent)."""
        ttl = int(FINISHED_RETENTION.total_seconds())
        await self.plans.create_index([("state", ASCENDING), ("extend_after", ASCENDING)], name="to_extend")
        await self.plans.create_index([("practice_id", ASCENDING), ("client_id", ASCENDING)], name="by_client")
        await self.occurrences.create_index([("state", ASCENDING), ("closes_at", ASCENDING)], name="to_close")
        await self.occurrences.create_index([("assignment_id", ASCENDING), ("closes_at", ASCENDING)], name="by_plan")
        await self.reminders.create_index([("state", ASCENDING), ("due_at", ASCENDING)], name="due")
        await self.reminders.create_index("claim_token", name="claim_token", sparse=True)
        await self.reminders.create_index("occurrence_id", name="by_occurrence")
        if "upcoming" in await self.reminders.index_information():  # keyed by client id alone: replaced
            await self.reminders.drop_index("upcoming")
        await self.reminders.create_index(UPCOMING, name="upcoming_in_practice")
        await self.reminders.create_index("finished_at", name="finished_ttl", expireAfterSeconds=ttl, sparse=True)
        await self.preferences.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING)], name="by_client", unique=True
        )
        await self.deliveries.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)], name="due")
        await self.deliveries.create_index([("state", ASCENDING), ("lease_until", ASCENDING)], name="leases")
        await self.deliveries.create_index("claim_token", name="claim_token", sparse=True)
        await self.deliveries.create_index("finished_at", name="finished_ttl", expireAfterSeconds=ttl)
        # Created up front: an upsert race inside transactions would abort them.
        await self.counters.update_one({"_id": _PENDING_BASE}, {"$setOnInsert": {"n": 0}}, upsert=True)

    # ------------------------------------------------------------------ plans

    async def plan(self, assignment_id: str, session: Session = None) -> Plan | None:
        doc = await self.plans.find_one({"_id": assignment_id}, session=session)
        return plan_from_doc(doc) if doc else None

    async def plan_and_horizon(self, assignment_id: str, session: Session) -> tuple[Plan, datetime] | None:
        """A plan and how far its occurrences are stored (``expanded_until``)."""
        doc = await self.plans.find_one({"_id": assignment_id}, session=session)
        return (plan_from_doc(doc), doc["expanded_until"]) if doc else None

    async def insert_plan(self, plan: Plan, expanded_until: datetime, exhausted: bool, session: Session) -> bool:
        """Insert a new plan; False (and nothing written) when one with its id exists."""
        doc = _plan_doc(plan, expanded_until, exhausted)
        doc.pop("_id")
        result = await self.plans.update_one(
            {"_id": plan.assignment_id}, {"$setOnInsert": doc}, upsert=True, session=session
        )
        return result.upserted_id is not None

    async def save_plan(self, plan: Plan, expanded_until: datetime, exhausted: bool, session: Session) -> None:
        """Insert or replace a plan, with how far its occurrences are stored and whether any are left."""
        doc = _plan_doc(plan, expanded_until, exhausted)
        await self.plans.replace_one({"_id": plan.assignment_id}, doc, upsert=True, session=session)

    async def plans_to_extend(self, before: datetime, limit: int) -> list[str]:
        """Active plans whose stored occurrences end before ``before``."""
        cursor = self.plans.find({"state": "active", "extend_after": {"$lt": before}}, {"_id": 1}).limit(limit)
        return [d["_id"] async for d in cursor]

    async def client_known(self, practice_id: str, client_id: str) -> bool:
        """Whether this practice has ever assigned homework to this client here."""
        found = await self.plans.find_one({"practice_id": practice_id, "client_id": client_id}, {"_id": 1})
        return found is not None

    async def plans_of_client(self, practice_id: str, client_id: str, session: Session = None) -> list[str]:
        cursor = self.plans.find(
            {"practice_id": practice_id, "client_id": client_id, "state": {"$ne": "stopped"}},
            {"_id": 1},
            session=session,
        )
        return [d["_id"] async for d in cursor]

    # ------------------------------------------------------------------ occurrences

    async def occurrences_closing_after(self, assignment_id: str, since: datetime, session: Session) -> dict[str, Doc]:
        """Stored occurrences of a plan whose window closes after ``since``, in any state."""
        cursor = self.occurrences.find({"assignment_id": assignment_id, "closes_at": {"$gt": since}}, session=session)
        return {d["_id"]: d async for d in cursor}

    async def occurrence(self, occurrence_id: str, session: Session = None) -> Doc | None:
        return await self.occurrences.find_one({"_id": occurrence_id}, session=session)

    async def closed_pending_occurrences(self, closed_by: datetime, limit: int, session: Session = None) -> list[Doc]:
        """Pending occurrences whose window closed by ``closed_by``: candidates for missed."""
        cursor = self.occurrences.find(
            {"state": OccurrenceState.PENDING, "closes_at": {"$lte": closed_by}}, session=session
        ).limit(limit)
        return await cursor.to_list()

    async def write_occurrences(self, inserts: list[Doc], changes: list[OccurrenceChange], session: Session) -> None:
        """Insert new occurrences (with their ``_id``) and move stored ones to pending or void, in one bulk write.

        A state change applies only to an occurrence still pending or void: a resolution read meanwhile wins.
        """
        ops: list[Any] = [InsertOne(doc) for doc in inserts]
        for change in changes:
            fields: Doc = {"state": change.state, "void_reason": change.reason}
            if change.window is not None:
                fields |= {"opens_at": change.window[0], "closes_at": change.window[1]}
            unresolved = [OccurrenceState.PENDING, OccurrenceState.VOID]
            ops.append(UpdateOne({"_id": change.occurrence_id, "state": {"$in": unresolved}}, {"$set": fields}))
        if ops:
            await self.occurrences.bulk_write(ops, ordered=False, session=session)

    async def resolve_occurrence(self, doc: Doc, state: OccurrenceState, at: datetime, session: Session) -> None:
        """Mark an occurrence completed or skipped; stored from ``doc`` (with its ``_id``) if it is not yet."""
        unset = {k: v for k, v in doc.items() if k not in ("_id", "state")}
        await self.occurrences.update_one(
            {"_id": doc["_id"]},
            {"$set": {"state": state, "resolved_at": at}, "$setOnInsert": unset},
            upsert=True,
            session=session,
        )

    async def mark_missed(self, occurrence_ids: list[str], at: datetime, session: Session) -> list[Doc]:
        """Mark those of these occurrences still pending as missed; returns them (as they were)."""
        pending = {"_id": {"$in": occurrence_ids}, "state": OccurrenceState.PENDING}
        docs = await self.occurrences.find(pending, session=session).to_list()
        if docs:
            pending["_id"] = {"$in": [d["_id"] for d in docs]}
            change = {"$set": {"state": OccurrenceState.MISSED, "resolved_at": at}}
            await self.occurrences.update_many(pending, change, session=session)
        return docs

    # ------------------------------------------------------------------ reminders: queries

    async def reminder(self, reminder_id: str, session: Session = None) -> Doc | None:
        return await self.reminders.find_one({"_id": reminder_id}, session=session)

    async def reminders_of(self, occurrence_ids: list[str], session: Session) -> list[Doc]:
        cursor = self.reminders.find({"occurrence_id": {"$in": occurrence_ids}}, session=session)
        return await cursor.to_list()

    async def waiting_reminders_of(self, occurrence_ids: list[str], session: Session) -> list[Doc]:
        cursor = self.reminders.find(
            {"occurrence_id": {"$in": occurrence_ids}, "state": {"$in": list(WAITING)}}, session=session
        )
        return await cursor.to_list()

    async def upcoming(self, practice_id: str, client_id: str, limit: int) -> list[Doc]:
        """A client's reminders that have not fired yet, soonest first."""
        cursor = (
            self.reminders.find({"practice_id": practice_id, "client_id": client_id, "state": {"$in": list(WAITING)}})
            .sort(UPCOMING)
            .limit(limit)
        )
        docs = await cursor.to_list()
        return sorted(docs, key=lambda d: d["due_at"])[:limit]

    async def next_due(self, before: datetime) -> datetime | None:
        """When the soonest pending reminder due before ``before`` falls due; None if none is.

        Bounded by ``before`` (the next poll): kept for a real replica set too, since the answer is only
        used when it falls before the next poll, and the bound lets an index walk stop at that instant.
        """
        doc = await self.reminders.find_one(
            {"state": ReminderState.PENDING, "due_at": {"$lt": before}},
            {"due_at": 1},
            sort=[("state", ASCENDING), ("due_at", ASCENDING)],
        )
        return doc["due_at"] if doc else None

    async def due_ids(self, now: datetime, limit: int) -> list[str]:
        """Pending reminders due by ``now``, soonest first: candidates for a claim."""
        cursor = (
            self.reminders.find({"state": ReminderState.PENDING, "due_at": {"$lte": now}}, {"_id": 1})
            .sort([("state", ASCENDING), ("due_at", ASCENDING)])
            .limit(limit)
        )
        return [d["_id"] async for d in cursor]

    async def expired_claim_ids(self, now: datetime, limit: int) -> list[str]:
        """Claimed reminders whose lease expired by ``now`` (their replica died or hung): candidates for a takeover."""
        # Claimed reminders are few (those in flight), so the due index finds them; the lease is checked here.
        claimed = self.reminders.find({"state": ReminderState.CLAIMED, "due_at": {"$lte": now}}, {"lease_until": 1})
        return [d["_id"] async for d in claimed if d["lease_until"] < now][:limit]

    async def claimed_with(self, token: str) -> list[str]:
        """The reminders one claim took (by its token)."""
        return [d["_id"] async for d in self.reminders.find({"claim_token": token}, {"_id": 1})]

    async def held(self, lease: Lease, session: Session) -> list[Doc]:
        """The reminders still claimed under ``lease`` (a snooze, a cancel or a takeover may have taken some)."""
        return await self.reminders.find(_held(lease), session=session).to_list()

    # ------------------------------------------------------------------ reminders: the lifecycle
    # pending --claim/take_over--> claimed --fire--> fired --snooze--> pending
    # pending/claimed --cancel--> cancelled --revive--> pending; claimed --release--> pending
    # Every step that moves a reminder into or out of waiting (pending or claimed) keeps the pending count.

    async def schedule(self, changes: ReminderWrites, session: Session) -> None:
        """Insert, revive and move reminders in one bulk write; the pending count grows by those that wait anew.

        A revival matches only a reminder still cancelled, a move only one still waiting: both were read in this
        transaction's snapshot, so the filters match and the count is exact.
        """
        ops: list[Any] = [InsertOne(doc) for doc in changes.inserts]
        for doc in changes.revivals:
            fields = {k: v for k, v in doc.items() if k not in ("_id", "created_at")} | _NO_LEASE
            revive = {"$set": fields, "$unset": {"cancel_reason": "", "finished_at": "", "claim_token": ""}}
            ops.append(UpdateOne({"_id": doc["_id"], "state": ReminderState.CANCELLED}, revive))
        for reminder_id, fields, rescheduled in changes.moves:
            update: Doc = {"$set": fields}
            if rescheduled:  # a new due instant: any lease on the old one is void
                update = {"$set": fields | {"state": ReminderState.PENDING} | _NO_LEASE, "$unset": {"claim_token": ""}}
            ops.append(UpdateOne({"_id": reminder_id, "state": {"$in": list(WAITING)}}, update))
        if ops:
            await self.reminders.bulk_write(ops, ordered=False, session=session)
            waiting = sum(1 for d in changes.inserts if d["state"] == ReminderState.PENDING)
            await self.count_pending(waiting + len(changes.revivals), session)

    async def claim(self, reminder_ids: list[str], lease: Lease) -> int:
        """Pending to claimed under ``lease``, for those of ``reminder_ids`` still pending; returns how many."""
        if not reminder_ids:
            return 0
        pending = {"_id": {"$in": reminder_ids}, "state": ReminderState.PENDING}
        return (await self.reminders.update_many(pending, _take(lease))).modified_count

    async def take_over(self, reminder_ids: list[str], lease: Lease, now: datetime) -> int:
        """Claim reminders whose lease expired by ``now`` under ``lease``; returns how many (another may win some)."""
        if not reminder_ids:
            return 0
        expired = {"_id": {"$in": reminder_ids}, "state": ReminderState.CLAIMED, "lease_until": {"$lt": now}}
        return (await self.reminders.update_many(expired, _take(lease))).modified_count

    async def fire(self, lease: Lease, now: datetime, session: Session) -> int:
        """Claimed to fired, for the reminders held under ``lease`` whose window is still open; returns how many."""
        done = {"state": ReminderState.FIRED, "fired_at": now, "fired_by": lease.owner, "finished_at": finished_now()}
        result = await self.reminders.update_many(
            _held(lease) | {"closes_at": {"$gt": now}},
            {"$set": done | _NO_LEASE, "$unset": {"claim_token": ""}, "$inc": {"fires": 1}},
            session=session,
        )
        await self.count_pending(-result.modified_count, session)
        return result.modified_count

    async def cancel(self, reminder_ids: list[str], reason: str, session: Session) -> int:
        """Waiting to cancelled (any lease is void), for those of ``reminder_ids`` still waiting; returns how many."""
        if not reminder_ids:
            return 0
        done = {"state": ReminderState.CANCELLED, "cancel_reason": reason, "finished_at": finished_now()}
        result = await self.reminders.update_many(
            {"_id": {"$in": reminder_ids}, "state": {"$in": list(WAITING)}},
            {"$set": done | _NO_LEASE, "$unset": {"claim_token": ""}},
            session=session,
        )
        await self.count_pending(-result.modified_count, session)
        return result.modified_count

    async def snooze(self, reminder: Doc, until: datetime, session: Session) -> Doc:
        """A waiting or fired reminder (as read in ``session``) waits again until ``until``; returns its fields."""
        change = {"state": ReminderState.PENDING, "due_at": until, "snoozed_until": until} | _NO_LEASE
        await self.reminders.update_one(
            {"_id": reminder["_id"], "state": reminder["state"]},
            {"$set": change, "$unset": {"claim_token": "", "finished_at": ""}},
            session=session,
        )
        if reminder["state"] == ReminderState.FIRED:
            await self.count_pending(1, session)
        return change

    async def release(self, owner: str) -> int:
        """Claimed back to pending, for every lease ``owner`` holds (a graceful shutdown); returns how many."""
        mine = {"state": ReminderState.CLAIMED, "lease_owner": owner}
        result = await self.reminders.update_many(mine, {"$set": {"state": ReminderState.PENDING} | _NO_LEASE})
        return result.modified_count

    async def count_pending(self, delta: int, session: Session) -> None:
        """Add ``delta`` to the number of waiting reminders, in the caller's transaction.

        Each change is a new document (``pending+<id>``), never an update of a shared one: on a replica set
        every transaction writing one document at once but the first is aborted (``WriteConflict``), so a
        shared counter, even split in 32 shards written at random, made concurrent schedulers and firing
        loops redo their transactions. An insert conflicts with nothing; ``fold_pending`` adds the deltas up.
        Only the lifecycle steps above call this (and a benchmark that seeds reminders directly).
        """
        if delta:
            doc = {"_id": f"{_PENDING_DELTA}{uuid.uuid4().hex}", "n": delta}
            await self.counters.insert_one(doc, session=session)

    async def count_waiting(self) -> int:
        """How many reminders wait to fire (pending or claimed): the sum of the counter documents, cheap at any
        size (the deltas are folded every ``PENDING_GAUGE_EVERY_S``)."""
        totals = await (await self.counters.aggregate([{"$match": _ALL_PENDING}, _SUM])).to_list()
        return int(totals[0]["n"]) if totals else 0

    async def fold_pending(self, client: MongoClient) -> int:
        """Add up to ``FOLD_BATCH`` deltas into ``pending:0`` and delete them, in one transaction; returns how many.

        Two replicas folding the same deltas conflict: one is redone, and then finds them gone.
        """

        async def fold(session: AsyncClientSession) -> int:
            deltas = self.counters.find({"_id": {"$gt": _PENDING_DELTA, "$lt": f"{_PENDING_DELTA}~"}}, session=session)
            docs = await deltas.limit(FOLD_BATCH).to_list()
            if docs:
                await self.counters.delete_many({"_id": {"$in": [d["_id"] for d in docs]}}, session=session)
                total = sum(int(d["n"]) for d in docs)
                await self.counters.update_one({"_id": _PENDING_BASE}, {"$inc": {"n": total}}, session=session)
            return len(docs)

        return await run_in_transaction(client, fold)

    # ------------------------------------------------------------------ webhook deliveries

    async def queue_deliveries(self, deliveries: list[Doc], session: Session) -> None:
        """Queue webhook deliveries (ids of already queued ones are skipped: a reminder fires one delivery)."""
        if not deliveries:
            return
        ids = [d["_id"] for d in deliveries]
        present = {x["_id"] async for x in self.deliveries.find({"_id": {"$in": ids}}, {"_id": 1}, session=session)}
        fresh = [d for d in deliveries if d["_id"] not in present]
        if fresh:
            await self.deliveries.insert_many(fresh, session=session)

    async def claim_deliveries(self, lease: Lease, now: datetime, limit: int) -> list[Doc]:
        """Take ``lease`` on up to ``limit`` due deliveries and as many whose lease expired; returns them."""
        due = await (
            self.deliveries.find({"state": "pending", "next_attempt_at": {"$lte": now}}, {"_id": 1})
            .sort([("state", ASCENDING), ("next_attempt_at", ASCENDING)])
            .limit(limit)
            .to_list()
        )
        expired = await (
            self.deliveries.find({"state": "sending", "lease_until": {"$lt": now}}, {"_id": 1}).limit(limit).to_list()
        )
        if not due and not expired:
            return []
        take = _take(lease, state="sending")
        if due:
            await self.deliveries.update_many({"_id": {"$in": [d["_id"] for d in due]}, "state": "pending"}, take)
        if expired:
            ids = [d["_id"] for d in expired]
            expired_filter = {"_id": {"$in": ids}, "state": "sending", "lease_until": {"$lt": now}}
            await self.deliveries.update_many(expired_filter, take)
        return await self.deliveries.find({"claim_token": lease.token}).to_list()

    async def delivery_attempted(self, delivery: Doc, fields: Doc) -> None:
        """Record an attempt's outcome (``fields``) on a delivery this replica still holds; its lease ends."""
        await self.deliveries.update_one(
            {"_id": delivery["_id"], "claim_token": delivery["claim_token"]},
            {"$set": fields | {"lease_until": EPOCH}, "$unset": {"claim_token": ""}},
        )

    # ------------------------------------------------------------------ preferences and webhooks

    async def preferences_of(self, practice_id: str, client_id: str, session: Session = None) -> Preferences:
        doc = await self.preferences.find_one({"practice_id": practice_id, "client_id": client_id}, session=session)
        return preferences_from_doc(doc) if doc else Preferences()

    async def preferences_doc(self, practice_id: str, client_id: str) -> Doc | None:
        return await self.preferences.find_one({"practice_id": practice_id, "client_id": client_id})

    async def webhook_practices(self, practice_ids: list[str], session: Session) -> set[str]:
        """Which of these practices have a webhook."""
        cursor = self.webhooks.find({"_id": {"$in": practice_ids}}, {"_id": 1}, session=session)
        return {d["_id"] async for d in cursor}

    async def webhooks_of(self, practice_ids: list[str]) -> dict[str, Doc]:
        """These practices' webhooks, by practice id."""
        return {d["_id"]: d async for d in self.webhooks.find({"_id": {"$in": practice_ids}})}

    async def all_webhooks(self) -> AsyncIterator[Doc]:
        """Every practice's webhook (for re-encrypting their secrets)."""
        async for doc in self.webhooks.find({}):
            yield doc

    async def replace_preferences(self, doc: Doc, session: Session) -> None:
        """Store a client's preferences (keyed by practice and client), replacing earlier ones."""
        key = {"practice_id": doc["practice_id"], "client_id": doc["client_id"]}
        await self.preferences.replace_one(key, doc, upsert=True, session=session)

    async def webhook(self, practice_id: str) -> Doc | None:
        return await self.webhooks.find_one({"_id": practice_id})

    async def set_webhook(self, practice_id: str, url: str, secret_ciphertext: str, by: str, at: datetime) -> Doc:
        """Set a practice's webhook; the secret arrives encrypted (``webhook_secrets.SecretBox``)."""
        doc = {
            "_id": practice_id,
            "url": url,
            "secret_ciphertext": secret_ciphertext,
            "updated_at": at,
            "updated_by": by,
        }
        await self.webhooks.replace_one({"_id": practice_id}, doc, upsert=True)
        return doc

    async def reseal_webhook_secret(self, webhook: Doc, secret_ciphertext: str) -> bool:
        """Replace the secret of ``webhook`` (as read) with ``secret_ciphertext``; False if it changed meanwhile."""
        unchanged = {"_id": webhook["_id"], "updated_at": webhook["updated_at"]}
        for name in ("secret", "secret_ciphertext"):
            unchanged[name] = webhook.get(name, {"$exists": False})
        result = await self.webhooks.update_one(
            unchanged, {"$set": {"secret_ciphertext": secret_ciphertext}, "$unset": {"secret": ""}}
        )
        return result.modified_count == 1

    async def delete_webhook(self, practice_id: str) -> bool:
        return (await self.webhooks.delete_one({"_id": practice_id})).deleted_count > 0


# ---------------------------------------------------------------------- documents


def _plan_doc(plan: Plan, expanded_until: datetime, exhausted: bool) -> Doc:
    doc = plan_to_doc(plan)
    doc["expanded_until"] = expanded_until
    # The extender looks at ``extend_after``; a schedule with nothing left is never due for it.
    doc["extend_after"] = FAR_FUTURE if exhausted else expanded_until
    return doc


def plan_to_doc(plan: Plan) -> Doc:
    return {
        "_id": plan.assignment_id,
        "client_id": plan.client_id,
        "practice_id": plan.practice_id,
        "title": plan.title,
        "kind": plan.kind.value,
        "version": plan.version,
        "created_at": plan.created_at,
        "segments": [
            {
                "starts_at": s.starts_at,
                "schedule": s.schedule.model_dump(mode="json"),
                "reminders": [w.model_dump(mode="json") for w in s.reminders],
            }
            for s in plan.segments
        ],
        "pauses": [{"start": p.start, "end": p.end} for p in plan.pauses],
        "stopped_at": plan.stopped_at,
        "stop_reason": plan.stop_reason,
        "reminders_from": plan.reminders_from,
        "state": plan.state,
    }


def plan_from_doc(doc: Doc) -> Plan:
    return Plan(
        assignment_id=doc["_id"],
        client_id=doc["client_id"],
        practice_id=doc["practice_id"],
        title=doc["title"],
        kind=HomeworkKind(doc["kind"]),
        version=doc["version"],
        created_at=doc["created_at"],
        segments=tuple(
            Segment(
                starts_at=s["starts_at"],
                schedule=_schedule.validate_python(s["schedule"]),
                reminders=tuple(ReminderWish.model_validate(w) for w in s["reminders"]),
            )
            for s in doc["segments"]
        ),
        pauses=tuple(Pause(p["start"], p["end"]) for p in doc["pauses"]),
        stopped_at=doc["stopped_at"],
        stop_reason=doc["stop_reason"],
        reminders_from=doc["reminders_from"],
    )


def preferences_from_doc(doc: Doc) -> Preferences:
    quiet = doc.get("quiet_hours")
    channels = doc.get("channels")
    return Preferences(
        timezone=doc.get("timezone"),
        quiet_hours=QuietHours(time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])) if quiet else None,
        channels=tuple(Channel(c) for c in channels) if channels else None,
    )


def _deliveries_of(key: ClientKey) -> Doc:
    # A delivery carries the ReminderSent event it posts; the client is in the event (no index: a
    # practice's deliveries are few, and finished ones are forgotten after FINISHED_RETENTION).
    return {"practice_id": key.practice_id, "event.client_id": key.client_id}


CLIENT_DATA = ClientData(
    exported={
        READ_AUDIT: by_client,  # who read the client's data: theirs to see; pseudonymised, not deleted, on erasure
        "plans": by_client,
        "occurrences": by_assignment,
        "reminders": by_client,
        "preferences": by_client,
        "deliveries": _deliveries_of,
        HELD: by_client,
    },
    client_free={
        **OPERATIONAL,
        TOMBSTONES: TOMBSTONE_REASON,
        "webhooks": "one per practice: its URL and encrypted secret, nothing about a client",
        "counters": "how many reminders wait, in total: numbers only",
    },
    assignments="plans",
)
"""Which collections hold a client's data and how they are keyed (the export reads these; its test checks them)."""
