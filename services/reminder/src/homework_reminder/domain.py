"""The reminder rules, pure: which occurrences an assignment has, which of them are void, when their reminders fall due.

Which occurrences an assignment has and which are void: the platform-wide rules of
:mod:`homework_shared.occurrences`.

Reminder rules (this service's own):

* A reminder is due at ``offset_minutes`` of elapsed time from the occurrence's opening or closing
  instant; its id is ``<occurrence_id>#<anchor><+/-offset>``, e.g. ``asg1@2026-03-29T20:00#opens+0``.
  Local wall time, and so DST, is the schedule's business: "20:00 every day" opens at 20:00 local
  on both sides of a DST change, and a reminder at ``opens+0`` fires then.
* A reminder that would fall due before the assignment existed (or before it was resumed or revised)
  is not scheduled: it belongs to a time the client was not asked to do anything.
* Quiet hours (per client, in their time zone): a reminder due inside them moves to their end; if
  the occurrence's window closes first, it is dropped (``ReminderCancelled``, reason ``quiet_hours``).
  A local time that does not exist or exists twice follows the schedule's RFC 5545 policy.
* Channels: a client who chose channels gets the assignment's channels they accept; when they accept
  none of those, their own.
* Snooze: until ``now + minutes``, clamped to one minute before the window closes; refused (409) when
  that is not later than now, or when the reminder's occurrence is resolved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Literal

from homework_shared.errors import Conflict
from homework_shared.events import Channel, HomeworkKind, ReminderWish
from homework_shared.occurrences import Pause, Timeline, revised_segments
from homework_shared.occurrences import Segment as ScheduleSegment
from homework_shared.schedule import Occurrence, ScheduleT, to_local, to_utc

CancelReason = Literal[
    "completed",
    "skipped",
    "assignment_paused",
    "assignment_cancelled",
    "assignment_ended",
    "assignment_revised",
    "window_closed",
    "quiet_hours",
]
StopReason = Literal["assignment_cancelled", "assignment_ended"]
SNOOZE_MARGIN = timedelta(minutes=1)


class OccurrenceState(StrEnum):
    """Where an occurrence stands for this service."""

    PENDING = "pending"
    VOID = "void"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    MISSED = "missed"


RESOLVED = (OccurrenceState.COMPLETED, OccurrenceState.SKIPPED, OccurrenceState.MISSED)


class ReminderState(StrEnum):
    """A reminder waits (``pending``), is being fired under a lease (``claimed``), or is done with."""

    PENDING = "pending"
    CLAIMED = "claimed"
    FIRED = "fired"
    CANCELLED = "cancelled"


WAITING = (ReminderState.PENDING, ReminderState.CLAIMED)


class UnknownAssignment(LookupError):
    """An event about an assignment this service never saw created: it cannot be applied."""


class ForeignResolution(ValueError):
    """A completion or skip whose client, or whose occurrence, is not its assignment's: it cannot be applied."""


@dataclass(frozen=True)
class Segment(ScheduleSegment):
    """A schedule and its reminder wishes, governing occurrences that open at or after ``starts_at``."""

    reminders: tuple[ReminderWish, ...]


@dataclass(frozen=True)
class Plan:
    """An assignment as the reminder service keeps it: its schedule history, pauses and stop."""

    assignment_id: str
    client_id: str
    practice_id: str
    title: str
    kind: HomeworkKind
    version: int
    created_at: datetime
    segments: tuple[Segment, ...]
    pauses: tuple[Pause, ...] = ()
    stopped_at: datetime | None = None
    stop_reason: StopReason | None = None
    reminders_from: datetime | None = None

    @property
    def state(self) -> Literal["active", "paused", "stopped"]:
        if self.stopped_at is not None:
            return "stopped"
        if self.pauses and self.pauses[-1].end is None:
            return "paused"
        return "active"

    @property
    def not_before(self) -> datetime:
        """No reminder due before this instant is scheduled (creation, last resume or revision)."""
        return self.reminders_from or self.created_at

    @property
    def timeline(self) -> Timeline:
        """The schedules, pauses and stop that decide this assignment's occurrences (the shared rules)."""
        return Timeline(self.assignment_id, self.created_at, self.segments, self.pauses, self.stopped_at)

    def paused(self, at: datetime) -> Plan:
        """The plan paused at ``at`` (unchanged when it is not active)."""
        if self.state != "active":
            return self
        return replace(self, pauses=(*self.pauses, Pause(at)))

    def resumed(self, at: datetime) -> Plan:
        """The plan resumed at ``at`` (unchanged when it is not paused)."""
        if self.state != "paused":
            return self
        last = self.pauses[-1]
        return replace(
            self,
            pauses=(*self.pauses[:-1], Pause(last.start, max(at, last.start))),
            reminders_from=max(at, self.not_before),
        )

    def stopped(self, at: datetime, reason: StopReason) -> Plan:
        """The plan cancelled or ended at ``at`` (the first stop counts)."""
        if self.stopped_at is not None:
            return self
        return replace(self, stopped_at=at, stop_reason=reason)

    def revised(
        self,
        at: datetime,
        schedule: ScheduleT,
        reminders: tuple[ReminderWish, ...],
        title: str,
        kind: HomeworkKind,
        version: int,
    ) -> Plan:
        """The plan with a new schedule governing occurrences that open at or after ``at``."""
        if version <= self.version:
            return self
        return replace(
            self,
            title=title,
            kind=kind,
            version=version,
            segments=revised_segments(self.segments, Segment(at, schedule, reminders)),
            reminders_from=max(at, self.not_before),
        )


