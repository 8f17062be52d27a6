"""A client's whole record in one call: the assignment service gathers every service's part (fan-out over HTTP).

Why fan-out and not an export job driven by events: an export is a read that someone waits for,
bounded by ``EXPORT_MAX_DOCUMENTS`` per service, so a synchronous call answers in seconds with no
state to keep, resume or expire, and each service still serves only its own data, authorised by
the caller's own token (forwarded as is: a service never trusts another service's word about who
is asking). A part that cannot be had fails the whole export (503 when the service cannot be
reached in ``EXPORT_TIMEOUT_S``, 502 when it answers with an error), never a silently partial
bundle. httpx is the async client already used by the reminder service (timeouts, connection pooling).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field, ValidationError

from homework_assignment.config import AssignmentSettings
from homework_assignment.store import CLIENT_DATA
from homework_shared.auth import ClientDep, Principal, TherapistDep
from homework_shared.errors import DomainError, NotFound
from homework_shared.export import ExportPart, ExportTooLarge, client_key, export_part
from homework_shared.http import ErrorAnswers
from homework_shared.observability import current_request_id, current_traceparent
from homework_shared.read_audit import READ_AUDIT, audited

SERVICE = "assignment"

router = APIRouter(prefix="/v1", tags=["data rights"])


class ExportBundle(BaseModel):
    """A client's whole record: one part per service, each with its schema version and generation time."""

    client_id: str
    practice_id: str
    generated_at: datetime
    services: dict[str, ExportPart] = Field(description="assignment, reminder and insights, each a whole part")


class PartUnavailable(DomainError):
    """A service's part could not be had: the export fails whole (502 or 503), naming the service."""


_RESPONSES = ErrorAnswers(
    {
        404: "No data about this client in the caller's practice",
        413: "The client's data in a service exceeds EXPORT_MAX_DOCUMENTS",
        422: "Invalid client id",
        502: "A service answered its part with an error (the message names it)",
        503: "A service or the database could not be reached (the message names it)",
    }
)(403, 404, 413, 502)


async def fetch_part(http: httpx.AsyncClient, service: str, base_url: str, client_id: str, token: str) -> ExportPart:
    """One service's part, fetched with the caller's token; raises ``PartUnavailable`` naming the service."""
    url = f"{base_url.rstrip('/')}/v1/clients/{quote(client_id, safe='')}/export-part"
    response = await get_part(http, service, url, token, "export")
    if response.status_code == 413:
        raise ExportTooLarge("export_too_large", f"the {service} service: {_message(response)}")
    if response.status_code != 200:
        raise PartUnavailable(
            "export_part_failed",
            f"the {service} service answered its part of the export with {response.status_code}: {_message(response)}",
            502,
        )
    try:
        return ExportPart.model_validate_json(response.content)
    except ValidationError:
        raise PartUnavailable(
            "export_part_failed", f"the {service} service answered its part of the export in an unknown shape", 502
        ) from None


async def get_part(http: httpx.AsyncClient, service: str, url: str, token: str, what: str) -> httpx.Response:
    """GET one service's part of a gathered answer (``what``: export, audit) with the caller's token and this
    request's ids; a service that cannot be reached raises ``PartUnavailable`` (503) naming it."""
    try:
        return await http.get(url, headers=_hop_headers(token))
    except httpx.HTTPError as error:
        raise PartUnavailable(
            f"{what}_part_unavailable",
            f"the {service} service could not be reached for its part of the {what} ({type(error).__name__})",
            503,
            headers={"Retry-After": "5"},
        ) from None


def _hop_headers(token: str) -> dict[str, str]:
    """The caller's token, and the request id and trace of this request, so the part's logs join the export's."""
    headers = {"Authorization": token}
    if request_id := current_request_id():
        headers["X-Request-ID"] = request_id
    if traceparent := current_traceparent():
        headers["traceparent"] = traceparent
    return headers


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message") or body.get("error") or body)[:200] if isinstance(body, dict) else str(body)[:200]


async def gather_export(request: Request, principal: Principal, client_id: str) -> ExportBundle:
    """The client's bundle: this service's part read here, the others' fetched at the same time."""
    settings: AssignmentSettings = request.app.state.settings
    rt = request.app.state.runtime
    token = request.headers["Authorization"]  # present: the principal was verified from it
    timeout = httpx.Timeout(settings.export_timeout_s)
    await request.app.state.read_audit.flush()  # this read's own entry is part of what it returns
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        key = await client_key(rt.db, CLIENT_DATA, principal.practice_id, client_id)
        own = export_part(rt.db, CLIENT_DATA, key, rt.clock.now(), settings.export_max_documents)
        reminder = fetch_part(http, "reminder", str(settings.reminder_url), client_id, token)
        insights = fetch_part(http, "insights", str(settings.insights_url), client_id, token)
        # Every part runs to its end (each bounded by the timeout): the first failure, if any, is the answer.
        results = await asyncio.gather(own, reminder, insights, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    parts = [r for r in results if isinstance(r, ExportPart)]
    # Who read the client's data is part of the bundle, but a read alone (this export's own) is no data.
    if not any(docs for part in parts for name, docs in part.collections.items() if name != READ_AUDIT):
        raise NotFound("client_not_found", "no data about this client in the caller's practice")
    return ExportBundle(
        client_id=client_id,
        practice_id=principal.practice_id,
        generated_at=rt.clock.now(),
        services=dict(zip((SERVICE, "reminder", "insights"), parts, strict=True)),
    )


@router.get("/clients/{client_id}/export", response_model=ExportBundle, responses=_RESPONSES, dependencies=[audited()])
async def export_client(
    request: Request, client_id: Annotated[str, Path(min_length=1, max_length=200)], principal: TherapistDep
) -> ExportBundle:
    """Everything the platform stores about a client of the caller's practice, as one JSON bundle."""
    return await gather_export(request, principal, client_id)


@router.get("/me/export", response_model=ExportBundle, responses=_RESPONSES)
async def export_me(request: Request, principal: ClientDep) -> ExportBundle:
    """Everything the platform stores about the calling client, as one JSON bundle."""
    return await gather_export(request, principal, principal.sub)
