"""HTTP routes under ``/v1``: upcoming reminders, client preferences, snooze, and each practice's webhook.

Who may do what: a client sees and changes only their own reminders and preferences; a therapist
or admin those of their practice's clients; a practice's therapists and admins read its webhook,
only its admins set or delete it. Another practice's (or another client's) resource answers 404,
never 403; a role that may never do something answers 403. Reminder ids contain ``#``: send it
percent-encoded (``%23``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator, model_validator
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_reminder.config import ReminderSettings
from homework_reminder.domain import QuietHours
from homework_reminder.egress import AddressRefused, EgressGuard
from homework_reminder.store import Doc, Store
from homework_reminder.usecases import Scheduler
from homework_reminder.webhook_secrets import SecretBox
from homework_shared.auth import (
    ClientDep,
    Principal,
    PrincipalDep,
    Role,
    TherapistDep,
    can_see_client,
    require_role,
)
from homework_shared.clock import Clock
from homework_shared.documents import pick
from homework_shared.erasure import NOT_ERASED
from homework_shared.errors import NotFound, Unprocessable
from homework_shared.events import Channel, HomeworkKind
from homework_shared.events.values import TimeZoneName
from homework_shared.http import ErrorAnswers, from_app_state
from homework_shared.idempotency import IdempotencyKeyDep, caller_scope, respond_idempotently
from homework_shared.ids import PathId, ReminderIdPath
from homework_shared.mongo import MongoClient, run_in_transaction
from homework_shared.read_audit import audited
from homework_shared.schedule import to_local

router = APIRouter(prefix="/v1", tags=["reminders"])
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


answers = ErrorAnswers(
    {
        404: "No such client, reminder or webhook visible to the caller",
        409: "The occurrence is resolved, or its window closes too soon",
    }
)


@dataclass(frozen=True)
class Services:
    """What the routes use, put on ``app.state.services`` by ``app.create``."""

    store: Store
    scheduler: Scheduler
    mongo: MongoClient
    clock: Clock
    settings: ReminderSettings
    egress: EgressGuard
    secrets: SecretBox


ServicesDep = Annotated[Services, Depends(from_app_state("services"))]
AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN))]


# ---------------------------------------------------------------------- models


class ReminderPublic(BaseModel):
    reminder_id: str
    assignment_id: str
    occurrence_id: str
    title: str
    kind: HomeworkKind
    state: str
    due_at: datetime
    due_local: str = Field(description="The due instant in the reminder's time zone, as local wall time")
    timezone: str
    opens_at: datetime
    closes_at: datetime
    channels: list[Channel]
    snoozed_until: datetime | None = None

    @classmethod
    def of(cls, doc: Doc) -> ReminderPublic:
        return cls(
            **pick(doc, "assignment_id", "occurrence_id", "title", "kind", "state", "due_at", "timezone"),
            **pick(doc, "opens_at", "closes_at", "channels"),
            reminder_id=doc["_id"],
            due_local=to_local(doc["due_at"], doc["timezone"]).isoformat(timespec="minutes"),
            snoozed_until=doc.get("snoozed_until"),
        )


class UpcomingReminders(BaseModel):
    client_id: str
    reminders: list[ReminderPublic]


class QuietHoursIn(BaseModel):
    """A daily span of local time without reminders, e.g. 22:00 to 07:00 (wraps past midnight)."""

    start: Annotated[str, Field(pattern=HHMM, examples=["22:00"])]
    end: Annotated[str, Field(pattern=HHMM, examples=["07:00"])]

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursIn:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def rule(self) -> QuietHours:
        return QuietHours(time.fromisoformat(self.start), time.fromisoformat(self.end))


class PreferencesUpdate(BaseModel):
    """A client's reminder preferences; a field left null is not set (the assignment's own applies)."""

    model_config = {"extra": "forbid"}

    timezone: TimeZoneName | None = None
    quiet_hours: QuietHoursIn | None = None
    channels: Annotated[list[Channel], Field(min_length=1, max_length=4)] | None = None

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[Channel] | None) -> list[Channel] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value


class PreferencesPublic(PreferencesUpdate):
    model_config = {"extra": "ignore"}

    client_id: str
    updated_at: datetime | None = None


class SnoozeRequest(BaseModel):
    minutes: Annotated[int, Field(ge=1, le=24 * 60, description="Fire again in this many minutes")]


class SnoozePublic(BaseModel):
    reminder: ReminderPublic
    snoozed_until: datetime
    clamped: bool = Field(description="True when the snooze was shortened to end before the window closes")


class WebhookUpdate(BaseModel):
    url: AnyHttpUrl
    secret: Annotated[SecretStr, Field(min_length=16, max_length=256)]


class WebhookPublic(BaseModel):
    practice_id: str
    url: str
    updated_at: datetime


# ---------------------------------------------------------------------- access


async def _visible_client(svc: Services, principal: Principal, client_id: str) -> None:
    """404 unless ``principal`` may see ``client_id`` and the practice knows the client (has assigned them homework).

    The same for every role, as docs/reminder.md promises: a client token names its practice, but until that
    practice assigns the client homework the reminder service has no such client (and nothing to show).
    """
    if not can_see_client(principal, client_id, principal.practice_id):
        raise NotFound("client_not_found", f"no client {client_id!r}")
    if not await svc.store.client_known(principal.practice_id, client_id):
        raise NotFound("client_not_found", f"no client {client_id!r}")


def _own_practice(principal: Principal, practice_id: str) -> None:
    if principal.practice_id != practice_id:
        raise NotFound("practice_not_found", f"no practice {practice_id!r}")


# ---------------------------------------------------------------------- reminders


async def _upcoming(svc: Services, practice_id: str, client_id: str, limit: int) -> UpcomingReminders:
    docs = await svc.store.upcoming(practice_id, client_id, limit)
    return UpcomingReminders(client_id=client_id, reminders=[ReminderPublic.of(d) for d in docs])


Limit = Annotated[int, Query(ge=1, le=500, description="At most this many, soonest first")]


@router.get("/me/reminders", response_model=UpcomingReminders, responses=answers(403))
async def my_upcoming_reminders(svc: ServicesDep, principal: ClientDep, limit: Limit = 100) -> UpcomingReminders:
    """The calling client's reminders that have not fired yet, soonest first."""
    return await _upcoming(svc, principal.practice_id, principal.sub, limit)