def expected_occurrences(plan: Plan, *, since: datetime, until: datetime) -> Iterator[tuple[Occurrence, Segment]]:
    """Occurrences that close after ``since`` and open before ``until``, each with the segment governing it."""
    for i, occ in plan.timeline.overlapping(since, until):
        yield occ, plan.segments[i]


def void_reason(plan: Plan, occ: Occurrence) -> CancelReason | None:
    """Why ``occ`` is void (the assignment was paused, cancelled or ended during its window), or None."""
    cause = plan.timeline.void_cause(occ)
    if cause == "stopped":
        return plan.stop_reason
    return None if cause is None else "assignment_paused"


@dataclass(frozen=True)
class QuietHours:
    """A daily span of local time in which no reminder fires; ``start > end`` wraps past midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours must not start and end at the same time")

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, local: datetime) -> datetime:
        """The local end of the quiet span that ``local`` is in."""
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)
        return datetime.combine(day, self.end)


@dataclass(frozen=True)
class Preferences:
    """A client's reminder preferences; None means "not set"."""

    timezone: str | None = None
    quiet_hours: QuietHours | None = None
    channels: tuple[Channel, ...] | None = None


@dataclass(frozen=True)
class PlannedReminder:
    """A reminder as it should be: due at ``due_at``, or dropped by quiet hours when ``due_at`` is None."""

    reminder_id: str
    occurrence: Occurrence
    planned_at: datetime
    due_at: datetime | None
    channels: tuple[Channel, ...]
    timezone: str


def reminder_id(occurrence_id: str, wish: ReminderWish) -> str:
    """``<occurrence_id>#<anchor><+/-offset minutes>``, e.g. ``asg1@2026-03-29T20:00#closes-60``."""
    return f"{occurrence_id}#{wish.anchor}{wish.offset_minutes:+d}"


def due_after_quiet_hours(due: datetime, closes_at: datetime, quiet: QuietHours | None, zone: str) -> datetime | None:
    """``due`` moved to the end of the quiet hours it falls in; None when the window closes first."""
    if quiet is None:
        return due
    local = to_local(due, zone)
    if not quiet.contains(local.time()):
        return due
    moved = to_utc(quiet.end_after(local), zone)
    return moved if moved < closes_at else None


def accepted_channels(wanted: tuple[Channel, ...], preferred: tuple[Channel, ...] | None) -> tuple[Channel, ...]:
    """The channels a reminder goes to, given the client's choice (see the module docstring)."""
    if not preferred:
        return wanted
    kept = tuple(c for c in wanted if c in preferred)
    return kept or preferred


def planned_reminders(occ: Occurrence, segment: Segment, prefs: Preferences) -> list[PlannedReminder]:
    """The reminders ``occ`` should have, with quiet hours and channel preferences applied."""
    zone = prefs.timezone or segment.schedule.timezone
    merged: dict[str, tuple[datetime, list[Channel]]] = {}
    for wish in segment.reminders:
        anchor = occ.opens_at if wish.anchor == "opens" else occ.closes_at
        rid = reminder_id(occ.occurrence_id, wish)
        _, channels = merged.setdefault(rid, (anchor + timedelta(minutes=wish.offset_minutes), []))
        channels.extend(c for c in wish.channels if c not in channels)
    return [
        PlannedReminder(
            reminder_id=rid,
            occurrence=occ,
            planned_at=at,
            due_at=due_after_quiet_hours(at, occ.closes_at, prefs.quiet_hours, zone),
            channels=accepted_channels(tuple(channels), prefs.channels),
            timezone=zone,
        )
        for rid, (at, channels) in merged.items()
    ]


def snoozed_until(now: datetime, minutes: int, closes_at: datetime) -> tuple[datetime, bool]:
    """When a snoozed reminder fires again, and whether it was clamped to the window; Conflict if it cannot."""
    latest = closes_at - SNOOZE_MARGIN
    wanted = now + timedelta(minutes=minutes)
    until = min(wanted, latest)
    if until <= now:
        raise Conflict("window_closing", "the occurrence's window closes too soon to snooze this reminder")
    return until, until < wanted
