"""The rules of assignments and their occurrences: pure, no I/O.

Which occurrences an assignment has, which are void, missed or due: the platform-wide rules of
:mod:`homework_shared.occurrences`. This service's own rules:

* O is **resolved** by a completion (done, or partial with a percent) or a skip (with a barrier),
  at most once. A resolution is accepted while O is open, or after it closed only if the
  assignment allows late completion (then ``late``). Nothing is accepted for a void occurrence,
  a paused, cancelled or ended assignment, or an occurrence that has not opened yet.
* The reminder service announces a missed occurrence; a late completion afterwards counts as done, late.
* An assignment whose last occurrence has closed is ended (reason ``schedule_finished``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, TypeAdapter, ValidationError

from homework_shared.errors import Conflict, NotFound, Unprocessable
from homework_shared.events.base import ContractModel
from homework_shared.events.values import (
    Barrier,
    CompletionData,
    CompletionStatus,
    ExposureStep,
    HomeworkKind,
    OnceSchedule,
    ReminderWish,
    Resource,
    Schedule,
    Target,
)
from homework_shared.occurrences import Pause, Segment, Timeline, revised_segments
from homework_shared.schedule import (
    Occurrence,
    ScheduleError,
    last_close,
    occurrences,
    to_local,
    validate_schedule,
)

CLOCK_SKEW = timedelta(seconds=60)
"""How far in the future a client's ``completed_at`` may be before it is refused (device clocks drift)."""

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
Rationale = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class AssignmentStatus(StrEnum):
    """Where an assignment stands: active, paused, or over (cancelled or ended)."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    ENDED = "ended"


class OccurrenceStatus(StrEnum):
    """Where an occurrence stands at a given instant."""

    UPCOMING = "upcoming"
    OPEN = "open"
    DONE = "done"
    PARTIAL = "partial"
    SKIPPED = "skipped"
    MISSED = "missed"
    VOID = "void"


# ---------------------------------------------------------------- errors


class InvalidInput(Unprocessable):
    """Input that breaks a domain rule, naming each field (within ``location``: body or query) and why."""

    def __init__(self, problems: Iterable[tuple[str, str]], location: str = "body") -> None:
        self.problems = list(problems)
        self.location = location
        super().__init__("validation_failed", "; ".join(f"{field}: {message}" for field, message in self.problems))

    @property
    def fields(self) -> list[dict[str, str]]:
        """The problems as the shared error body lists them: ``{"field": "body.steps", "message": ...}``."""
        return [{"field": f"{self.location}.{field}", "message": message} for field, message in self.problems]


def invalid(field: str, message: str, location: str = "body") -> InvalidInput:
    """One invalid field, named within ``location``."""
    return InvalidInput([(field, message)], location)


def assignment_not_found(assignment_id: str) -> NotFound:
    """The 404 for an assignment that does not exist or that the caller may not see."""
    return NotFound("assignment_not_found", f"no assignment {assignment_id}")


def occurrence_not_found(occurrence_id: str) -> NotFound:
    """The 404 for an occurrence id the assignment has not got."""
    return NotFound("occurrence_not_found", f"the assignment has no occurrence {occurrence_id}")


def occurrence_already_resolved(occurrence_id: str) -> Conflict:
    """The 409 for a second completion or skip of one occurrence."""
    return Conflict("occurrence_already_resolved", f"occurrence {occurrence_id} already has a completion or skip")


# ---------------------------------------------------------------- content


class AssignmentContent(ContractModel):
    """What a therapist writes and revises; every revision is a new version of it."""

    kind: HomeworkKind
    title: Title
    instructions: LongText
    rationale: Rationale | None = None
    schedule: Schedule
    target: Target | None = None
    steps: list[ExposureStep] = Field(default_factory=list, max_length=100)
    resources: list[Resource] = Field(default_factory=list, max_length=20)
    reminders: list[ReminderWish] = Field(default_factory=list, max_length=10)
    allow_late_completion: bool = False


REVISABLE = ("title", "instructions", "rationale", "schedule", "target", "steps", "resources", "reminders")
"""The fields a revision may change; kind, client and late completion stay as created."""


def once_schedule(timezone: str, opens_at: datetime | None, due_at: datetime, now: datetime) -> OnceSchedule:
    """A one-off schedule; without ``opens_at`` it opens now, in the client's zone, to the minute."""
    opens = opens_at if opens_at is not None else to_local(now, timezone).replace(second=0, microsecond=0)
    try:
        return OnceSchedule(timezone=timezone, opens_at=opens, due_at=due_at)
    except ValidationError as error:
        raise invalid("schedule.due_at", "must be after opens_at" + ("" if opens_at else " (now)")) from error


