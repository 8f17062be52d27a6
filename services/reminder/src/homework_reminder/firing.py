"""Firing due reminders exactly once across replicas, and detecting missed occurrences.

Claiming (the batch lock-and-fetch of db-scheduler, in three round trips whatever the batch):

1. an indexed ``find`` of candidate ids: pending reminders due by now, and claimed ones whose
   lease expired (their replica died or hung);
2. one ``update_many`` on those ids whose filter re-checks the state (and, for a takeover, that
   the lease is still expired), setting ``claimed``, the owner, ``lease_until`` and a fresh claim
   token: of two replicas racing for a reminder, only one update matches it;
3. firing, in one transaction per batch: the reminders still claimed with our token become
   ``fired`` and their ``ReminderSent`` events are staged in the outbox, with the deterministic id
   ``sent:<reminder_id>@<due instant>`` so that even a rare double fire is one event downstream.

Misfire policy (after downtime, or a backlog): a claimed reminder whose occurrence's window has
already closed is not fired but cancelled (``window_closed``); the missed-occurrence check then
marks the occurrence missed. A due reminder whose window is still open fires, late.

Missed: a pending (unresolved, not void) occurrence whose window closed ``missed_grace_s`` ago is
marked ``missed`` and ``OccurrenceMissed`` (id ``missed:<occurrence_id>``) is staged in the same
transaction, whose conditional update makes it happen once whatever the number of replicas.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from homework_reminder.config import ReminderSettings
from homework_reminder.store import EPOCH, Doc, Lease, Store
from homework_reminder.usecases import Scheduler
from homework_shared.clock import Clock
from homework_shared.documents import pick
from homework_shared.events import HomeworkEvent, OccurrenceMissed, ReminderSent
from homework_shared.mongo import MongoClient, run_in_transaction
from homework_shared.outbox import Outbox

TAKEOVER_CHECK_S = 1.0


@dataclass
class Claim:
    """The reminders one claim took: their ids, the token, and how many were taken over from a dead lease."""

    token: str
    ids: list[str]
    taken_over: int = 0


@dataclass
class Fired:
    """What firing one claim did."""

    sent: list[Doc] = field(default_factory=list)
    closed: list[Doc] = field(default_factory=list)
    at: datetime | None = None


def sent_event_id(reminder_id: str, due_at: datetime) -> str:
    """The deterministic CloudEvents id of a reminder fired for the due instant ``due_at``."""
    return f"sent:{reminder_id}@{due_at.astimezone(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}"


def missed_event_id(occurrence_id: str) -> str:
    return f"missed:{occurrence_id}"


def platform_seconds(clock: Clock, real_seconds: float) -> timedelta:
    """``real_seconds`` of real time in platform time (a sped-up demo clock runs faster)."""
    return timedelta(seconds=real_seconds * float(getattr(clock, "speed", 1.0)))


class Firing:
    """Claims, fires and releases reminders for one replica (``owner``)."""

    def __init__(
        self,
        store: Store,
        mongo: MongoClient,
        outbox: Outbox,
        scheduler: Scheduler,
        clock: Clock,
        settings: ReminderSettings,
    ) -> None:
        self.store = store
        self.mongo = mongo
        self.outbox = outbox
        self.scheduler = scheduler
        self.clock = clock
        self.owner = settings.replica_id
        self.batch_size = settings.fire_batch_size
        self.lease = platform_seconds(clock, settings.lease_ttl_s)
        self.missed_grace = timedelta(seconds=settings.missed_grace_s)
        self.missed_batch_size = settings.missed_batch_size
        self._takeover_checked = 0.0

    async def claim_due(self) -> Claim:
        """Take a lease on up to a batch of due reminders (see the module docstring)."""
        now = self.clock.now()
        due = await self.store.due_ids(now, self.batch_size)
        room = self.batch_size - len(due)
        expired: list[str] = []
        # Expired leases are rare (a replica died): look for them at most once a second.
        if room > 0 and time.monotonic() - self._takeover_checked >= TAKEOVER_CHECK_S:
            self._takeover_checked = time.monotonic()
            expired = await self.store.expired_claim_ids(now, room)
        lease = Lease(self.owner, now + self.lease, uuid.uuid4().hex)
        claim = Claim(token=lease.token, ids=[])
        claimed_due = await self.store.claim(due, lease)
        claim.taken_over = await self.store.take_over(expired, lease, now)
        if claimed_due == len(due) and not expired:
            claim.ids = due  # took them all: no need to ask which
        elif due or expired:
            claim.ids = await self.store.claimed_with(lease.token)
        return claim

    async def fire(self, claim: Claim) -> Fired:
        """Fire the reminders still held under ``claim``; cancel those whose window has closed."""
        if not claim.ids:
            return Fired()
        lease = Lease(self.owner, EPOCH, claim.token)  # only the owner and token select what it holds

        async def fire_in(session: AsyncClientSession) -> Fired:
            now = self.clock.now()
            held = await self.store.held(lease, session)
            fired = Fired(
                sent=[d for d in held if d["closes_at"] > now],
                closed=[d for d in held if d["closes_at"] <= now],
                at=now,
            )
            events: list[tuple[HomeworkEvent, str | None]] = []
            if fired.sent:
                await self.store.fire(lease, now, session)
                events += [(sent_event(d, now), sent_event_id(d["_id"], d["due_at"])) for d in fired.sent]
                await self.store.queue_deliveries(await self._deliveries(fired.sent, now, session), session)
            if fired.closed:
                cancelled = await self.scheduler.cancel_reminders(fired.closed, "window_closed", now, session)
                events += [(e, None) for e in cancelled]
            records = [self.outbox.prepare(event, event_id=event_id, time=now) for event, event_id in events]
            # The claim makes a second record of one firing impossible, so the look-up for an earlier copy is
            # skipped; should one exist after all, the insert fails and the batch is fired again with it.
            await self.outbox.stage_prepared(session, records, check_existing=careful)
            return fired

        careful = False
        try:
            fired = await run_in_transaction(self.mongo, fire_in)
        except DuplicateKeyError:
            careful = True
            fired = await run_in_transaction(self.mongo, fire_in)
        return fired

    async def _deliveries(self, sent: list[Doc], now: datetime, session: AsyncClientSession) -> list[Doc]:
        """The webhook deliveries of fired reminders: those with the webhook channel, of practices that set one."""
        wanting = [d for d in sent if "webhook" in d["channels"]]
        if not wanting:
            return []
        practices = await self.store.webhook_practices(sorted({d["practice_id"] for d in wanting}), session)
        return [
            {
                "_id": sent_event_id(d["_id"], d["due_at"]),
                "practice_id": d["practice_id"],
                "reminder_id": d["_id"],
                "event": sent_event(d, now).model_dump(mode="json", exclude_none=True),
                "event_time": now,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": datetime.now(UTC),
                "lease_until": EPOCH,
                "created_at": now,
            }
            for d in wanting
            if d["practice_id"] in practices
        ]

    async def release(self) -> int:
        """Give back this replica's unfired leases (graceful shutdown): another replica fires them at once."""
        return await self.store.release(self.owner)

    async def detect_missed(self) -> list[Doc]:
        """Mark occurrences whose window closed unresolved as missed, publishing ``OccurrenceMissed`` once each."""
        now = self.clock.now()
        candidates = await self.store.closed_pending_occurrences(now - self.missed_grace, self.missed_batch_size)
        if not candidates:
            return []

        async def mark(session: AsyncClientSession) -> list[Doc]:
            docs = await self.store.mark_missed([c["_id"] for c in candidates], now, session)
            if not docs:
                return []
            waiting = await self.store.waiting_reminders_of([d["_id"] for d in docs], session)
            cancelled = await self.scheduler.cancel_reminders(waiting, "window_closed", now, session)
            events: list[tuple[HomeworkEvent, str | None]] = [
                (missed_event(d, now), missed_event_id(d["_id"])) for d in docs
            ]
            await self.outbox.stage_many(session, events + [(e, None) for e in cancelled], time=now)
            return docs

        return await run_in_transaction(self.mongo, mark)


def sent_event(doc: Doc, now: datetime) -> ReminderSent:
    return ReminderSent(
        **pick(doc, "client_id", "practice_id", "assignment_id", "occurrence_id", "due_at", "channels", "title"),
        **pick(doc, "kind", "closes_at"),
        reminder_id=doc["_id"],
        sent_at=now,
    )


def missed_event(doc: Doc, now: datetime) -> OccurrenceMissed:
    return OccurrenceMissed(
        **pick(doc, "client_id", "practice_id", "assignment_id", "opens_at", "closes_at"),
        occurrence_id=doc["_id"],
        local_start=datetime.fromisoformat(doc["local_start"]),
        detected_at=now,
    )


def lateness(docs: list[Doc], at: datetime) -> list[float]:
    """Seconds between each reminder's due instant and ``at``."""
    return [max(0.0, (at - d["due_at"]).total_seconds()) for d in docs]
