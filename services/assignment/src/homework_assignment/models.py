"""Request and response bodies of the HTTP API: ``XCreate`` / ``XRevise`` in, ``XPublic`` out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from homework_assignment.domain import (
    REVISABLE,
    Assignment,
    AssignmentContent,
    AssignmentStatus,
    LongText,
    OccurrenceStatus,
    Rationale,
    Resolution,
    Title,
    invalid,
    once_schedule,
)
from homework_shared import cursors
from homework_shared.events.values import (
    LOCAL_DATE_TIME_PATTERN,
    Barrier,
    CompletionStatus,
    ExposureStep,
    FreeText,
    HomeworkKind,
    Id,
    LocalDateTime,
    OnceSchedule,
    RecurringSchedule,
    ReminderWish,
    Resource,
    Schedule,
    Score10,
    Target,
    TimeZoneName,
)
from homework_shared.schedule import Occurrence

Cursor = Annotated[str, Field(min_length=1, max_length=400)]


class RequestBody(BaseModel):
    """A request body: unknown fields are refused, by name."""

    model_config = ConfigDict(extra="forbid")


class OnceScheduleCreate(RequestBody):
    """A one-off: open from ``opens_at`` (default: now, in the client's zone) until ``due_at``, local times."""

    type: Literal["once"] = "once"
    timezone: TimeZoneName
    opens_at: LocalDateTime | None = None
    due_at: LocalDateTime


ScheduleCreate = Annotated[OnceScheduleCreate | RecurringSchedule, Field(discriminator="type")]


def _schedule(value: OnceScheduleCreate | RecurringSchedule, now: datetime) -> OnceSchedule | RecurringSchedule:
    if isinstance(value, OnceScheduleCreate):
        return once_schedule(value.timezone, value.opens_at, value.due_at, now)
    return value


class AssignmentCreate(RequestBody):
    """A new assignment for one client of the therapist's practice."""

    client_id: Id
    kind: HomeworkKind
    title: Title
    instructions: LongText
    rationale: Rationale | None = Field(default=None, description="Why this homework; a stated rationale helps")
    schedule: ScheduleCreate
    target: Target | None = None
    steps: list[ExposureStep] = Field(default_factory=list, max_length=100, description="Exposure hierarchy, 1..n")
    resources: list[Resource] = Field(default_factory=list, max_length=20)
    reminders: list[ReminderWish] = Field(default_factory=list, max_length=10)
    allow_late_completion: bool = False

    def content(self, now: datetime) -> AssignmentContent:
        """The content this request asks for, a one-off's opening defaulted to ``now``."""
        fields = {name: getattr(self, name) for name in AssignmentContent.model_fields}
        return AssignmentContent(**{**fields, "schedule": _schedule(self.schedule, now)})


class AssignmentRevise(RequestBody):
    """The fields to change; those left out stay as they are. ``rationale`` and ``target`` may be null."""

    title: Title | None = None
    instructions: LongText | None = None
    rationale: Rationale | None = None
    schedule: ScheduleCreate | None = None
    target: Target | None = None
    steps: list[ExposureStep] | None = Field(default=None, max_length=100)
    resources: list[Resource] | None = Field(default=None, max_length=20)
    reminders: list[ReminderWish] | None = Field(default=None, max_length=10)

    def changes(self, now: datetime) -> dict[str, Any]:
        """The fields the request sets, refused by name when null where null means nothing."""
        changes: dict[str, Any] = {}
        for name in REVISABLE:
            if name not in self.model_fields_set:
                continue
            value = getattr(self, name)
            if value is None and name not in ("rationale", "target"):
                raise invalid(name, "cannot be null; leave it out to keep it")
            changes[name] = _schedule(value, now) if name == "schedule" else value
        return changes


class CompletionCreate(RequestBody):
    """A completion of one occurrence. ``data`` is validated for the assignment's kind (``kind`` may be left out)."""

    status: CompletionStatus = CompletionStatus.DONE
    percent: Annotated[int, Field(ge=1, le=100)] | None = Field(default=None, description="Required when partial")
    quality_rating: Score10 | None = Field(default=None, description="Effort or quality, 0-10")
    data: dict[str, Any] | None = Field(
        default=None,
        description="Per kind: mood_log {mood, intensity, trigger, felt_at}; thought_record {situation, "
        "automatic_thought, emotion, evidence_for, evidence_against, alternative_thought, "
        "emotion_intensity_before, emotion_intensity_after}; behavioural_activation {activity, planned, done, "
        "pleasure, mastery}; exposure {step, suds_before, suds_peak, suds_after, duration_minutes}; "
        "communication_practice {situation, what_was_said, outcome_rating}; mindfulness {minutes, rating}; "
        "reading {pages, reflections}; custom {values, text}. See docs/events.md.",
    )
    note: FreeText | None = None
    completed_at: AwareDatetime | None = Field(default=None, description="Default: now")


class SkipCreate(RequestBody):
    """An occurrence not done, and why."""

    barrier: Barrier
    barrier_text: FreeText | None = Field(default=None, description="Required when the barrier is other")


# ---------------------------------------------------------------- responses


class AssignmentPublic(BaseModel):
    """An assignment as its therapist and its client see it."""

    id: str
    practice_id: str
    client_id: str
    therapist_id: str
    kind: HomeworkKind
    title: str
    instructions: str
    rationale: str | None
    schedule: Schedule
    target: Target | None
    steps: list[ExposureStep]
    resources: list[Resource]
    reminders: list[ReminderWish]
    allow_late_completion: bool
    status: AssignmentStatus
    version: int
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None
    closed_at: datetime | None = Field(description="When it was cancelled or ended")
    end_reason: str | None
    ends_at: datetime | None = Field(description="When its last occurrence closes")
    resolved_count: int

    @classmethod
    def of(cls, a: Assignment) -> AssignmentPublic:
        """Built from the domain object or stored document."""
        return cls(
            id=a.id,
            practice_id=a.practice_id,
            client_id=a.client_id,
            therapist_id=a.therapist_id,
            **a.content.model_dump(),
            status=a.status,
            version=a.version,
            created_at=a.created_at,
            updated_at=a.updated_at,
            paused_at=a.paused_at,
            closed_at=a.closed_at,
            end_reason=a.end_reason,
            ends_at=a.ends_at,
            resolved_count=a.resolved_count,
        )


class AssignmentPage(BaseModel):
    """A page of assignments, newest first."""

    items: list[AssignmentPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last")


class RevisionPublic(BaseModel):
    """One version of an assignment's content."""

    assignment_id: str
    version: int
    changed: list[str] = Field(description="Fields changed from the previous version; empty for version 1")
    revised_at: datetime
    revised_by: str
    content: AssignmentContent

    @classmethod
    def of(cls, doc: dict[str, Any]) -> RevisionPublic:
        """Built from the domain object or stored document."""
        return cls(**{k: v for k, v in doc.items() if k != "_id"})


class RevisionPage(BaseModel):
    """A page of an assignment's versions, oldest first."""

    items: list[RevisionPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last")


class ResolutionPublic(BaseModel):
    """A completion or a skip."""

    id: str
    type: Literal["completion", "skip"]
    assignment_id: str
    occurrence_id: str
    local_start: LocalDateTime
    opens_at: datetime
    closes_at: datetime
    recorded_at: datetime
    late: bool
    status: CompletionStatus | None = None
    percent: int | None = None
    quality_rating: int | None = None
    data: dict[str, Any] | None = None
    note: str | None = None
    completed_at: datetime | None = None
    barrier: Barrier | None = None
    barrier_text: str | None = None

    @classmethod
    def of(cls, r: Resolution) -> ResolutionPublic:
        """Built from the domain object or stored document."""
        occ = r.occurrence
        return cls(
            id=r.id,
            type=r.type,
            assignment_id=r.assignment_id,
            occurrence_id=occ.occurrence_id,
            local_start=occ.local_start,
            opens_at=occ.opens_at,
            closes_at=occ.closes_at,
            recorded_at=r.recorded_at,
            late=r.late,
            status=r.status,
            percent=r.percent,
            quality_rating=r.quality_rating,
            data=r.data.model_dump(mode="json", exclude_none=True) if r.data is not None else None,
            note=r.note,
            completed_at=r.completed_at,
            barrier=r.barrier,
            barrier_text=r.barrier_text,
        )


class HistoryPage(BaseModel):
    """A page of a client's completions and skips, newest first."""

    items: list[ResolutionPublic]
    next_cursor: str | None


class OccurrencePublic(BaseModel):
    """One occurrence: its deterministic id, its window and where it stands."""

    occurrence_id: str
    local_start: LocalDateTime = Field(description="Scheduled start, local wall time in the client's zone")
    opens_at: datetime
    closes_at: datetime
    status: OccurrenceStatus
    resolution: ResolutionPublic | None = None

    @classmethod
    def of(cls, occ: Occurrence, status: OccurrenceStatus, resolution: Resolution | None) -> OccurrencePublic:
        """Built from the domain object or stored document."""
        return cls(
            occurrence_id=occ.occurrence_id,
            local_start=occ.local_start,
            opens_at=occ.opens_at,
            closes_at=occ.closes_at,
            status=status,
            resolution=ResolutionPublic.of(resolution) if resolution else None,
        )


class OccurrenceList(BaseModel):
    """The occurrences of an assignment opening in [from, to)."""

    assignment_id: str
    timezone: str
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    items: list[OccurrencePublic]

    model_config = ConfigDict(populate_by_name=True)


class AuditEntryPublic(BaseModel):
    """Who changed an assignment, what and when."""

    id: str
    at: datetime
    actor: dict[str, str]
    action: str
    assignment_id: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    occurrence_id: str | None = None
    changed: list[str] | None = None
    reason: str | None = None
    request_id: str | None = None
    trace_id: str | None = None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> AuditEntryPublic:
        """Built from the domain object or stored document."""
        return cls(id=doc["_id"], **{k: v for k, v in doc.items() if k in cls.model_fields and k != "id"})


class AuditPage(BaseModel):
    """A page of audit entries, oldest first."""

    items: list[AuditEntryPublic]
    next_cursor: str | None


# ---------------------------------------------------------------- cursors


def decode_cursor(value: str | None) -> str | None:
    """The key a cursor stands for; 422 naming ``cursor`` if it is not one of ours."""
    return cursors.decode_query_cursor(value, lambda: invalid("cursor", "not a cursor this service gave out", "query"))


# ---------------------------------------------------------------- OpenAPI


def describe_local_times(node: Any) -> None:
    """Describe local wall times (``x-local-time``) as they are sent: without an offset.

    Pydantic calls a naive date-time ``format: date-time``, which RFC 3339 (and so every OpenAPI
    validator) reads as a date-time *with* an offset: the service would break its own schema in
    every response with a schedule or an occurrence. A pattern says what is really sent.
    """
    if isinstance(node, dict):
        if node.get("x-local-time") and node.get("format") == "date-time":
            del node["format"]
            node["pattern"] = LOCAL_DATE_TIME_PATTERN
        for value in node.values():
            describe_local_times(value)
    elif isinstance(node, list):
        for value in node:
            describe_local_times(value)