def check_content(content: AssignmentContent) -> None:
    """Raise ``InvalidInput`` unless the schedule expands and the steps and resources fit the kind."""
    problems: list[tuple[str, str]] = []
    try:
        validate_schedule(content.schedule)
    except ScheduleError as error:
        problems.append(("schedule", str(error)))
    if content.kind is HomeworkKind.EXPOSURE:
        if not content.steps:
            problems.append(("steps", "an exposure assignment needs at least one hierarchy step"))
        numbers = [step.number for step in content.steps]
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(("steps", f"steps must be numbered 1..{len(numbers)} in order, got {numbers}"))
    elif content.steps:
        problems.append(("steps", "only an exposure assignment has hierarchy steps"))
    for n, resource in enumerate(content.resources):
        if resource.url.scheme not in ("http", "https"):
            problems.append((f"resources.{n}.url", "must be an http or https link"))
    if problems:
        raise InvalidInput(problems)


# ---------------------------------------------------------------- the assignment


@dataclass(frozen=True)
class Assignment:
    """One client's homework: its current content, status and the history that decides its occurrences.

    ``version`` counts content revisions (events carry it); ``rev`` counts every change of the
    document (revisions and status changes), so a write can require that nothing changed since
    it read.
    """

    id: str
    practice_id: str
    client_id: str
    therapist_id: str
    content: AssignmentContent
    created_at: datetime
    updated_at: datetime
    status: AssignmentStatus = AssignmentStatus.ACTIVE
    version: int = 1
    rev: int = 1
    segments: tuple[Segment, ...] = ()
    pauses: tuple[Pause, ...] = ()
    closed_at: datetime | None = None
    end_reason: str | None = None
    ends_at: datetime | None = None
    resolved_count: int = 0

    @classmethod
    def create(
        cls, *, id: str, practice_id: str, client_id: str, therapist_id: str, content: AssignmentContent, now: datetime
    ) -> Assignment:
        """A new active assignment, refused if its content breaks a rule or every occurrence has closed."""
        check_content(content)
        closes = last_close(content.schedule)
        if closes is None or closes <= now:
            raise invalid("schedule", "every occurrence of this schedule has already closed")
        assignment = cls(
            id=id,
            practice_id=practice_id,
            client_id=client_id,
            therapist_id=therapist_id,
            content=content,
            created_at=now,
            updated_at=now,
            segments=(Segment(None, content.schedule),),
        )
        return replace(assignment, ends_at=assignment.last_close())

    @property
    def is_active(self) -> bool:
        """Whether completions and skips are accepted now."""
        return self.status is AssignmentStatus.ACTIVE

    @property
    def paused_at(self) -> datetime | None:
        """When the current pause began, if the assignment is paused."""
        if self.status is AssignmentStatus.PAUSED and self.pauses:
            return self.pauses[-1].start
        return None

    # ------------------------------------------------------------ occurrences

    @property
    def timeline(self) -> Timeline:
        """The schedules, pauses and stop that decide this assignment's occurrences (the shared rules)."""
        return Timeline(self.id, self.created_at, self.segments, self.pauses, self.closed_at)

    def occurrence(self, occurrence_id: str) -> Occurrence | None:
        """The occurrence with this id, or None if the assignment has none such."""
        return self.timeline.occurrence(occurrence_id)

    def occurrences(self, start: datetime | None, end: datetime | None) -> list[Occurrence]:
        """The occurrences opening in ``[start, end)``, in order (a later schedule wins on a shared id)."""
        return sorted(self.timeline.opening_between(start, end), key=lambda occ: occ.opens_at)

    def last_close(self) -> datetime | None:
        """When the last occurrence under every schedule it has had closes."""
        return self.timeline.last_close()

    def is_void(self, occ: Occurrence) -> bool:
        """Whether an unresolved occurrence is void: the assignment was interrupted during its window."""
        return self.timeline.is_void(occ)

    def status_of(self, occ: Occurrence, resolution: Resolution | None, now: datetime) -> OccurrenceStatus:
        """Where ``occ`` stands at ``now``, given its resolution if it has one."""
        if resolution is not None:
            if resolution.type == "skip":
                return OccurrenceStatus.SKIPPED
            return OccurrenceStatus.PARTIAL if resolution.status is CompletionStatus.PARTIAL else OccurrenceStatus.DONE
        return OccurrenceStatus(self.timeline.standing(occ, now))

    def resolvable(self, occurrence_id: str, now: datetime) -> tuple[Occurrence, bool]:
        """The occurrence a completion or skip may resolve at ``now``, and whether it is late; raises otherwise."""
        if not self.is_active:
            raise Conflict("assignment_not_active", f"the assignment is {self.status.value}; nothing is accepted")
        occ = self.occurrence(occurrence_id)
        if occ is None:
            raise occurrence_not_found(occurrence_id)
        if self.is_void(occ):
            raise Conflict("occurrence_void", f"occurrence {occurrence_id} is void: the assignment was paused then")
        if now < occ.opens_at:
            raise Conflict("occurrence_not_open", f"occurrence {occurrence_id} opens at {occ.opens_at.isoformat()}")
        late = now >= occ.closes_at
        if late and not self.content.allow_late_completion:
            raise Conflict(
                "occurrence_closed",
                f"occurrence {occurrence_id} closed at {occ.closes_at.isoformat()} and this assignment "
                "does not allow late completion",
            )
        return occ, late

    # ------------------------------------------------------------ changes

    def _require(self, action: str, *allowed: AssignmentStatus) -> None:
        if self.status not in allowed:
            raise Conflict("invalid_status_transition", f"cannot {action} an assignment that is {self.status.value}")

    def _changed(self, now: datetime, **changes: Any) -> Assignment:
        return replace(self, rev=self.rev + 1, updated_at=now, **changes)

    def pause(self, now: datetime) -> Assignment:
        """Paused from ``now``: unresolved occurrences open now or opening until the resume are void."""
        self._require("pause", AssignmentStatus.ACTIVE)
        return self._changed(now, status=AssignmentStatus.PAUSED, pauses=(*self.pauses, Pause(now)))

    def resume(self, now: datetime) -> Assignment:
        """Active again from ``now``."""
        self._require("resume", AssignmentStatus.PAUSED)
        *before, current = self.pauses
        return self._changed(now, status=AssignmentStatus.ACTIVE, pauses=(*before, replace(current, end=now)))

    def cancel(self, now: datetime) -> Assignment:
        """Withdrawn at ``now``: nothing more is due."""
        self._require("cancel", AssignmentStatus.ACTIVE, AssignmentStatus.PAUSED)
        return self._changed(now, status=AssignmentStatus.CANCELLED, closed_at=now)

    def end(self, now: datetime, reason: Literal["ended_by_therapist", "schedule_finished"]) -> Assignment:
        """Over at ``now``, by the therapist or because the schedule has no occurrence left."""
        self._require("end", AssignmentStatus.ACTIVE, AssignmentStatus.PAUSED)
        return self._changed(now, status=AssignmentStatus.ENDED, closed_at=now, end_reason=reason)

    def revise(self, changes: Mapping[str, Any], now: datetime) -> tuple[Assignment, list[str]]:
        """A new version with ``changes`` applied from ``now``, and the names of the fields that changed."""
        if self.status in (AssignmentStatus.CANCELLED, AssignmentStatus.ENDED):
            raise Conflict("assignment_not_active", f"the assignment is {self.status.value}; it cannot be revised")
        unknown = sorted(set(changes) - set(REVISABLE))
        if unknown:
            raise invalid(unknown[0], "cannot be revised")
        content = AssignmentContent(**{**dict(self.content), **changes})
        changed = [name for name in REVISABLE if getattr(content, name) != getattr(self.content, name)]
        if not changed:
            raise Unprocessable("revision_changes_nothing", "the revision changes nothing")
        check_content(content)
        segments = self.segments
        if "schedule" in changed:
            if next(occurrences(self.id, content.schedule, start=now), None) is None:
                raise invalid("schedule", "the new schedule has no occurrence from now on")
            segments = revised_segments(segments, Segment(now, content.schedule))
        revised = self._changed(now, content=content, version=self.version + 1, segments=segments)
        return replace(revised, ends_at=revised.last_close()), changed


