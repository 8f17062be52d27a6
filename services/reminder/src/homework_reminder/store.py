"""The reminder service's MongoDB collections, their indexes, and the queries the handlers and loops make.

* ``plans``: one document per assignment (schedule history, pauses, stop, ``expanded_until``).
* ``occurrences``: every occurrence up to the horizon, for missed detection (even without reminders).
* ``reminders``: one document per reminder, claimed with an expiring lease when due.
* ``preferences``: per client and practice; ``webhooks``: per practice; ``deliveries``: the webhook queue.

Every query here has an index (``ensure_indexes``). Nothing is kept in memory: what is pending lives here.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

from pydantic import TypeAdapter
from pymongo import ASCENDING
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
from homework_shared.events import Channel, HomeworkKind, ReminderWish, Schedule
from homework_shared.export import OPERATIONAL, ClientData, ClientKey, by_assignment, by_client
from homework_shared.occurrences import Interruption

Doc = dict[str, Any]
Session = AsyncClientSession | None
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
PENDING = "pending"
COUNTER_SHARDS = 32
"""The number of waiting reminders is kept in this many counter documents (``counters``), each write
adding to a random one: transactions rarely touch the same one, and the sum is a 32-document read.
Counting the reminders themselves would read every waiting reminder (about 30 s per million on SecantusDB)."""
_PENDING_SHARDS = [f"{PENDING}:{i}" for i in range(COUNTER_SHARDS)]
FINISHED_RETENTION = timedelta(days=45)
"""Fired and cancelled reminders, and finished webhook deliveries, are forgotten after this."""
UPCOMING = [("practice_id", ASCENDING), ("client_id", ASCENDING), ("state", ASCENDING), ("due_at", ASCENDING)]
"""A client's waiting reminders, soonest first: the practice leads, as in every query by client."""


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
        for shard in _PENDING_SHARDS:  # created up front: an upsert race inside transactions would abort them
            await self.counters.update_one({"_id": shard}, {"$setOnInsert": {"n": 0}}, upsert=True)

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

    # ------------------------------------------------------------------ reminders

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

        Bounded, so the due index reads only the reminders of that window: unbounded, a server
        that cannot walk an index in order (the local SecantusDB) reads and sorts every pending
        reminder to find the first, and the firing loop asks every poll.
        """
        doc = await self.reminders.find_one(
            {"state": ReminderState.PENDING, "due_at": {"$lt": before}},
            {"due_at": 1},
            sort=[("state", ASCENDING), ("due_at", ASCENDING)],
        )
        return doc["due_at"] if doc else None

    async def count_pending(self, delta: int, session: Session) -> None:
        """Add ``delta`` to the number of waiting reminders, in the caller's transaction (one random shard)."""
        if delta:
            shard = f"{PENDING}:{random.randrange(COUNTER_SHARDS)}"
            await self.counters.update_one({"_id": shard}, {"$inc": {"n": delta}}, session=session)

    async def count_waiting(self) -> int:
        """How many reminders wait to fire (pending or claimed), from the sharded counter: cheap at any size."""
        return sum([int(d["n"]) async for d in self.counters.find({"_id": {"$in": _PENDING_SHARDS}})])

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
        for field in ("secret", "secret_ciphertext"):
            unchanged[field] = webhook.get(field, {"$exists": False})
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
        pauses=tuple(Interruption(p["start"], p["end"]) for p in doc["pauses"]),
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
        "plans": by_client,
        "occurrences": by_assignment,
        "reminders": by_client,
        "preferences": by_client,
        "deliveries": _deliveries_of,
        HELD: by_client,
    },
    client_free={
        **OPERATIONAL,
        "webhooks": "one per practice: its URL and encrypted secret, nothing about a client",
        "counters": "how many reminders wait, in total: numbers only",
    },
    assignments="plans",
)
"""Which collections hold a client's data and how they are keyed (the export reads these; its test checks them)."""
