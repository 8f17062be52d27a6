"""Retention: a client whose last activity is older than the practice's retention is erased by the same saga.

The retention is ``CLIENT_RETENTION_DAYS`` (default 2557 days, 7 years) unless an admin set the
practice's own (``PUT /v1/practices/{practice_id}/retention``). The last activity of a client is
the latest of their assignments' ``updated_at`` and their resolutions' ``recorded_at``. Every
``RETENTION_SWEEP_INTERVAL_S`` one replica (the one holding the ``retention-sweeper`` lease in
``leases``; a dead holder's lease expires after three intervals) finds the clients past retention
and calls ``Erasures.request(..., "retention")``: the request is recorded and published exactly
as an admin's, and a client already erased is a replay that changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from homework_assignment.erasure import AdminDep, Erasures
from homework_shared.auth import TherapistDep
from homework_shared.clock import Clock
from homework_shared.errors import NotFound
from homework_shared.http import ErrorAnswers, from_app_state
from homework_shared.ids import PathId
from homework_shared.observability import ServiceMetrics
from homework_shared.tasks import Periodic

log = logging.getLogger(__name__)

PRACTICE_RETENTION = "practice_retention"
"""One document per practice that set its own retention: ``_id`` the practice, ``days``, who and when."""
LEASE = "retention-sweeper"
Doc = dict[str, Any]

router = APIRouter(prefix="/v1", tags=["data rights"])


class RetentionUpdate(BaseModel):
    days: float = Field(gt=0, le=36500, description="Days after a client's last activity their data is erased")


class RetentionPublic(BaseModel):
    practice_id: str
    days: float
    default: bool = Field(description="True while the practice uses the deployment's CLIENT_RETENTION_DAYS")


_RESPONSES = ErrorAnswers(
    {
        404: "Not the caller's practice",
    }
)(400, 403, 404)


class Retention:
    """The practices' retention settings and the sweeper that enforces them."""

    def __init__(
        self,
        erasures: Erasures,
        clock: Clock,
        default_days: float,
        interval_s: float,
        metrics: ServiceMetrics,
    ) -> None:
        self.erasures = erasures
        self.db = erasures.db
        self.clock = clock
        self.default_days = default_days
        self.interval_s = interval_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.erased = metrics.counter(
            "clients_erased_by_retention_total", "Erasures requested by the retention sweeper"
        )
        self.loop = Periodic(
            "retention-sweeper", interval_s, self._step, "the retention sweep failed; the next one retries"
        )

    async def ensure_indexes(self) -> None:
        await self.db[PRACTICE_RETENTION].create_index("days", name="by_days")  # shortest_days

    async def days_of(self, practice_id: str) -> tuple[float, bool]:
        doc = await self.db[PRACTICE_RETENTION].find_one({"_id": practice_id})
        return (float(doc["days"]), False) if doc else (self.default_days, True)

    async def set_days(self, practice_id: str, days: float, by: str) -> None:
        await self.db[PRACTICE_RETENTION].update_one(
            {"_id": practice_id}, {"$set": {"days": days, "set_by": by, "set_at": self.clock.now()}}, upsert=True
        )

    async def _take_lease(self) -> bool:
        """Hold the sweeper's lease (taken when free or expired, renewed while held); False if another holds it."""
        now = self.clock.now()
        try:
            result = await self.db["leases"].update_one(
                {"_id": LEASE, "$or": [{"owner": self.owner}, {"expires_at": {"$lte": now}}]},
                {"$set": {"owner": self.owner, "expires_at": now + timedelta(seconds=3 * self.interval_s)}},
                upsert=True,
            )
        except DuplicateKeyError:  # held by another replica: the upsert found no free lease to take
            return False
        return result.matched_count == 1 or result.upserted_id is not None

    async def last_activity(self, cutoff: datetime) -> dict[tuple[str, str], datetime]:
        """The latest activity of every client who has an assignment not updated since ``cutoff``.

        Only those can be past retention (a client's last activity is at least their newest assignment's
        ``updated_at``). Every read is indexed: the candidates by ``updated_at``, then per candidate the newest
        assignment and resolution by (practice, client, time); never a scan of every client's records.
        """
        pipeline: list[dict[str, Any]] = [
            {"$match": {"updated_at": {"$lte": cutoff}}},
            {"$group": {"_id": {"p": "$practice_id", "c": "$client_id"}}},
        ]
        latest: dict[tuple[str, str], datetime] = {}
        async for row in await self.db["assignments"].aggregate(pipeline):
            key = (row["_id"]["p"], row["_id"]["c"])
            for collection, field in (("assignments", "updated_at"), ("resolutions", "recorded_at")):
                newest = await self.db[collection].find_one(
                    {"practice_id": key[0], "client_id": key[1]}, {field: 1}, sort=[(field, -1)]
                )
                at = None if newest is None else newest.get(field)
                if at is not None and (key not in latest or at > latest[key]):
                    latest[key] = at
        return latest

    async def shortest_days(self) -> float:
        """The shortest retention of any practice (the default, or a shorter one an admin set): the sweep's horizon."""
        shortest = await self.db[PRACTICE_RETENTION].find_one({}, {"days": 1}, sort=[("days", 1)])
        return min(self.default_days, float(shortest["days"])) if shortest else self.default_days

    async def sweep(self) -> int:
        """Request the erasure of every client past their practice's retention; returns how many were requested."""
        now = self.clock.now()
        days: dict[str, float] = {}
        requested = 0
        cutoff = now - timedelta(days=await self.shortest_days())
        for (practice_id, client_id), last in sorted((await self.last_activity(cutoff)).items()):
            if practice_id not in days:
                days[practice_id] = (await self.days_of(practice_id))[0]
            if last.tzinfo is None:  # stored as UTC
                last = last.replace(tzinfo=now.tzinfo)
            if last + timedelta(days=days[practice_id]) > now:
                continue
            _, created = await self.erasures.request(practice_id, client_id, "retention", "retention")
            if created:
                requested += 1
                self.erased.inc()
        return requested

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def _step(self) -> None:
        requested = await self.sweep() if await self._take_lease() else 0
        if requested:
            log.info("retention: erasure requested", extra={"clients": requested})


RetentionDep = Annotated[Retention, Depends(from_app_state("retention"))]


def _own_practice(practice_id: str, caller_practice: str) -> None:
    if practice_id != caller_practice:
        raise NotFound("practice_not_found", "no such practice visible to the caller")


@router.get("/practices/{practice_id}/retention", response_model=RetentionPublic, responses=_RESPONSES)
async def get_retention(practice_id: PathId, principal: TherapistDep, r: RetentionDep) -> RetentionPublic:
    """How long the practice keeps a client's data after their last activity."""
    _own_practice(practice_id, principal.practice_id)
    days, default = await r.days_of(practice_id)
    return RetentionPublic(practice_id=practice_id, days=days, default=default)


@router.put("/practices/{practice_id}/retention", response_model=RetentionPublic, responses=_RESPONSES)
async def put_retention(
    practice_id: PathId, body: RetentionUpdate, principal: AdminDep, r: RetentionDep
) -> RetentionPublic:
    """Set the practice's retention (admin only); the sweeper erases clients past it, through the erasure saga."""
    _own_practice(practice_id, principal.practice_id)
    await r.set_days(practice_id, body.days, principal.sub)
    return RetentionPublic(practice_id=practice_id, days=body.days, default=False)
