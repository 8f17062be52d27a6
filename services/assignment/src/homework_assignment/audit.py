"""``GET /v1/audit``: the practice's read audit, gathered from the three services (fan-out, as the export).

Each service keeps the reads of its own routes (``homework_shared.read_audit``); this route reads
this service's entries and asks the reminder and insights services for theirs with the caller's
token, merges them by id (time-ordered) and pages them with the shared cursor codec. A service
that cannot be reached fails the call (503 naming it), never a silently partial audit.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from pydantic import ValidationError

from homework_assignment.config import AssignmentSettings
from homework_assignment.export import PartUnavailable, get_part
from homework_shared.auth import Principal
from homework_shared.cursors import encode_cursor
from homework_shared.http import ErrorAnswers
from homework_shared.read_audit import (
    AdminDep,
    AuditQuery,
    AuditQueryDep,
    Doc,
    ReadAuditPage,
    page_of,
    read_entries,
)

router = APIRouter(prefix="/v1", tags=["data rights"])

_RESPONSES = ErrorAnswers(
    {
        403: "Only an admin reads the audit",
        422: "Invalid filter or cursor, naming it",
        502: "A service answered its part with an error (the message names it)",
        503: "A service or the database could not be reached (the message names it)",
    }
)(403, 502)


async def fetch_audit_part(
    http: httpx.AsyncClient, service: str, base_url: str, q: AuditQuery, token: str
) -> ReadAuditPage:
    params: dict[str, Any] = {"limit": q.limit}
    for name, value in (("client_id", q.client_id), ("actor", q.actor)):
        if value is not None:
            params[name] = value
    if q.start is not None:
        params["from"] = q.start.isoformat()
    if q.end is not None:
        params["to"] = q.end.isoformat()
    if q.after is not None:
        params["cursor"] = encode_cursor(q.after)
    url = f"{base_url.rstrip('/')}/v1/audit-part?{urlencode(params)}"
    response = await get_part(http, service, url, token, "audit")
    if response.status_code != 200:
        raise PartUnavailable(
            "audit_part_failed",
            f"the {service} service answered its part of the audit with {response.status_code}",
            502,
        )
    try:
        return ReadAuditPage.model_validate_json(response.content)
    except ValidationError:
        raise PartUnavailable("audit_part_failed", f"the {service} service answered in an unknown shape", 502) from None


@router.get("/audit", response_model=ReadAuditPage, responses=_RESPONSES)
async def read_audit(request: Request, principal: AdminDep, q: AuditQueryDep) -> ReadAuditPage:
    """Who read which client's data, when, in every service: oldest first, paged (admin only).

    Filters: ``client_id``, ``actor`` (the reader's subject), ``from`` and ``to`` (instants).
    """
    return await gather_audit(request, principal, q)


async def gather_audit(request: Request, principal: Principal, q: AuditQuery) -> ReadAuditPage:
    settings: AssignmentSettings = request.app.state.settings
    audit = request.app.state.read_audit
    await audit.flush()  # this replica's own reads so far, so an admin's query sees them
    token = request.headers["Authorization"]
    async with httpx.AsyncClient(timeout=httpx.Timeout(settings.export_timeout_s), follow_redirects=False) as http:
        own = read_entries(request.app.state.runtime.db, principal.practice_id, q, q.limit + 1)
        reminder = fetch_audit_part(http, "reminder", str(settings.reminder_url), q, token)
        insights = fetch_audit_part(http, "insights", str(settings.insights_url), q, token)
        results = await asyncio.gather(own, reminder, insights, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    docs: list[Doc] = list(results[0])  # type: ignore[arg-type]
    more = False
    for part in results[1:]:
        assert isinstance(part, ReadAuditPage)
        docs += [{"_id": e.id, **e.model_dump(exclude={"id"})} for e in part.items]
        more = more or part.next_cursor is not None
    page = page_of(docs, q.limit)
    if more and page.next_cursor is None and page.items:
        page.next_cursor = encode_cursor(page.items[-1].id)
    return page
