"""A client's data export (GDPR Art. 15/20): what each service declares about its collections, and its part.

Each service declares, next to its store, a :class:`ClientData`: which collections hold a
client's data and how to find that client's documents in each (a filter built from the
practice, the client and the ids of the client's assignments in that service), and which
collections hold none, with the reason. ``tests/e2e/test_export.py`` lists the real collections
of each database and fails on a collection that is in neither, so a collection added later
without export support is caught.

Each service serves its own part at ``GET /v1/clients/{client_id}/export-part``; the
assignment service gathers the three parts into the bundle (see docs/data-rights.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from homework_shared.auth import PrincipalDep, can_see_client
from homework_shared.errors import DomainError, NotFound
from homework_shared.http import ErrorAnswers
from homework_shared.read_audit import audited

SCHEMA_VERSION = 1
"""The version of one service's part of the bundle: raised when a part's shape changes incompatibly."""
PAGE_SIZE = 500
"""Documents read per query: the export pages through a collection by ``_id`` instead of one huge cursor batch."""
MAX_ASSIGNMENTS = 10_000
"""Most assignments of one client a part looks up by id (bounded like everything else; far above real use)."""

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClientKey:
    """Whose data: the practice (from the caller's token), the client, and the client's assignment ids here."""

    practice_id: str
    client_id: str
    assignment_ids: tuple[str, ...] = ()


Filter = Callable[[ClientKey], Doc]


def by_client(key: ClientKey) -> Doc:
    """Documents that carry the client's practice and id (the usual shape)."""
    return {"practice_id": key.practice_id, "client_id": key.client_id}


def by_assignment(key: ClientKey) -> Doc:
    """Documents keyed by one of the client's assignments (``assignment_id``)."""
    return {"assignment_id": {"$in": list(key.assignment_ids)}}


@dataclass(frozen=True)
class ClientData:
    """What one service's database holds about clients.

    ``exported``: collection -> filter of one client's documents in it.
    ``client_free``: collection -> why it holds no client's data, or why it is not exported
    (an operational copy with a short TTL, stated as such).
    ``assignments``: the collection whose ``_id`` is an assignment id and which carries
    ``practice_id`` and ``client_id``: where the client's assignment ids are read from.
    """

    exported: Mapping[str, Filter]
    client_free: Mapping[str, str]
    assignments: str

    def __post_init__(self) -> None:
        both = set(self.exported) & set(self.client_free)
        if both:
            raise ValueError(f"declared both exported and client-free: {sorted(both)}")
        if self.assignments not in self.exported:
            raise ValueError(f"the assignments collection {self.assignments!r} must be exported")


OPERATIONAL: Mapping[str, str] = {
    "outbox": "events waiting to be published, kept 7 days after; the same facts are in the exported collections",
    "leases": "which replica relays the outbox: replica ids and lease times, nothing about a client",
    "idempotency_keys": "responses remembered for retried writes, per caller, for 24 hours; copies of exported data",
    "processed_events": "ids of the events applied (kept 30 days), nothing else",
}
"""The shared machinery's collections, in every service that has them; not exported, each for its reason."""


class ExportTooLarge(DomainError):
    """The client's data here exceeds ``EXPORT_MAX_DOCUMENTS``: refused rather than read into memory."""

    default_status = 413


class ExportPart(BaseModel):
    """One service's part of the bundle."""

    schema_version: int = SCHEMA_VERSION
    generated_at: datetime
    collections: dict[str, list[dict[str, Any]]] = Field(
        description="Every collection holding the client's data, each with the client's documents, oldest _id first"
    )


def jsonable(doc: Doc) -> Doc:
    """A stored document as JSON: dates as ISO 8601 with offset, anything else BSON-only as its string form.

    pydantic-core's serializer does the walking (nested lists and dicts, dates, bytes), so no
    hand-written converter has to keep up with the types PyMongo returns.
    """
    out: Doc = to_jsonable_python(doc, fallback=str)
    return out


async def client_key(db: AsyncDatabase[Doc], data: ClientData, practice_id: str, client_id: str) -> ClientKey:
    """The client's key with the ids of their assignments in this service."""
    cursor = db[data.assignments].find({"practice_id": practice_id, "client_id": client_id}, {"_id": 1})
    ids = [doc["_id"] async for doc in cursor.limit(MAX_ASSIGNMENTS + 1)]
    if len(ids) > MAX_ASSIGNMENTS:
        raise ExportTooLarge("export_too_large", f"the client has more than {MAX_ASSIGNMENTS} assignments")
    return ClientKey(practice_id, client_id, tuple(sorted(ids)))


async def export_part(
    db: AsyncDatabase[Doc], data: ClientData, key: ClientKey, now: datetime, max_documents: int
) -> ExportPart:
    """Every document of the client in every exported collection, paged by ``_id``; 413 past ``max_documents``."""
    collections: dict[str, list[Doc]] = {}
    total = 0
    for name, build in sorted(data.exported.items()):
        query = build(key)
        docs: list[Doc] = []
        last: Any = None
        while True:
            page_query = query if last is None else {"$and": [query, {"_id": {"$gt": last}}]}
            page = await db[name].find(page_query).sort("_id", ASCENDING).limit(PAGE_SIZE).to_list()
            total += len(page)
            if total > max_documents:
                raise ExportTooLarge(
                    "export_too_large",
                    f"the client's data exceeds EXPORT_MAX_DOCUMENTS ({max_documents} documents); "
                    "an operator may raise it",
                )
            docs += [jsonable(doc) for doc in page]
            if len(page) < PAGE_SIZE:
                break
            last = page[-1]["_id"]
        collections[name] = docs
    return ExportPart(generated_at=now, collections=collections)


ClientId = Annotated[str, Path(min_length=1, max_length=200)]

PART_ERRORS = ErrorAnswers(
    {
        404: "Not a client the caller may see (another practice's, or another client)",
        413: "The client's data here exceeds EXPORT_MAX_DOCUMENTS",
        422: "Invalid client id",
    }
)


def export_part_router(data: ClientData) -> APIRouter:
    """``GET /v1/clients/{client_id}/export-part``: this service's part of a client's export.

    For the assignment service's fan-out, and callable by the same people who may read the
    client's data: a therapist or admin of the practice, or the client themself. The practice
    is the caller's (from the token), so another practice's client of the same id is never read.
    Its errors are the shared ``ErrorBody``, so each OpenAPI document names one error schema.
    """
    responses = PART_ERRORS(404, 413)
    router = APIRouter(prefix="/v1", tags=["data rights"])

    @router.get(
        "/clients/{client_id}/export-part",
        response_model=ExportPart,
        responses=responses,
        name="export_part",
        dependencies=[audited()],
    )
    async def get_export_part(request: Request, client_id: ClientId, principal: PrincipalDep) -> ExportPart:
        """This service's part of the client's data export: every collection holding the client's data."""
        if not can_see_client(principal, client_id, principal.practice_id):
            raise NotFound("client_not_found", "no such client visible to the caller")
        rt = request.app.state.runtime
        await request.app.state.read_audit.flush()  # this read's own entry is part of what it returns
        key = await client_key(rt.db, data, principal.practice_id, client_id)
        max_documents: int = request.app.state.settings.export_max_documents
        return await export_part(rt.db, data, key, rt.clock.now(), max_documents)

    return router
