"""Value types shared by the events: kinds, barriers, schedules, targets, completion data per kind."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator, AnyUrl, AwareDatetime, Field, NaiveDatetime, model_validator
from pydantic.config import JsonDict

from homework_shared.events.base import ContractModel

FREE_TEXT = "x-free-text"
"""JSON Schema marker of a free-text field: left out of events unless a setting allows them."""

FreeText = Annotated[str, Field(min_length=1, max_length=4000, json_schema_extra={FREE_TEXT: True})]
SEALED = "x-sealed"
"""JSON Schema marker of a sealed field: a free text encrypted with its client's key (Fernet token).

See docs/data-rights.md (crypto-shredding)."""
SealedText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=24000,
        pattern=r"^[A-Za-z0-9_\-]+=*$",
        description="The free text of the field without the suffix, encrypted with the client's key (Fernet token); "
        "unreadable once the client is erased",
        json_schema_extra={SEALED: True},
    ),
]
Score10 = Annotated[int, Field(ge=0, le=10)]
Score100 = Annotated[int, Field(ge=0, le=100)]
LOCAL_TIME = "x-local-time"
LOCAL_DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?$"
"""What a local wall time looks like on the wire: ISO 8601 date and time, no offset (``2026-03-29T20:00:00``)."""


def _describe_local_time(schema: JsonDict) -> None:
    # Pydantic calls a naive datetime "format": "date-time", which JSON Schema defines as RFC 3339,
    # where the offset is required: a validator enforcing formats would refuse every such value.
    # A pattern says what is sent. (Revision 2 of the schemas corrects revision 1; see schemas.py.)
    schema.pop("format", None)
    schema["pattern"] = LOCAL_DATE_TIME_PATTERN
    schema[LOCAL_TIME] = True


LocalDateTime = Annotated[
    NaiveDatetime,
    Field(
        description="Wall-clock time in the client's time zone, without offset",
        json_schema_extra=_describe_local_time,
    ),
]
Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$")]


class HomeworkKind(StrEnum):
    """What kind of practice an assignment asks for."""

    MOOD_LOG = "mood_log"
    THOUGHT_RECORD = "thought_record"
    BEHAVIOURAL_ACTIVATION = "behavioural_activation"
    EXPOSURE = "exposure"
    COMMUNICATION_PRACTICE = "communication_practice"
    MINDFULNESS = "mindfulness"
    READING = "reading"
    CUSTOM = "custom"


class Barrier(StrEnum):
    """Why an occurrence was not done, as the client reports it."""

    FORGOT = "forgot"
    TOO_HARD = "too_hard"
    NO_TIME = "no_time"
    UNMOTIVATED = "unmotivated"
    AVOIDED = "avoided"
    UNCLEAR = "unclear"
    OTHER = "other"


class Channel(StrEnum):
    """How a reminder reaches the client; notification senders subscribe per channel."""

    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"
    WEBHOOK = "webhook"


class CompletionStatus(StrEnum):
    DONE = "done"
    PARTIAL = "partial"


def _check_zone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError(f"unknown IANA time zone {name!r}")
    ZoneInfo(name)
    return name


_ZONES = frozenset(available_timezones())

TimeZoneName = Annotated[
    str, AfterValidator(_check_zone), Field(examples=["Europe/Berlin"], description="IANA time zone of the client")
]


class OnceSchedule(ContractModel):
    """A single occurrence: open from ``opens_at`` until ``due_at``, both in the client's local time."""

    type: Literal["once"] = "once"
    timezone: TimeZoneName
    opens_at: LocalDateTime
    due_at: LocalDateTime

    @model_validator(mode="after")
    def _due_after_opening(self) -> OnceSchedule:
        if self.due_at <= self.opens_at:
            raise ValueError("due_at must be after opens_at")
        return self


class RecurringSchedule(ContractModel):
    """Occurrences from an RFC 5545 RRULE in the client's local wall time.

    ``rrule`` is the rule's value without DTSTART, UNTIL or COUNT (e.g. ``FREQ=DAILY``,
    ``FREQ=WEEKLY;BYDAY=MO,WE,FR``); ``starts_at`` is DTSTART in local time, and exactly
    one of ``until`` (local) or ``count`` ends it. Each occurrence stays open for
    ``window_minutes`` of elapsed time after it starts.
    """

    type: Literal["recurring"] = "recurring"
    timezone: TimeZoneName
    rrule: Annotated[str, Field(min_length=6, max_length=500, examples=["FREQ=DAILY"])]
    starts_at: LocalDateTime
    until: LocalDateTime | None = None
    count: Annotated[int, Field(ge=1, le=10_000)] | None = None
    window_minutes: Annotated[int, Field(ge=1, le=60 * 24 * 31)]

    @model_validator(mode="after")
    def _one_end(self) -> RecurringSchedule:
        if (self.until is None) == (self.count is None):
            raise ValueError("a recurring schedule needs exactly one of until or count")
        if self.until is not None and self.until <= self.starts_at:
            raise ValueError("until must be after starts_at")
        return self