# ---------------------------------------------------------------- resolutions

_COMPLETION_DATA: TypeAdapter[Any] = TypeAdapter(CompletionData)


@dataclass(frozen=True)
class Resolution:
    """What resolves one occurrence: a completion (done or partial) or a skip with its barrier."""

    id: str
    type: Literal["completion", "skip"]
    assignment_id: str
    practice_id: str
    client_id: str
    occurrence: Occurrence
    recorded_at: datetime
    recorded_by: str
    late: bool = False
    status: CompletionStatus | None = None
    percent: int | None = None
    quality_rating: int | None = None
    data: BaseModel | None = None
    note: str | None = None
    completed_at: datetime | None = None
    barrier: Barrier | None = None
    barrier_text: str | None = None


def completion_data(kind: HomeworkKind, raw: Mapping[str, Any] | None, steps: list[ExposureStep]) -> BaseModel | None:
    """The completion data validated for the assignment's kind (``kind`` may be left out); raises ``InvalidInput``."""
    if raw is None:
        try:
            _COMPLETION_DATA.validate_python({"kind": kind.value})
        except ValidationError:
            raise invalid("data", f"a {kind.value} completion needs its data") from None
        return None
    given = raw.get("kind", kind.value)
    if given != kind.value:
        raise invalid("data.kind", f"must be {kind.value}, the assignment's kind")
    try:
        data: BaseModel = _COMPLETION_DATA.validate_python({**raw, "kind": kind.value})
    except ValidationError as error:
        raise InvalidInput(
            (".".join(["data", *(str(p) for p in e["loc"] if p != kind.value)]), e["msg"]) for e in error.errors()
        ) from None
    step = getattr(data, "step", None)
    if kind is HomeworkKind.EXPOSURE and step not in {s.number for s in steps}:
        raise invalid("data.step", f"step {step} is not in the hierarchy (steps 1-{len(steps)})")
    return data


