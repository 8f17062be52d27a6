"""Events that arrive before their assignment: held, then applied in the transaction that creates it.

Kafka keeps order within a partition, but an assignment's events can still reach this service
before its ``AssignmentCreated``: a replay from the dead-letter topic, a topic restored from a
backup, a producer that wrote them out of order. Parking them would lose them until someone
replays; instead each is stored in ``held_events`` (keyed by its event id, so a redelivery holds
it once) and applied, in arrival order, right after its assignment is created, in the same
transaction. Only events of the same practice and assignment are released; a released event
that still cannot be applied (another client's completion) is dropped with an error line and
``reminder_held_events_dropped_total``, as parking would have reported it.

Bounded in time: a held event is forgotten ``HELD_EVENT_TTL_S`` (real seconds, default 7 days,
the topics' retention) after it arrived, by a TTL index; an assignment that was never created
within that time will not be.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from homework_shared.events import EVENTS_BY_TYPE, TOLERANT, Envelope
from homework_shared.observability import ServiceMetrics

log = logging.getLogger(__name__)

HELD = "held_events"


class HeldEvents:
    """The ``held_events`` collection: hold an event, take an assignment's held events back."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], ttl_s: float, metrics: ServiceMetrics) -> None:
        self.collection = db[HELD]
        self.ttl_s = ttl_s
        self.held: Counter = metrics.counter(
            "reminder_held_events_total", "Events held because their assignment was not created here yet"
        )
        self.released: Counter = metrics.counter(
            "reminder_held_events_released_total", "Held events applied once their assignment was created"
        )
        self.dropped: Counter = metrics.counter(
            "reminder_held_events_dropped_total",
            "Held events that could not be applied when their assignment was created, by reason",
            ["reason"],
        )

    async def ensure_indexes(self) -> None:
        """The release query's index and the TTL that bounds the collection (idempotent; a changed TTL is applied)."""
        await self.collection.create_index(
            [("practice_id", ASCENDING), ("assignment_id", ASCENDING), ("seq", ASCENDING)], name="by_assignment"
        )
        ttl = int(self.ttl_s)
        try:
            await self.collection.create_index("held_at", name="held_ttl", expireAfterSeconds=ttl)
        except OperationFailure as exc:
            if exc.code not in (85, 86):  # Index{Options,KeySpecs}Conflict: the TTL changed; change it in place
                raise
            await self.collection.database.command(
                {"collMod": HELD, "index": {"name": "held_ttl", "expireAfterSeconds": ttl}}
            )

    async def hold(self, env: Envelope[Any], session: AsyncClientSession) -> None:
        """Keep ``env`` until its assignment is created (once per event id)."""
        data = env.data
        doc = {
            "practice_id": data.practice_id,
            "client_id": data.client_id,
            "assignment_id": data.assignment_id,
            "seq": time.time_ns(),
            "type": env.type,
            "source": env.source,
            "time": env.time,
            "subject": env.subject,
            "traceparent": env.traceparent,
            "data": data.model_dump(mode="json"),
            "held_at": datetime.now(UTC),  # real time: the TTL monitor reads it
        }
        result = await self.collection.update_one({"_id": env.id}, {"$setOnInsert": doc}, upsert=True, session=session)
        if result.upserted_id is not None:
            self.held.inc()
            log.info("holding %s (%s) until assignment %s is created", env.id, env.type, data.assignment_id)

    async def take(self, practice_id: str, assignment_id: str, session: AsyncClientSession) -> list[Envelope[Any]]:
        """Remove and return the events held for this practice's assignment, in the order they arrived."""
        query = {"practice_id": practice_id, "assignment_id": assignment_id}
        docs = await self.collection.find(query, session=session).sort("seq", ASCENDING).to_list()
        if docs:
            await self.collection.delete_many({"_id": {"$in": [d["_id"] for d in docs]}}, session=session)
        return [_envelope(d) for d in docs]

    def report_dropped(self, env: Envelope[Any], exc: Exception) -> None:
        """A released event that cannot be applied: an error line and a count, as parking it would give."""
        self.dropped.labels(type(exc).__name__).inc()
        log.error("dropping held event %s (%s) of assignment %s: %s", env.id, env.type, env.data.assignment_id, exc)


def _envelope(doc: dict[str, Any]) -> Envelope[Any]:
    data = EVENTS_BY_TYPE[doc["type"]].model_validate(doc["data"], context=TOLERANT)
    return Envelope(doc["_id"], doc["source"], doc["type"], doc["time"], doc["subject"], data, doc.get("traceparent"))