Schedule = Annotated[OnceSchedule | RecurringSchedule, Field(discriminator="type")]


class Target(ContractModel):
    """How often the therapist hopes it is done, e.g. 5 times per 7 days."""

    times: Annotated[int, Field(ge=1, le=1000)]
    per_days: Annotated[int, Field(ge=1, le=366)]

    @model_validator(mode="after")
    def _reachable(self) -> Target:
        if self.times > self.per_days * 24:
            raise ValueError("times cannot exceed 24 per day")
        return self


class ExposureStep(ContractModel):
    """One rung of a graded-exposure hierarchy (steps are numbered from 1)."""

    number: Annotated[int, Field(ge=1, le=100)]
    description: Annotated[str, Field(min_length=1, max_length=500)]
    expected_suds: Score100


class Resource(ContractModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    url: AnyUrl


class ReminderWish(ContractModel):
    """A reminder at ``offset_minutes`` from the opening or the closing of each occurrence."""

    anchor: Literal["opens", "closes"] = "opens"
    offset_minutes: Annotated[int, Field(ge=-7 * 24 * 60, le=7 * 24 * 60)] = 0
    channels: Annotated[list[Channel], Field(min_length=1, max_length=4)] = Field(
        default_factory=lambda: [Channel.PUSH]
    )


# Completion data, one model per kind (discriminated by ``kind``).


class MoodLogData(ContractModel):
    kind: Literal["mood_log"] = "mood_log"
    mood: Score10
    intensity: Score10 | None = None
    trigger: FreeText | None = None
    felt_at: AwareDatetime | None = None


class ThoughtRecordData(ContractModel):
    kind: Literal["thought_record"] = "thought_record"
    situation: FreeText | None = None
    automatic_thought: FreeText | None = None
    emotion: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    evidence_for: FreeText | None = None
    evidence_against: FreeText | None = None
    alternative_thought: FreeText | None = None
    emotion_intensity_before: Score100
    emotion_intensity_after: Score100 | None = None


class BehaviouralActivationData(ContractModel):
    kind: Literal["behavioural_activation"] = "behavioural_activation"
    activity: FreeText | None = None
    planned: bool = True
    done: bool = True
    pleasure: Score10 | None = None
    mastery: Score10 | None = None


class ExposureData(ContractModel):
    kind: Literal["exposure"] = "exposure"
    step: Annotated[int, Field(ge=1, le=100)]
    suds_before: Score100
    suds_peak: Score100
    suds_after: Score100
    duration_minutes: Annotated[int, Field(ge=0, le=24 * 60)]

    @model_validator(mode="after")
    def _peak_is_the_highest(self) -> ExposureData:
        if self.suds_peak < max(self.suds_before, self.suds_after):
            raise ValueError("suds_peak must be at least suds_before and suds_after")
        return self


class CommunicationPracticeData(ContractModel):
    kind: Literal["communication_practice"] = "communication_practice"
    situation: FreeText | None = None
    what_was_said: FreeText | None = None
    outcome_rating: Score10


class MindfulnessData(ContractModel):
    kind: Literal["mindfulness"] = "mindfulness"
    minutes: Annotated[int, Field(ge=0, le=600)]
    rating: Score10 | None = None


class ReadingData(ContractModel):
    kind: Literal["reading"] = "reading"
    pages: Annotated[int, Field(ge=0, le=10_000)] | None = None
    reflections: FreeText | None = None


class CustomData(ContractModel):
    kind: Literal["custom"] = "custom"
    values: dict[Annotated[str, Field(min_length=1, max_length=60)], float] = Field(default_factory=dict, max_length=20)
    text: FreeText | None = None


CompletionData = Annotated[
    MoodLogData
    | ThoughtRecordData
    | BehaviouralActivationData
    | ExposureData
    | CommunicationPracticeData
    | MindfulnessData
    | ReadingData
    | CustomData,
    Field(discriminator="kind"),
]
