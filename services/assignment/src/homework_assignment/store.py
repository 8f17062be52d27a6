"""MongoDB collections of the assignment service, with an index for every query it makes.

* ``assignments``: one document per assignment (current content, status, schedule history).
* ``revisions``: every version of an assignment's content, version 1 included.
* ``resolutions``: completions and skips, ``_id`` = occurrence id, so an occurrence is resolved at most once.
* ``audit_log``: who changed what and when, written in the same transaction as the change.
* ``outbox``, ``leases`` and ``idempotency_keys``: the shared outbox and Idempotency-Key memory.

Schedules and other content are stored as their JSON form (local times stay naive strings);
instants are BSON dates, so they index and compare.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from homework_assignment.domain import (
    Assignment,
    AssignmentContent,
    AssignmentStatus,
    Resolution,
)
from homework_shared.auth import Principal
from homework_shared.documents import pick
from homework_shared.erasure import TOMBSTONE_REASON, TOMBSTONES
from homework_shared.errors import Conflict
from homework_shared.events.values import Barrier, CompletionData, CompletionStatus, Schedule
from homework_shared.export import OPERATIONAL, ClientData, by_assignment, by_client
from homework_shared.idempotency import COLLECTION as IDEMPOTENCY_KEYS
from homework_shared.observability import current_request_id, current_trace_id
from homework_shared.occurrences import Pause, Segment
from homework_shared.read_audit import READ_AUDIT
from homework_shared.schedule import Occurrence

Doc = dict[str, Any]
Session = AsyncClientSession | None

_SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)
_DATA: TypeAdapter[Any] = TypeAdapter(CompletionData)
OPEN_STATUSES = [AssignmentStatus.ACTIVE.value, AssignmentStatus.PAUSED.value]
SYSTEM = "system:schedule"
"""The actor of an audit entry no caller made (an assignment ended by its schedule)."""

_last_micros = 0


def new_id(prefix: str) -> str:
    """A unique id that sorts by creation time: ``asg-0006123456789a1b2c3``."""
    global _last_micros
    _last_micros = max(_last_micros + 1, time.time_ns() // 1000)
    return f"{prefix}-{_last_micros:014x}{secrets.token_hex(3)}"


def _naive_local(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---------------------------------------------------------------- documents


def assignment_doc(a: Assignment) -> Doc:
    """The stored form of an assignment."""
    return {
        "_id": a.id,
        "practice_id": a.practice_id,
        "client_id": a.client_id,
        "therapist_id": a.therapist_id,
        "content": a.content.model_dump(mode="json"),
        "status": a.status.value,
        "version": a.version,
        "rev": a.rev,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "segments": [
            {"starts": s.starts_at, "schedule": _SCHEDULE.dump_python(s.schedule, mode="json")} for s in a.segments
        ],
        "interruptions": [{"start": p.start, "end": p.end} for p in a.pauses],  # stored name, kept
        "closed_at": a.closed_at,
        "end_reason": a.end_reason,
        "ends_at": a.ends_at,
        "resolved_count": a.resolved_count,
    }


def assignment_of(doc: Mapping[str, Any]) -> Assignment:
    """The assignment a stored document holds."""
    return Assignment(
        id=doc["_id"],
        practice_id=doc["practice_id"],
        client_id=doc["client_id"],
        therapist_id=doc["therapist_id"],
        content=AssignmentContent.model_validate(doc["content"]),
        status=AssignmentStatus(doc["status"]),
        version=doc["version"],
        rev=doc["rev"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        segments=tuple(Segment(s["starts"], _SCHEDULE.validate_python(s["schedule"])) for s in doc["segments"]),
        pauses=tuple(Pause(i["start"], i["end"]) for i in doc["interruptions"]),
        closed_at=doc.get("closed_at"),
        end_reason=doc.get("end_reason"),
        ends_at=doc.get("ends_at"),
        resolved_count=doc.get("resolved_count", 0),
    )


def resolution_doc(r: Resolution) -> Doc:
    """The stored form of a completion or skip; its ``_id`` is the occurrence id."""
    occ = r.occurrence
    return {
        "_id": occ.occurrence_id,
        "id": r.id,
        "type": r.type,
        "seq": r.id.split("-", 1)[1],
        "assignment_id": r.assignment_id,
        "practice_id": r.practice_id,
        "client_id": r.client_id,
        "local_start": occ.local_start.isoformat(),
        "opens_at": occ.opens_at,
        "closes_at": occ.closes_at,
        "recorded_at": r.recorded_at,
        "recorded_by": r.recorded_by,
        "late": r.late,
        "status": r.status.value if r.status else None,
        "percent": r.percent,
        "quality_rating": r.quality_rating,
        "data": r.data.model_dump(mode="json") if r.data is not None else None,
        "note": r.note,
        "completed_at": r.completed_at,
        "barrier": r.barrier.value if r.barrier else None,
        "barrier_text": r.barrier_text,
    }


def audit_entry(
    principal: Principal | None,
    action: str,
    before: Assignment | None,
    after: Assignment,
    now: datetime,
    **details: Any,
) -> Doc:
    """An audit log entry: who (the caller, or the schedule), what (action, versions, status), when."""
    return {
        "_id": new_id("aud"),
        "at": now,
        "actor": {"sub": principal.sub, "role": principal.role.value}
        if principal
        else {"sub": SYSTEM, "role": "system"},
        "practice_id": after.practice_id,
        "client_id": after.client_id,
        "assignment_id": after.id,
        "action": action,
        "before": {"version": before.version, "status": before.status.value} if before else None,
        "after": {"version": after.version, "status": after.status.value},
        "request_id": current_request_id(),
        "trace_id": current_trace_id(),
        **details,
    }


def resolution_of(doc: Mapping[str, Any]) -> Resolution:
    """The completion or skip a stored document holds."""
    occ = Occurrence(doc["assignment_id"], _naive_local(doc["local_start"]), doc["opens_at"], doc["closes_at"])
    return Resolution(
        **pick(doc, "id", "type", "assignment_id", "practice_id", "client_id", "recorded_at", "recorded_by"),
        occurrence=occ,
        late=doc.get("late", False),
        status=CompletionStatus(doc["status"]) if doc.get("status") else None,
        percent=doc.get("percent"),
        quality_rating=doc.get("quality_rating"),
        data=_DATA.validate_python(doc["data"]) if doc.get("data") else None,
        note=doc.get("note"),
        completed_at=doc.get("completed_at"),
        barrier=Barrier(doc["barrier"]) if doc.get("barrier") else None,
        barrier_text=doc.get("barrier_text"),
    )


# ---------------------------------------------------------------- the store


class AssignmentStore:
    """Reads and writes of the service's collections; writes take the caller's transaction session."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.assignments = db["assignments"]
        self.revisions = db["revisions"]
        self.resolutions = db["resolutions"]
        self.audit_log = db["audit_log"]
        self.idempotency_keys = db[IDEMPOTENCY_KEYS]

    async def ensure_indexes(self) -> None:
        """Create the indexes every query below relies on (idempotent)."""
        await self.assignments.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("_id", DESCENDING)], name="by_client"
        )
        await self.assignments.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)],
            name="by_client_status",
        )
        await self.assignments.create_index([("status", ASCENDING), ("ends_at", ASCENDING)], name="due_to_end")
        await self.revisions.create_index(
            [("assignment_id", ASCENDING), ("version", ASCENDING)], name="by_assignment", unique=True
        )
        await self.resolutions.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("seq", DESCENDING)], name="history"
        )
        await self.resolutions.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("assignment_id", ASCENDING), ("seq", DESCENDING)],
            name="history_by_assignment",
        )
        await self.audit_log.create_index([("assignment_id", ASCENDING), ("_id", ASCENDING)], name="by_assignment")
        # The retention sweep (retention.py): candidates by age, then each client's newest assignment and resolution.
        await self.assignments.create_index([("updated_at", ASCENDING)], name="by_update")
        await self.assignments.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("updated_at", DESCENDING)], name="client_updates"
        )
        await self.resolutions.create_index(
            [("practice_id", ASCENDING), ("client_id", ASCENDING), ("recorded_at", DESCENDING)], name="client_records"
        )

    # ------------------------------------------------------------ assignments

    async def insert(self, a: Assignment, session: Session) -> None:
        """Store a new assignment."""
        await self.assignments.insert_one(assignment_doc(a), session=session)

    async def get(self, assignment_id: str, session: Session = None) -> Assignment | None:
        """The assignment with this id, if any."""
        doc = await self.assignments.find_one({"_id": assignment_id}, session=session)
        return assignment_of(doc) if doc is not None else None

    async def replace(self, before: Assignment, after: Assignment, session: Session) -> None:
        """Store ``after`` if the assignment is still at ``before.rev``; 409 if it changed meanwhile."""
        changes = {k: v for k, v in assignment_doc(after).items() if k != "_id"}
        result = await self.assignments.update_one(
            {"_id": before.id, "rev": before.rev}, {"$set": changes}, session=session
        )
        if result.matched_count != 1:
            raise _changed_meanwhile(before.id)

    async def assignments_by_id(self, ids: set[str], session: Session) -> dict[str, Assignment]:
        """The assignments with these ids, by id (one query)."""
        cursor = self.assignments.find({"_id": {"$in": sorted(ids)}}, session=session)
        return {doc["_id"]: assignment_of(doc) async for doc in cursor}

    async def count_resolutions(self, counts: Mapping[str, int], session: AsyncClientSession) -> bool:
        """Add ``n`` to the resolution count of each assignment read in this transaction: ``{id: n}``.

        The write makes a concurrent pause, cancel or revision of the same assignment conflict
        with the caller's transaction (snapshot isolation: a document changed since the snapshot
        cannot be written), so a completion never slips in after a pause. False if an assignment
        is gone.
        """
        by_count: dict[int, list[str]] = {}
        for assignment_id, n in counts.items():
            by_count.setdefault(n, []).append(assignment_id)
        matched = 0
        for n, ids in by_count.items():
            result = await self.assignments.update_many(
                {"_id": {"$in": ids}}, {"$inc": {"resolved_count": n}}, session=session
            )
            matched += result.matched_count
        return matched == len(counts)

    async def page(
        self, practice_id: str, client_id: str, status: AssignmentStatus | None, limit: int, after: str | None
    ) -> list[Assignment]:
        """A client's assignments, newest first, ``limit`` of them after the id ``after``."""
        query: Doc = {"practice_id": practice_id, "client_id": client_id}
        if status is not None:
            query["status"] = status.value
        if after is not None:
            query["_id"] = {"$lt": after}
        cursor = self.assignments.find(query).sort("_id", DESCENDING).limit(limit)
        return [assignment_of(doc) async for doc in cursor]

    async def due_to_end(self, now: datetime, limit: int) -> list[str]:
        """Ids of active or paused assignments whose last occurrence has closed by ``now``."""
        found: list[str] = []
        for status in OPEN_STATUSES:  # one equality each: both use the (status, ends_at) index
            cursor = self.assignments.find({"status": status, "ends_at": {"$lte": now}}, {"_id": 1}).limit(limit)
            found += [doc["_id"] async for doc in cursor]
        return found[:limit]

    # ------------------------------------------------------------ revisions

    async def insert_revision(self, a: Assignment, changed: list[str], by: str, session: Session) -> Doc:
        doc = {
            "_id": f"{a.id}:v{a.version}",
            "assignment_id": a.id,
            "version": a.version,
            "content": a.content.model_dump(mode="json"),
            "changed": changed,
            "revised_at": a.updated_at,
            "revised_by": by,
        }
        await self.revisions.insert_one(doc, session=session)
        return doc

    async def revisions_of(self, assignment_id: str, limit: int, after_version: int = 0) -> list[Doc]:
        """Up to ``limit`` stored versions of an assignment after ``after_version``, oldest first."""
        query = {"assignment_id": assignment_id, "version": {"$gt": after_version}}
        cursor = self.revisions.find(query).sort("version", ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    # ------------------------------------------------------------ resolutions

    async def insert_resolutions(self, docs: Sequence[Doc], session: AsyncClientSession) -> None:
        """Store completions and skips (from ``resolution_doc``); a taken occurrence fails on its ``_id``."""
        if docs:
            await self.resolutions.insert_many(list(docs), session=session)

    async def resolved_among(self, occurrence_ids: list[str], session: Session) -> set[str]:
        """Which of these occurrences already have a completion or skip."""
        cursor = self.resolutions.find({"_id": {"$in": occurrence_ids}}, {"_id": 1}, session=session)
        return {doc["_id"] async for doc in cursor}

    async def resolutions_of(self, occurrence_ids: list[str]) -> dict[str, Resolution]:
        """The completions and skips of these occurrences, by occurrence id."""
        cursor = self.resolutions.find({"_id": {"$in": occurrence_ids}})
        return {doc["_id"]: resolution_of(doc) async for doc in cursor}

    async def history(
        self, practice_id: str, client_id: str, assignment_id: str | None, limit: int, after: str | None
    ) -> list[Resolution]:
        """A client's completions and skips, newest first."""
        query: Doc = {"practice_id": practice_id, "client_id": client_id}
        if assignment_id is not None:
            query["assignment_id"] = assignment_id
        if after is not None:
            query["seq"] = {"$lt": after}
        cursor = self.resolutions.find(query).sort("seq", DESCENDING).limit(limit)
        return [resolution_of(doc) async for doc in cursor]

    # ------------------------------------------------------------ audit

    async def append_audit(self, entries: Sequence[Doc], session: AsyncClientSession) -> None:
        """Append audit entries (from ``audit_entry``) in the caller's transaction."""
        if len(entries) == 1:
            await self.audit_log.insert_one(entries[0], session=session)
        elif entries:
            await self.audit_log.insert_many(list(entries), session=session)

    async def audit_of(self, assignment_id: str, limit: int, after: str | None) -> list[Doc]:
        """An assignment's audit entries, oldest first, after the entry id ``after``."""
        query: Doc = {"assignment_id": assignment_id}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.audit_log.find(query).sort("_id", ASCENDING).limit(limit)
        return [doc async for doc in cursor]


def _changed_meanwhile(assignment_id: str) -> Conflict:
    return Conflict("assignment_changed", f"assignment {assignment_id} changed meanwhile; read it again and retry")


CLIENT_DATA = ClientData(
    exported={
        READ_AUDIT: by_client,  # who read the client's data: theirs to see; pseudonymised, not deleted, on erasure
        "assignments": by_client,
        "revisions": by_assignment,
        "resolutions": by_client,
        "audit_log": by_assignment,
    },
    client_free={
        **OPERATIONAL,
        TOMBSTONES: TOMBSTONE_REASON,
        "erasures": "the record of each erasure (who asked, when, what was removed), the client pseudonymised: "
        "kept as documentation of the erasure (docs/data-rights.md)",
        "client_keys": "each client's key for sealed free text in events: a key, not data; deleted on erasure",
        "practice_retention": "each practice's retention period (days, who set it): a practice setting",
    },
    assignments="assignments",
)
"""Which collections hold a client's data and how they are keyed (the export reads these; its test checks them)."""
