"""HTTP routes under ``/v1``: a client's figures, the therapist's thresholds, pre-session summaries (JSON and HTML).

Auth: a bearer JWT. A client sees only their own figures (without flags); a therapist or
admin sees every client of their practice, with flags, and alone sets thresholds and makes
or reads summaries (403 for a client). Another practice's client or summary answers 404.

Tenancy: the practice always comes from the caller's token, never from the request; a client is
looked up by (practice, client id), so two practices' clients of the same id never meet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_insights.domain import SERIES
from homework_insights.figures import PAGE_DEFAULT, PAGE_MAX, UnknownCursor, client_figures
from homework_insights.metrics import InsightsMetrics
from homework_insights.models import ClientFigures, SummaryPage, SummaryPublic
from homework_insights.report import render_summary
from homework_insights.store import Doc, MongoStore
from homework_insights.summaries import PeriodError, build_summary, summary_event
from homework_shared import cursors
from homework_shared.auth import PrincipalDep, Role, TherapistDep, can_see_client
from homework_shared.cursors import encode_cursor
from homework_shared.erasure import NOT_ERASED
from homework_shared.errors import NotFound, Unprocessable
from homework_shared.http import ErrorAnswers, from_app_state
from homework_shared.idempotency import IdempotencyKeyDep, caller_scope, respond_idempotently
from homework_shared.ids import PathId
from homework_shared.read_audit import audited
from homework_shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["insights"])
docs_router = APIRouter(tags=["operations"])


answers = ErrorAnswers(
    {
        403: "A client may not do this (therapists and admins only)",
        404: "No such client or summary visible to the caller",
    },
    always=(401, 404, 422, 503),
)


def _store(rt: RuntimeDep) -> MongoStore:
    """A store outside any transaction (reads, and writes of one document)."""
    return MongoStore(rt.db)


StoreDep = Annotated[MongoStore, Depends(_store)]
MetricsDep = Annotated[InsightsMetrics, Depends(from_app_state("insights_metrics"))]


class ThresholdRuleIn(BaseModel):
    """Flag when the latest value of ``metric`` is ``at_most`` or ``at_least`` ``value``."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(examples=["mood"], description=f"one of: {', '.join(SERIES)}")
    direction: Literal["at_most", "at_least"]
    value: float = Field(ge=0, le=10_000)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in SERIES:
            raise ValueError(f"unknown metric; use one of {', '.join(SERIES)}")
        return value


class ThresholdsUpdate(BaseModel):
    """Every threshold of a client, replacing the previous ones."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ThresholdRuleIn] = Field(max_length=20)


class ThresholdsPublic(ThresholdsUpdate):
    client_id: str


class SummaryCreate(BaseModel):
    """An optional period; by default since the previous summary (or the first assignment) until now."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    period_from: AwareDatetime | None = Field(default=None, alias="from")
    period_to: AwareDatetime | None = Field(default=None, alias="to")

    @field_validator("period_from", "period_to")
    @classmethod
    def _to_millis(cls, value: datetime | None) -> datetime | None:
        return to_millis(value) if value is not None else None


def to_millis(instant: datetime) -> datetime:
    """``instant`` cut to whole milliseconds, the precision MongoDB stores: the answer equals the stored copy."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


async def visible_client(store: MongoStore, principal: Any, client_id: str) -> Doc:
    """The client document of the caller's practice, or 404 when unknown there or not the caller's to see."""
    if not can_see_client(principal, client_id, principal.practice_id):
        raise NotFound("client_not_found", f"no figures for client {client_id}")
    client = await store.client(principal.practice_id, client_id)
    if client is None:
        raise NotFound("client_not_found", f"no figures for client {client_id}")
    return client


def decode_cursor(cursor: str | None) -> str | None:
    """The key a cursor stands for; 422 naming ``query.cursor`` when it is not one of ours."""
    refusal = Unprocessable("invalid_cursor", "query.cursor: not a cursor this service gave out")
    return cursors.decode_query_cursor(cursor, lambda: refusal)


Limit = Annotated[
    int, Query(ge=1, le=PAGE_MAX, description=f"At most this many assignments in `assignments` (max {PAGE_MAX})")
]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=400, description="`next_cursor` of the previous page: the assignments after it"),
]


@router.get("/clients/{client_id}/figures", response_model=ClientFigures, responses=answers(), dependencies=[audited()])
async def get_figures(
    client_id: PathId,
    principal: PrincipalDep,
    rt: RuntimeDep,
    store: StoreDep,
    limit: Limit = PAGE_DEFAULT,
    cursor: Cursor = None,
) -> JSONResponse:
    """The client's figures now: overall, per kind, last 7 and 28 days and flags over every assignment; per
    assignment (series, streaks, exposure steps) one page of them, oldest first, with ``next_cursor`` (null on the
    last page)."""
    await visible_client(store, principal, client_id)
    try:
        figures = await client_figures(
            store,
            principal.practice_id,
            client_id,
            rt.clock.now(),
            with_flags=principal.role is not Role.CLIENT,
            limit=limit,
            after=decode_cursor(cursor),
        )
    except UnknownCursor:
        raise Unprocessable("invalid_cursor", "query.cursor: not a cursor of this client's assignments") from None
    figures["next_cursor"] = encode_cursor(figures["next_cursor"])
    return JSONResponse(jsonable_encoder(figures))


@router.get("/clients/{client_id}/thresholds", responses=answers(403), dependencies=[audited()])
async def get_thresholds(client_id: PathId, principal: TherapistDep, store: StoreDep) -> ThresholdsPublic:
    """The thresholds a therapist set for this client."""
    await visible_client(store, principal, client_id)
    doc = await store.thresholds(principal.practice_id, client_id)
    return ThresholdsPublic(client_id=client_id, rules=[ThresholdRuleIn(**r) for r in (doc or {}).get("rules", [])])


@router.put("/clients/{client_id}/thresholds", responses=answers(400, 403, 410), dependencies=[NOT_ERASED])
async def put_thresholds(
    client_id: PathId, payload: ThresholdsUpdate, principal: TherapistDep, store: StoreDep
) -> ThresholdsPublic:
    """Replace the client's thresholds (e.g. mood at most 3, SUDS peak at least 90); used from the next event on."""
    await visible_client(store, principal, client_id)
    doc = {"rules": [r.model_dump() for r in payload.rules], "by": principal.sub}
    await store.put_thresholds(principal.practice_id, client_id, doc)
    return ThresholdsPublic(client_id=client_id, rules=payload.rules)


