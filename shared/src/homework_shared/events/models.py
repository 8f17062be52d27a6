"""Every event type of the public stream, one frozen model each.

Type names carry their major version (``...v1``). A change that would break a subscriber
gets a new type (``...v2``), published beside the old one for a while; see ``schemas.py``.
Free-text fields (marked ``x-free-text`` in the schemas) are empty unless the producing
service runs with ``INCLUDE_FREE_TEXT=true``: health data, minimum necessary.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from homework_shared.events.base import HomeworkEvent
from homework_shared.events.values import (
    Barrier,
    Channel,
    CompletionData,
    CompletionStatus,
    ExposureStep,
    FreeText,
    HomeworkKind,
    Id,
    LocalDateTime,
    ReminderWish,
    Schedule,
    Score10,
    SealedText,
    Target,
)

# --- the assignment stream ----------------------------------------------------------------


class AssignmentSnapshot(HomeworkEvent):
    """The fields of an assignment that subscribers act on (instructions and rationale stay home)."""

    assignment_id: Id
    therapist_id: Id
    kind: HomeworkKind
    title: Annotated[str, Field(min_length=1, max_length=200)]
    has_rationale: bool = False
    schedule: Schedule
    target: Target | None = None
    steps: list[ExposureStep] = Field(default_factory=list, max_length=100)
    reminders: list[ReminderWish] = Field(default_factory=list, max_length=10)
    allow_late_completion: bool = False
    version: Annotated[int, Field(ge=1)]


class AssignmentCreated(AssignmentSnapshot):
    event_type = "homework.assignment.created.v1"
    stream = "assignment"
    summary = "A therapist assigned homework to a client."

    created_at: AwareDatetime


class AssignmentRevised(AssignmentSnapshot):
    event_type = "homework.assignment.revised.v1"
    stream = "assignment"
    summary = (
        "A new version of an assignment's instructions, schedule, target, steps or reminders; the whole new state."
    )

    changed: list[str] = Field(default_factory=list)
    revised_at: AwareDatetime


class AssignmentPaused(HomeworkEvent):
    event_type = "homework.assignment.paused.v1"
    stream = "assignment"
    summary = "The assignment is paused: no occurrence is due and no reminder fires until it is resumed."

    assignment_id: Id
    paused_at: AwareDatetime


class AssignmentResumed(HomeworkEvent):
    event_type = "homework.assignment.resumed.v1"
    stream = "assignment"
    summary = "A paused assignment is active again from resumed_at."

    assignment_id: Id
    resumed_at: AwareDatetime


class AssignmentCancelled(HomeworkEvent):
    event_type = "homework.assignment.cancelled.v1"
    stream = "assignment"
    summary = "The therapist withdrew the assignment; nothing more is due."

    assignment_id: Id
    cancelled_at: AwareDatetime


class AssignmentEnded(HomeworkEvent):
    event_type = "homework.assignment.ended.v1"
    stream = "assignment"
    summary = "The assignment is over: its therapist ended it, or its schedule has no occurrence left."

    assignment_id: Id
    ended_at: AwareDatetime
    reason: Literal["ended_by_therapist", "schedule_finished"]


class OccurrenceRef(HomeworkEvent):
    """Fields that name one occurrence: its deterministic id and when it was open."""

    assignment_id: Id
    occurrence_id: Annotated[str, Field(min_length=1, max_length=260)]
    local_start: LocalDateTime
    opens_at: AwareDatetime
    closes_at: AwareDatetime


class CompletionRecorded(OccurrenceRef):
    event_type = "homework.completion.recorded.v1"
    stream = "assignment"
    summary = "The client did an occurrence, fully or in part, with the data its kind records."

    completion_id: Id
    kind: HomeworkKind
    status: CompletionStatus
    percent: Annotated[int, Field(ge=1, le=100)]
    quality_rating: Score10 | None = None
    data: CompletionData | None = None
    note: FreeText | None = None
    completed_at: AwareDatetime
    late: bool = False
    note_sealed: SealedText | None = None

    @model_validator(mode="after")
    def _percent_matches_status(self) -> CompletionRecorded:
        if self.status is CompletionStatus.DONE and self.percent != 100:
            raise ValueError("a done completion has percent 100")
        if self.status is CompletionStatus.PARTIAL and self.percent == 100:
            raise ValueError("a partial completion has percent below 100")
        if self.data is not None and self.data.kind != self.kind.value:
            raise ValueError("data.kind must match kind")
        return self


class OccurrenceSkipped(OccurrenceRef):
    event_type = "homework.occurrence.skipped.v1"
    stream = "assignment"
    summary = "The client reported an occurrence as not done, with the barrier."

    skip_id: Id
    barrier: Barrier
    barrier_text: FreeText | None = None
    recorded_at: AwareDatetime
    barrier_text_sealed: SealedText | None = None


# --- the reminder stream ------------------------------------------------------------------


class ReminderRef(HomeworkEvent):
    reminder_id: Annotated[str, Field(min_length=1, max_length=300)]
    assignment_id: Id
    occurrence_id: Annotated[str, Field(min_length=1, max_length=260)]
    due_at: AwareDatetime


class ReminderScheduled(ReminderRef):
    event_type = "homework.reminder.scheduled.v1"
    stream = "reminder"
    summary = "A reminder was put on the schedule (or moved, e.g. by quiet hours)."

    channels: list[Channel]
    timezone: str
    closes_at: AwareDatetime


class ReminderSent(ReminderRef):
    event_type = "homework.reminder.sent.v1"
    stream = "reminder"
    summary = "A reminder fell due and was fired; notification senders deliver it. Its id is deterministic."

    channels: list[Channel]
    sent_at: AwareDatetime
    title: Annotated[str, Field(max_length=200)]
    kind: HomeworkKind
    closes_at: AwareDatetime


class ReminderCancelled(ReminderRef):
    event_type = "homework.reminder.cancelled.v1"
    stream = "reminder"
    summary = "A pending reminder will not fire, and why."

    reason: Literal[
        "completed",
        "skipped",
        "assignment_paused",
        "assignment_cancelled",
        "assignment_ended",
        "assignment_revised",
        "window_closed",
        "quiet_hours",
    ]
    cancelled_at: AwareDatetime


class ReminderSnoozed(ReminderRef):
    event_type = "homework.reminder.snoozed.v1"
    stream = "reminder"
    summary = "The client snoozed a reminder; it fires again at snoozed_until (never after the window closes)."

    snoozed_until: AwareDatetime
    snoozed_at: AwareDatetime


class OccurrenceMissed(HomeworkEvent):
    event_type = "homework.occurrence.missed.v1"
    stream = "reminder"
    summary = "An occurrence's window closed with neither completion nor skip. Emitted once per occurrence."

    assignment_id: Id
    occurrence_id: Annotated[str, Field(min_length=1, max_length=260)]
    local_start: LocalDateTime
    opens_at: AwareDatetime
    closes_at: AwareDatetime
    detected_at: AwareDatetime


# --- the insights stream ------------------------------------------------------------------

FlagCode = Literal[
    "low_adherence",
    "early_low_adherence",
    "repeatedly_too_hard",
    "rating_threshold_crossed",
]


class InsightSummaryGenerated(HomeworkEvent):
    event_type = "homework.insight.summary_generated.v1"
    stream = "insights"
    summary = "A pre-session summary was generated for a client; the figures are in the insights API."

    summary_id: Id
    period_start: AwareDatetime
    period_end: AwareDatetime
    occurrences_due: Annotated[int, Field(ge=0)]
    done: Annotated[int, Field(ge=0)]
    partial: Annotated[int, Field(ge=0)]
    skipped: Annotated[int, Field(ge=0)]
    missed: Annotated[int, Field(ge=0)]
    adherence_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    flags: list[FlagCode] = Field(default_factory=list)
    generated_at: AwareDatetime


class AdherenceAlertRaised(HomeworkEvent):
    event_type = "homework.adherence.alert_raised.v1"
    stream = "insights"
    summary = "A flag's condition became true for a client; raised once per episode."

    alert_id: Id
    code: FlagCode
    assignment_id: Id | None = None
    reason: Annotated[str, Field(max_length=500)]
    figures: dict[str, float | int | str | None] = Field(default_factory=dict)
    raised_at: AwareDatetime


# --- a client's data rights (published on the assignment stream; completions on each service's own) ------------

ServiceName = Literal["assignment", "reminder", "insights"]


class ClientErasureRequested(HomeworkEvent):
    event_type = "homework.client.erasure_requested.v1"
    stream = "assignment"
    summary = (
        "An admin asked to erase a client, or the practice's retention ended: every service and subscriber deletes "
        "or irreversibly anonymises what it holds about (practice_id, client_id) and drops later events about them."
    )

    erasure_id: Id
    reason: Literal["request", "retention"]
    requested_at: AwareDatetime


class ClientErasureCompleted(HomeworkEvent):
    event_type = "homework.client.erasure_completed.v1"
    stream = "assignment"
    summary = (
        "A service erased what it held about a client: documents removed per collection. Each service publishes it "
        "on its own stream (x-stream names the assignment service's)."
    )

    erasure_id: Id
    service: ServiceName
    counts: dict[Annotated[str, Field(max_length=100)], Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, max_length=50
    )
    completed_at: AwareDatetime


EVENT_CLASSES: tuple[type[HomeworkEvent], ...] = (
    AssignmentCreated,
    AssignmentRevised,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentCancelled,
    AssignmentEnded,
    CompletionRecorded,
    OccurrenceSkipped,
    ReminderScheduled,
    ReminderSent,
    ReminderCancelled,
    ReminderSnoozed,
    OccurrenceMissed,
    InsightSummaryGenerated,
    AdherenceAlertRaised,
    ClientErasureRequested,
    ClientErasureCompleted,
)
"""The catalogue, in the order docs/events.md lists it."""

EVENTS_BY_TYPE: dict[str, type[HomeworkEvent]] = {cls.event_type: cls for cls in EVENT_CLASSES}