@router.get(
    "/clients/{client_id}/reminders",
    response_model=UpcomingReminders,
    responses=answers(404),
    dependencies=[audited()],
)
async def client_upcoming_reminders(
    client_id: PathId, svc: ServicesDep, principal: PrincipalDep, limit: Limit = 100
) -> UpcomingReminders:
    """A client's reminders that have not fired yet (the client: their own; a therapist: their practice's)."""
    await _visible_client(svc, principal, client_id)
    return await _upcoming(svc, principal.practice_id, client_id, limit)


@router.post(
    "/reminders/{reminder_id}/snooze",
    response_model=SnoozePublic,
    responses=answers(400, 403, 404, 409),
)
async def snooze_reminder(
    reminder_id: ReminderIdPath,
    body: SnoozeRequest,
    request: Request,
    svc: ServicesDep,
    principal: ClientDep,
    key: IdempotencyKeyDep,
) -> JSONResponse:
    """Fire one of your reminders again later, never after its occurrence's window closes (clamped)."""

    async def write(session: AsyncClientSession) -> dict[str, Any]:
        doc, clamped = await svc.scheduler.snooze(
            principal.sub, principal.practice_id, reminder_id, body.minutes, session
        )
        return SnoozePublic(reminder=ReminderPublic.of(doc), snoozed_until=doc["due_at"], clamped=clamped).model_dump(
            mode="json"
        )

    return await respond_idempotently(svc.mongo, svc.store.db, request, caller_scope(principal), key, 200, write)


# ---------------------------------------------------------------------- preferences