@router.post(
    "/clients/{client_id}/summaries",
    status_code=201,
    response_model=SummaryPublic,
    responses=answers(400, 403, 410),
    dependencies=[NOT_ERASED],
)
async def generate_summary(
    request: Request,
    client_id: PathId,
    principal: TherapistDep,
    key: IdempotencyKeyDep,
    rt: RuntimeDep,
    store: StoreDep,
    metrics: MetricsDep,
    payload: Annotated[SummaryCreate | None, Body()] = None,
) -> JSONResponse:
    """Generate, store and publish a pre-session summary (``Idempotency-Key`` makes a retry return the same one)."""
    client = await visible_client(store, principal, client_id)
    period = payload or SummaryCreate()
    if period.period_from and period.period_to and period.period_from > period.period_to:
        raise Unprocessable("invalid_period", "body.from must not be after body.to")

    async def write(session: AsyncClientSession) -> dict[str, Any]:
        staged = MongoStore(rt.db, session, rt.outbox)
        try:
            summary = await build_summary(
                staged,
                client,
                to_millis(rt.clock.now()),
                start=period.period_from,
                end=period.period_to,
                generated_by=principal.sub,
            )
        except PeriodError as exc:
            raise Unprocessable("invalid_period", str(exc)) from exc
        await staged.insert_summary(summary)
        await staged.stage(summary_event(summary), f"summary:{summary['_id']}")
        return public(summary)

    response = await respond_idempotently(rt.mongo, rt.db, request, caller_scope(principal), key, 201, write)
    metrics.summaries.inc()
    return response


SummaryLimit = Annotated[int, Query(ge=1, le=PAGE_MAX, description=f"At most this many summaries (max {PAGE_MAX})")]
SummaryCursor = Annotated[
    str | None,
    Query(min_length=1, max_length=400, description="`next_cursor` of the previous page: the older summaries"),
]


@router.get(
    "/clients/{client_id}/summaries", response_model=SummaryPage, responses=answers(403), dependencies=[audited()]
)
async def list_summaries(
    client_id: PathId,
    principal: TherapistDep,
    store: StoreDep,
    limit: SummaryLimit = PAGE_DEFAULT,
    cursor: SummaryCursor = None,
) -> JSONResponse:
    """The client's summaries, newest first (headline figures only), one page at a time."""
    await visible_client(store, principal, client_id)
    after = None
    if cursor is not None:
        after = await store.summary(decode_cursor(cursor) or "")
        if after is None or (after["practice_id"], after["client_id"]) != (principal.practice_id, client_id):
            raise Unprocessable("invalid_cursor", "query.cursor: not a cursor of this client's summaries")
    found = await store.summaries_of(principal.practice_id, client_id, limit + 1, after)
    more = len(found) > limit
    found = found[:limit]
    keep = ("summary_id", "period_start", "period_end", "generated_at", "headline", "flags")
    items = [{k: v for k, v in public(s).items() if k in keep} for s in found]
    next_cursor = encode_cursor(found[-1]["_id"]) if more else None
    return JSONResponse(jsonable_encoder({"items": items, "next_cursor": next_cursor}))


async def visible_summary(store: MongoStore, principal: Any, summary_id: str) -> Doc:
    """A summary of a client the caller may see, or 404."""
    summary = await store.summary(summary_id)
    if summary is None or not can_see_client(principal, summary["client_id"], summary["practice_id"]):
        raise NotFound("summary_not_found", f"no summary {summary_id}")
    return summary


@router.get("/summaries/{summary_id}", response_model=SummaryPublic, responses=answers(403), dependencies=[audited()])
async def get_summary(summary_id: PathId, principal: TherapistDep, store: StoreDep) -> JSONResponse:
    """One summary, as JSON."""
    return JSONResponse(jsonable_encoder(public(await visible_summary(store, principal, summary_id))))


@router.get(
    "/summaries/{summary_id}/html",
    response_class=HTMLResponse,
    responses=answers.beside_non_json(403),
    dependencies=[audited()],
)
async def get_summary_html(summary_id: PathId, principal: TherapistDep, store: StoreDep) -> HTMLResponse:
    """One summary, as the page a therapist reads (inline SVG charts, no external assets)."""
    return HTMLResponse(render_summary(await visible_summary(store, principal, summary_id)))


@docs_router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi(rt: RuntimeDep) -> JSONResponse:
    """The AsyncAPI document of the events this service publishes and consumes."""
    return JSONResponse(rt.asyncapi("homework insights service"))


def public(summary: Doc) -> dict[str, Any]:
    """A stored summary as the API shows it (``summary_id`` instead of ``_id``)."""
    out = {"summary_id": summary["_id"], **{k: v for k, v in summary.items() if k != "_id"}}
    return jsonable_encoder(out)  # type: ignore[no-any-return]