def record_completion(
    assignment: Assignment,
    occurrence_id: str,
    now: datetime,
    *,
    id: str,
    recorded_by: str,
    status: CompletionStatus,
    percent: int | None,
    quality_rating: int | None,
    data: Mapping[str, Any] | None,
    note: str | None,
    completed_at: datetime | None,
) -> Resolution:
    """A completion of an open (or, where allowed, closed) occurrence; raises if a rule refuses it."""
    occ, late = assignment.resolvable(occurrence_id, now)
    if status is CompletionStatus.DONE:
        if percent not in (None, 100):
            raise invalid("percent", "a done completion is 100 percent; leave percent out or send 100")
        percent = 100
    elif percent is None or not 1 <= percent <= 99:
        raise invalid("percent", "a partial completion needs a percent from 1 to 99")
    completed = completed_at if completed_at is not None else now
    if completed > now + CLOCK_SKEW:
        raise invalid("completed_at", "is in the future")
    earliest = max(occ.opens_at, assignment.created_at)
    if completed < earliest:
        raise invalid("completed_at", f"is before the occurrence opened ({earliest.isoformat()})")
    return Resolution(
        id=id,
        type="completion",
        assignment_id=assignment.id,
        practice_id=assignment.practice_id,
        client_id=assignment.client_id,
        occurrence=occ,
        recorded_at=now,
        recorded_by=recorded_by,
        late=late,
        status=status,
        percent=percent,
        quality_rating=quality_rating,
        data=completion_data(assignment.content.kind, data, assignment.content.steps),
        note=note,
        completed_at=min(completed, now),
    )


def record_skip(
    assignment: Assignment,
    occurrence_id: str,
    now: datetime,
    *,
    id: str,
    recorded_by: str,
    barrier: Barrier,
    barrier_text: str | None,
) -> Resolution:
    """A report that an occurrence was not done, with the barrier; the same timing rules as a completion."""
    occ, late = assignment.resolvable(occurrence_id, now)
    if barrier is Barrier.OTHER and not barrier_text:
        raise invalid("barrier_text", "say what the barrier was when it is other")
    return Resolution(
        id=id,
        type="skip",
        assignment_id=assignment.id,
        practice_id=assignment.practice_id,
        client_id=assignment.client_id,
        occurrence=occ,
        recorded_at=now,
        recorded_by=recorded_by,
        late=late,
        barrier=barrier,
        barrier_text=barrier_text,
    )