def _preferences_public(client_id: str, doc: Doc | None) -> PreferencesPublic:
    return PreferencesPublic.model_validate({**(doc or {}), "client_id": client_id})


@router.get(
    "/clients/{client_id}/preferences",
    response_model=PreferencesPublic,
    responses=answers(404),
    dependencies=[audited()],
)
async def get_preferences(client_id: PathId, svc: ServicesDep, principal: PrincipalDep) -> PreferencesPublic:
    """A client's reminder preferences (all null until set)."""
    await _visible_client(svc, principal, client_id)
    return _preferences_public(client_id, await svc.store.preferences_doc(principal.practice_id, client_id))


@router.put(
    "/clients/{client_id}/preferences",
    response_model=PreferencesPublic,
    responses=answers(400, 404, 410),
    dependencies=[NOT_ERASED],
)
async def put_preferences(
    client_id: PathId, body: PreferencesUpdate, svc: ServicesDep, principal: PrincipalDep
) -> PreferencesPublic:
    """Replace a client's preferences; their waiting reminders are rescheduled by them at once."""
    await _visible_client(svc, principal, client_id)
    fields = body.model_dump(mode="json")

    async def write(session: AsyncClientSession) -> Doc:
        return await svc.scheduler.set_preferences(principal.practice_id, client_id, fields, principal.sub, session)

    doc = await run_in_transaction(svc.mongo, write)
    return _preferences_public(client_id, doc)


# ---------------------------------------------------------------------- webhook


@router.put("/practices/{practice_id}/webhook", response_model=WebhookPublic, responses=answers(400, 403, 404))
async def put_webhook(practice_id: PathId, body: WebhookUpdate, svc: ServicesDep, principal: AdminDep) -> WebhookPublic:
    """Set where the practice's reminders with the ``webhook`` channel are delivered, and the signing secret (admin).

    The URL's host must resolve only to public unicast addresses (422 ``webhook_address_refused``
    otherwise); the secret is stored encrypted and never returned.
    """
    _own_practice(principal, practice_id)
    if svc.settings.environment == "production" and body.url.scheme != "https":
        raise Unprocessable("webhook_not_https", "url: a webhook must use https in production")
    if body.url.username or body.url.password:
        raise Unprocessable("webhook_credentials_in_url", "url: put no credentials in the URL; the secret signs")
    try:
        async with asyncio.timeout(svc.settings.webhook_timeout_s):
            await svc.egress.checked_addresses(body.url.host or "", body.url.port or 443)
    except TimeoutError:
        raise Unprocessable("webhook_address_refused", f"url: {body.url.host} did not resolve in time") from None
    except AddressRefused as exc:
        raise Unprocessable(
            "webhook_address_refused", f"url: {exc}; a webhook must reach the public internet"
        ) from None
    ciphertext = svc.secrets.seal(body.secret.get_secret_value())
    doc = await svc.store.set_webhook(practice_id, str(body.url), ciphertext, principal.sub, svc.clock.now())
    return WebhookPublic(practice_id=practice_id, url=doc["url"], updated_at=doc["updated_at"])


@router.get("/practices/{practice_id}/webhook", response_model=WebhookPublic, responses=answers(403, 404))
async def get_webhook(practice_id: PathId, svc: ServicesDep, principal: TherapistDep) -> WebhookPublic:
    """The practice's webhook (never its secret)."""
    _own_practice(principal, practice_id)
    doc = await svc.store.webhook(practice_id)
    if doc is None:
        raise NotFound("webhook_not_found", "the practice has no webhook")
    return WebhookPublic(practice_id=practice_id, url=doc["url"], updated_at=doc["updated_at"])


@router.delete("/practices/{practice_id}/webhook", status_code=204, responses=answers(403, 404))
async def delete_webhook(practice_id: PathId, svc: ServicesDep, principal: AdminDep) -> Response:
    """Stop delivering to the practice's webhook (admin)."""
    _own_practice(principal, practice_id)
    if not await svc.store.delete_webhook(practice_id):
        raise NotFound("webhook_not_found", "the practice has no webhook")
    return Response(status_code=204)
