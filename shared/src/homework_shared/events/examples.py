"""One complete, valid example of every event type: for the docs, the tests and subscribers' own tests."""

from __future__ import annotations

from datetime import UTC, datetime

from homework_shared.events.base import HomeworkEvent
from homework_shared.events.models import (
    AdherenceAlertRaised,
    AssignmentCancelled,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    ClientErasureCompleted,
    ClientErasureRequested,
    CompletionRecorded,
    InsightSummaryGenerated,
    OccurrenceMissed,
    OccurrenceSkipped,
    ReminderCancelled,
    ReminderScheduled,
    ReminderSent,
    ReminderSnoozed,
)
from homework_shared.events.values import (
    Barrier,
    Channel,
    CompletionStatus,
    ExposureData,
    ExposureStep,
    HomeworkKind,
    RecurringSchedule,
    ReminderWish,
    Target,
)

CLIENT, PRACTICE, THERAPIST = "client-7f3a", "practice-berlin-1", "therapist-42"
ASSIGNMENT = "asg-01HX2Y"
OCCURRENCE = f"{ASSIGNMENT}@2026-03-29T20:00"
T0 = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)
OPENS = datetime(2026, 3, 29, 18, 0, tzinfo=UTC)
CLOSES = datetime(2026, 3, 29, 20, 0, tzinfo=UTC)
REMINDER = f"{OCCURRENCE}#opens+0"

SCHEDULE = RecurringSchedule(
    timezone="Europe/Berlin", rrule="FREQ=DAILY", starts_at=datetime(2026, 3, 21, 20, 0), count=14, window_minutes=120
)
STEPS = [
    ExposureStep(number=1, description="Stand near the lift for 5 minutes", expected_suds=30),
    ExposureStep(number=2, description="Ride the lift one floor with a friend", expected_suds=55),
    ExposureStep(number=3, description="Ride the lift alone to the top floor", expected_suds=80),
]
_snapshot = dict(
    client_id=CLIENT,
    practice_id=PRACTICE,
    assignment_id=ASSIGNMENT,
    therapist_id=THERAPIST,
    kind=HomeworkKind.EXPOSURE,
    title="Lift exposure, step by step",
    has_rationale=True,
    schedule=SCHEDULE,
    target=Target(times=5, per_days=7),
    steps=STEPS,
    reminders=[
        ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.PUSH]),
        ReminderWish(anchor="closes", offset_minutes=-60, channels=[Channel.PUSH, Channel.SMS]),
    ],
    allow_late_completion=False,
)
_occurrence = dict(
    client_id=CLIENT,
    practice_id=PRACTICE,
    assignment_id=ASSIGNMENT,
    occurrence_id=OCCURRENCE,
    local_start=datetime(2026, 3, 29, 20, 0),
    opens_at=OPENS,
    closes_at=CLOSES,
)
_reminder = dict(
    client_id=CLIENT,
    practice_id=PRACTICE,
    reminder_id=REMINDER,
    assignment_id=ASSIGNMENT,
    occurrence_id=OCCURRENCE,
    due_at=OPENS,
)

EXAMPLES: dict[type[HomeworkEvent], HomeworkEvent] = {
    AssignmentCreated: AssignmentCreated(**_snapshot, version=1, created_at=T0),
    AssignmentRevised: AssignmentRevised(**_snapshot, version=2, changed=["steps", "schedule"], revised_at=T0),
    AssignmentPaused: AssignmentPaused(client_id=CLIENT, practice_id=PRACTICE, assignment_id=ASSIGNMENT, paused_at=T0),
    AssignmentResumed: AssignmentResumed(
        client_id=CLIENT, practice_id=PRACTICE, assignment_id=ASSIGNMENT, resumed_at=T0
    ),
    AssignmentCancelled: AssignmentCancelled(
        client_id=CLIENT, practice_id=PRACTICE, assignment_id=ASSIGNMENT, cancelled_at=T0
    ),
    AssignmentEnded: AssignmentEnded(
        client_id=CLIENT, practice_id=PRACTICE, assignment_id=ASSIGNMENT, ended_at=T0, reason="ended_by_therapist"
    ),
    CompletionRecorded: CompletionRecorded(
        **_occurrence,
        completion_id="cmp-9b1c",
        kind=HomeworkKind.EXPOSURE,
        status=CompletionStatus.DONE,
        percent=100,
        quality_rating=7,
        data=ExposureData(step=2, suds_before=60, suds_peak=75, suds_after=35, duration_minutes=20),
        note="Harder than expected at first.",
        completed_at=datetime(2026, 3, 29, 19, 10, tzinfo=UTC),
    ),
    OccurrenceSkipped: OccurrenceSkipped(
        **_occurrence,
        skip_id="skp-44aa",
        barrier=Barrier.TOO_HARD,
        barrier_text="Too anxious today.",
        recorded_at=CLOSES,
    ),
    ReminderScheduled: ReminderScheduled(
        **_reminder, channels=[Channel.PUSH], timezone="Europe/Berlin", closes_at=CLOSES
    ),
    ReminderSent: ReminderSent(
        **_reminder,
        channels=[Channel.PUSH],
        sent_at=OPENS,
        title="Lift exposure, step by step",
        kind=HomeworkKind.EXPOSURE,
        closes_at=CLOSES,
    ),
    ReminderCancelled: ReminderCancelled(**_reminder, reason="completed", cancelled_at=OPENS),
    ReminderSnoozed: ReminderSnoozed(
        **_reminder, snoozed_until=datetime(2026, 3, 29, 18, 30, tzinfo=UTC), snoozed_at=OPENS
    ),
    OccurrenceMissed: OccurrenceMissed(**_occurrence, detected_at=CLOSES),
    InsightSummaryGenerated: InsightSummaryGenerated(
        client_id=CLIENT,
        practice_id=PRACTICE,
        summary_id="sum-2026-03-30",
        period_start=T0,
        period_end=datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
        occurrences_due=9,
        done=5,
        partial=1,
        skipped=2,
        missed=1,
        adherence_pct=61.1,
        flags=["repeatedly_too_hard"],
        generated_at=datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
    ),
    AdherenceAlertRaised: AdherenceAlertRaised(
        client_id=CLIENT,
        practice_id=PRACTICE,
        alert_id="alr-repeatedly_too_hard-asg-01HX2Y-1",
        code="repeatedly_too_hard",
        assignment_id=ASSIGNMENT,
        reason="Skipped as too hard 2 times: consider smaller steps.",
        figures={"too_hard_skips": 2},
        raised_at=CLOSES,
    ),
    ClientErasureRequested: ClientErasureRequested(
        client_id=CLIENT,
        practice_id=PRACTICE,
        erasure_id="era-5d0e",
        reason="request",
        requested_at=datetime(2026, 4, 2, 9, 0, tzinfo=UTC),
    ),
    ClientErasureCompleted: ClientErasureCompleted(
        client_id=CLIENT,
        practice_id=PRACTICE,
        erasure_id="era-5d0e",
        service="reminder",
        counts={"plans": 2, "occurrences": 14, "reminders": 14, "preferences": 1, "deliveries": 3, "held_events": 0},
        completed_at=datetime(2026, 4, 2, 9, 0, 1, tzinfo=UTC),
    ),
}
