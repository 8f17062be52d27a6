"""Hand-made event sequences for the insights tests: one client, assignments with real schedules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from homework_insights.domain import expansion
from homework_insights.figures import client_figures
from homework_insights.store import MemoryStore
from homework_insights.unit_of_work import Context
from homework_insights.usecases import apply_event
from homework_shared.events import (
    AssignmentCancelled,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    CompletionRecorded,
    Envelope,
    HomeworkEvent,
    HomeworkKind,
    OccurrenceMissed,
    OccurrenceSkipped,
    RecurringSchedule,
    ReminderSent,
    envelope,
)
from homework_shared.events.values import (
    Barrier,
    CompletionStatus,
    ExposureData,
    MoodLogData,
    OnceSchedule,
)
from homework_shared.schedule import Occurrence, occurrence_at

CLIENT, PRACTICE, THERAPIST = "client-1", "practice-1", "therapist-1"
BERLIN = "Europe/Berlin"
_ids = itertools.count(1)

Schedule = OnceSchedule | RecurringSchedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def daily(start: datetime, count: int, *, window: int = 120, tz: str = BERLIN, rrule: str = "FREQ=DAILY") -> Schedule:
    """A recurring schedule from a naive local ``start``."""
    return RecurringSchedule(timezone=tz, rrule=rrule, starts_at=start, count=count, window_minutes=window)


@dataclass
class Assignment:
    """One assignment of the test client, and shortcuts for its events."""

    assignment_id: str
    schedule: Schedule
    kind: HomeworkKind = HomeworkKind.MOOD_LOG
    client_id: str = CLIENT
    version: int = 1
    earlier: list[Schedule] = field(default_factory=list)
    practice_id: str = PRACTICE

    def created(self, at: datetime, **extra: Any) -> AssignmentCreated:
        return AssignmentCreated(
            client_id=self.client_id,
            practice_id=self.practice_id,
            assignment_id=self.assignment_id,
            therapist_id=THERAPIST,
            kind=self.kind,
            title=extra.pop("title", f"Homework {self.assignment_id}"),
            schedule=self.schedule,
            version=1,
            created_at=at,
            **extra,
        )

    def revised(self, at: datetime, schedule: Schedule) -> AssignmentRevised:
        self.version += 1
        self.earlier.append(self.schedule)
        self.schedule = schedule
        return AssignmentRevised(
            client_id=self.client_id,
            practice_id=self.practice_id,
            assignment_id=self.assignment_id,
            therapist_id=THERAPIST,
            kind=self.kind,
            title=f"Homework {self.assignment_id}",
            schedule=schedule,
            version=self.version,
            revised_at=at,
        )

    def paused(self, at: datetime) -> AssignmentPaused:
        return AssignmentPaused(
            client_id=self.client_id, practice_id=self.practice_id, assignment_id=self.assignment_id, paused_at=at
        )

    def resumed(self, at: datetime) -> AssignmentResumed:
        return AssignmentResumed(
            client_id=self.client_id, practice_id=self.practice_id, assignment_id=self.assignment_id, resumed_at=at
        )

    def cancelled(self, at: datetime) -> AssignmentCancelled:
        return AssignmentCancelled(
            client_id=self.client_id, practice_id=self.practice_id, assignment_id=self.assignment_id, cancelled_at=at
        )

    def ended(self, at: datetime) -> AssignmentEnded:
        return AssignmentEnded(
            client_id=self.client_id,
            practice_id=self.practice_id,
            assignment_id=self.assignment_id,
            ended_at=at,
            reason="ended_by_therapist",
        )

    def occurrence(self, local: datetime) -> dict[str, Any]:
        found = (_occurrence(self.assignment_id, s, local) for s in [self.schedule, *reversed(self.earlier)])
        occ = next((o for o in found if o is not None), None)
        assert occ is not None, f"no occurrence at {local}"
        return {
            "client_id": self.client_id,
            "practice_id": self.practice_id,
            "assignment_id": self.assignment_id,
            "occurrence_id": occ.occurrence_id,
            "local_start": occ.local_start,
            "opens_at": occ.opens_at,
            "closes_at": occ.closes_at,
        }

    def done(
        self,
        local: datetime,
        *,
        after: timedelta = timedelta(minutes=10),
        percent: int = 100,
        quality: int | None = None,
        data: Any = None,
        late: bool = False,
    ) -> CompletionRecorded:
        ref = self.occurrence(local)
        return CompletionRecorded(
            **ref,
            completion_id=f"cmp-{next(_ids)}",
            kind=self.kind,
            status=CompletionStatus.DONE if percent == 100 else CompletionStatus.PARTIAL,
            percent=percent,
            quality_rating=quality,
            data=data,
            completed_at=ref["opens_at"] + after,
            late=late,
        )

    def mood(self, local: datetime, mood: int, **kw: Any) -> CompletionRecorded:
        return self.done(local, data=MoodLogData(mood=mood), **kw)

    def exposure(self, local: datetime, step: int, before: int, peak: int, after: int) -> CompletionRecorded:
        return self.done(
            local,
            data=ExposureData(step=step, suds_before=before, suds_peak=peak, suds_after=after, duration_minutes=30),
        )

    def skipped(self, local: datetime, barrier: Barrier = Barrier.FORGOT) -> OccurrenceSkipped:
        ref = self.occurrence(local)
        return OccurrenceSkipped(
            **ref, skip_id=f"skp-{next(_ids)}", barrier=barrier, recorded_at=ref["opens_at"] + timedelta(minutes=5)
        )

    def missed(self, local: datetime) -> OccurrenceMissed:
        ref = self.occurrence(local)
        return OccurrenceMissed(**ref, detected_at=ref["closes_at"] + timedelta(seconds=30))

    def reminder(self, local: datetime, *, after: timedelta = timedelta(0)) -> ReminderSent:
        ref = self.occurrence(local)
        return ReminderSent(
            client_id=self.client_id,
            practice_id=self.practice_id,
            reminder_id=f"{ref['occurrence_id']}#opens+0",
            assignment_id=self.assignment_id,
            occurrence_id=ref["occurrence_id"],
            due_at=ref["opens_at"],
            channels=["push"],
            sent_at=ref["opens_at"] + after,
            title="Homework",
            kind=self.kind,
            closes_at=ref["closes_at"],
        )


def _occurrence(assignment_id: str, schedule: Schedule, local: datetime) -> Occurrence | None:
    """The occurrence at ``local``: by index in the cached expansion (the shared ``occurrence_at`` walks the rule)."""
    if isinstance(schedule, OnceSchedule):
        return occurrence_at(assignment_id, schedule, local)
    exp = expansion(schedule)
    k = exp.index.get(local)
    return None if k is None else Occurrence(assignment_id, local, exp.opens[k], exp.closes[k])


def env(event: HomeworkEvent, event_id: str | None = None) -> Envelope[Any]:
    return envelope(event, source="/homework/test", event_id=event_id or f"evt-{next(_ids)}")


@dataclass
class Harness:
    """The real fold on the in-memory store, with a clock set by hand."""

    now: datetime
    store: MemoryStore = field(default_factory=MemoryStore)
    alerts: list[str] = field(default_factory=list)
    reminder_hours: float = 2.0

    async def apply(self, *events: HomeworkEvent | Envelope[Any]) -> None:
        for e in events:
            ctx = Context(self.store, self.now, self.reminder_hours)
            await apply_event(ctx, e if isinstance(e, Envelope) else env(e))
            self.alerts.extend(ctx.alerts)

    async def figures(
        self, client_id: str = CLIENT, *, flags: bool = True, practice_id: str = PRACTICE
    ) -> dict[str, Any]:
        return await client_figures(self.store, practice_id, client_id, self.now, with_flags=flags)

    async def assignment(self, assignment_id: str, client_id: str = CLIENT) -> dict[str, Any]:
        figures = await self.figures(client_id)
        return next(a for a in figures["assignments"] if a["assignment_id"] == assignment_id)
