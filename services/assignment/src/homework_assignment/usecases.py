"""The use cases of the assignment service: each reads, applies a domain rule, and writes the change,
its event (through the outbox) and its audit entry with the caller's transaction session.

Write handlers take the session of a transaction the caller runs (``run_in_transaction`` or the
idempotency helper), so they may run more than once and touch nothing but that session.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pymongo.asynchronous.client_session import AsyncClientSession

from homework_assignment.domain import (
    Assignment,
    AssignmentContent,
    AssignmentStatus,
    OccurrenceStatus,
    Resolution,
    assignment_not_found,
)
from homework_assignment.events_out import assignment_created, assignment_revised, status_changed
from homework_assignment.store import AssignmentStore, Doc, audit_entry, new_id
from homework_shared.auth import Principal, can_see_client
from homework_shared.clock import Clock
from homework_shared.erasure import refuse_if_erased
from homework_shared.errors import Conflict
from homework_shared.mongo import MongoClient, run_in_transaction
from homework_shared.outbox import Outbox
from homework_shared.schedule import Occurrence

log = logging.getLogger(__name__)

StatusAction = Literal["pause", "resume", "cancel", "end"]


@dataclass(frozen=True)
class OccurrenceView:
    """An occurrence, where it stands, and its completion or skip if it has one."""

    occurrence: Occurrence
    status: OccurrenceStatus
    resolution: Resolution | None


class AssignmentHandlers:
    """The use cases, with their dependencies passed in."""

    def __init__(self, store: AssignmentStore, outbox: Outbox, client: MongoClient, clock: Clock) -> None:
        self.store = store
        self.outbox = outbox
        self.client = client
        self.clock = clock

    # ------------------------------------------------------------ reads

    async def visible(
        self, principal: Principal, assignment_id: str, session: AsyncClientSession | None = None
    ) -> Assignment:
        """The assignment if ``principal`` may see it; 404 otherwise, whether it exists or not."""
        a = await self.store.get(assignment_id, session)
        if a is None or not can_see_client(principal, a.client_id, a.practice_id):
            raise assignment_not_found(assignment_id)
        return a

    async def assignments_of(
        self, practice_id: str, client_id: str, status: AssignmentStatus | None, limit: int, after: str | None
    ) -> tuple[list[Assignment], str | None]:
        """A page of a client's assignments and the id to continue after (None on the last page)."""
        found = await self.store.page(practice_id, client_id, status, limit + 1, after)
        return found[:limit], (found[limit - 1].id if len(found) > limit else None)

    async def revisions(self, principal: Principal, assignment_id: str, limit: int, after_version: int) -> list[Doc]:
        """Up to ``limit`` versions of a visible assignment after ``after_version``, oldest first."""
        await self.visible(principal, assignment_id)
        return await self.store.revisions_of(assignment_id, limit, after_version)

    async def occurrences(
        self, principal: Principal, assignment_id: str, start: datetime, end: datetime
    ) -> tuple[Assignment, list[OccurrenceView]]:
        """The occurrences opening in ``[start, end)`` with their status now."""
        a = await self.visible(principal, assignment_id)
        found = a.occurrences(start, end)
        resolutions = await self.store.resolutions_of([occ.occurrence_id for occ in found]) if found else {}
        now = self.clock.now()
        views = []
        for occ in found:
            resolution = resolutions.get(occ.occurrence_id)
            views.append(OccurrenceView(occ, a.status_of(occ, resolution, now), resolution))
        return a, views

    async def history(
        self, principal: Principal, assignment_id: str | None, limit: int, after: str | None
    ) -> tuple[list[Resolution], str | None]:
        """A page of the calling client's completions and skips, newest first."""
        found = await self.store.history(principal.practice_id, principal.sub, assignment_id, limit + 1, after)
        cursor = found[limit - 1].id.split("-", 1)[1] if len(found) > limit else None
        return found[:limit], cursor

    async def audit_trail(self, principal: Principal, assignment_id: str, limit: int, after: str | None) -> list[Doc]:
        """Audit entries of a visible assignment, oldest first, after the entry id ``after``."""
        await self.visible(principal, assignment_id)
        return await self.store.audit_of(assignment_id, limit, after)

    # ------------------------------------------------------------ writes

    async def create_assignment(
        self, principal: Principal, client_id: str, content: AssignmentContent, session: AsyncClientSession
    ) -> Assignment:
        """A new assignment for ``client_id`` in the therapist's practice; stages ``AssignmentCreated``."""
        await refuse_if_erased(self.store.db, principal.practice_id, client_id, session)
        now = self.clock.now()
        a = Assignment.create(
            id=new_id("asg"),
            practice_id=principal.practice_id,
            client_id=client_id,
            therapist_id=principal.sub,
            content=content,
            now=now,
        )
        await self.store.insert(a, session)
        await self.store.insert_revision(a, [], principal.sub, session)
        await self.outbox.stage(session, assignment_created(a), time=now)
        await self._audit(session, principal, "create", None, a, now)
        return a

    async def revise_assignment(
        self, principal: Principal, assignment_id: str, changes: Mapping[str, Any], session: AsyncClientSession
    ) -> Doc:
        """A new version of the content, history kept; stages ``AssignmentRevised``. Returns the revision."""
        before = await self.visible(principal, assignment_id, session)
        await refuse_if_erased(self.store.db, before.practice_id, before.client_id, session)
        now = self.clock.now()
        after, changed = before.revise(changes, now)
        await self.store.replace(before, after, session)
        revision = await self.store.insert_revision(after, changed, principal.sub, session)
        await self.outbox.stage(session, assignment_revised(after, changed), time=now)
        await self._audit(session, principal, "revise", before, after, now, changed=changed)
        return revision

    async def change_status(
        self, principal: Principal, assignment_id: str, action: StatusAction, session: AsyncClientSession
    ) -> Assignment:
        """Pause, resume, cancel or end; stages the matching event. 409 naming the status if not allowed."""
        before = await self.visible(principal, assignment_id, session)
        await refuse_if_erased(self.store.db, before.practice_id, before.client_id, session)
        now = self.clock.now()
        match action:
            case "pause":
                after = before.pause(now)
            case "resume":
                after = before.resume(now)
            case "cancel":
                after = before.cancel(now)
            case "end":
                after = before.end(now, "ended_by_therapist")
        await self.outbox.stage(session, status_changed(after, now), time=now)
        await self._audit(session, principal, action, before, after, now)
        # The assignment last: a completion batch writing it meanwhile makes this transaction redo, so hold it briefly.
        await self.store.replace(before, after, session)
        return after

    # ------------------------------------------------------------ the schedule

    async def end_finished_assignments(self, limit: int = 100) -> int:
        """End active or paused assignments whose last occurrence has closed; returns how many it ended.

        Safe with several replicas: each end is a conditional update in its own transaction, and
        its event id is deterministic.
        """
        now = self.clock.now()
        ended = 0
        for assignment_id in await self.store.due_to_end(now, limit):

            async def end_one(session: AsyncClientSession, assignment_id: str = assignment_id) -> bool:
                before = await self.store.get(assignment_id, session)
                if before is None or before.status not in (AssignmentStatus.ACTIVE, AssignmentStatus.PAUSED):
                    return False
                if before.ends_at is None or before.ends_at > now:
                    return False
                after = before.end(before.ends_at, "schedule_finished")
                await self.store.replace(before, after, session)
                event = status_changed(after, before.ends_at)
                await self.outbox.stage(session, event, event_id=f"ended:{assignment_id}", time=now)
                await self._audit(session, None, "end", before, after, now, reason="schedule_finished")
                return True

            try:
                ended += await run_in_transaction(self.client, end_one)
            except Conflict:
                log.info("assignment %s changed while being ended; next sweep retries", assignment_id)
        return ended

    async def _audit(
        self,
        session: AsyncClientSession,
        principal: Principal | None,
        action: str,
        before: Assignment | None,
        after: Assignment,
        now: datetime,
        **details: Any,
    ) -> None:
        await self.store.append_audit([audit_entry(principal, action, before, after, now, **details)], session)
