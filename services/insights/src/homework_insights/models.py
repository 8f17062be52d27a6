"""What the insights API answers: the figures and the summaries as pydantic models, so OpenAPI shows their schema.

The figures and summaries are computed as plain documents (``figures.py``, ``summaries.py``);
these models describe them field by field (``extra="forbid"``: the unit tests validate real
answers against them, so a field added to a document and not here fails a test, not a client).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from homework_insights.domain import Trend
from homework_shared.events import HomeworkKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowFigures(Strict):
    """Counts and adherence over some days."""

    due: int
    done: int
    partial: int
    skipped: int
    missed: int
    adherence_pct: float | None = Field(description="(done + partial percents / 100) / due x 100; null: none due")


class ReminderEffect(Strict):
    occurrences_reminded: int
    completions_after_reminder: int
    completions_without_reminder: int
    missed_reported: int


class Figures(WindowFigures):
    """Headline figures from summed counts."""

    late: int
    quality_mean: float | None
    quality_ratings: int
    barriers: dict[str, int] = Field(description="skips per barrier, most frequent first")
    reminders: ReminderEffect


class FlagPublic(Strict):
    """A condition worth the therapist's attention, with the figures it rests on."""

    code: Literal["low_adherence", "early_low_adherence", "repeatedly_too_hard", "rating_threshold_crossed"]
    key: str
    assignment_id: str
    reason: str
    figures: dict[str, float | int | str | None]


class StreakPublic(Strict):
    current: int
    longest: int


class SeriesPoint(Strict):
    date: str = Field(description="local day, YYYY-MM-DD")
    n: int
    mean: float
    min: float
    max: float


class SeriesView(Strict):
    """A rated series (mood, SUDS, ...) with its daily points and trend."""

    metric: str
    label: str
    scale: float | None
    values: int
    mean: float
    trend: Trend | None = Field(description="null on too little data")
    points: list[SeriesPoint]


class ExposureAttempt(Strict):
    at: datetime
    occurrence_id: str
    before: int
    peak: int
    after: int
    minutes: int


class ExposureStep(Strict):
    step: int
    attempts: list[ExposureAttempt]
    within_attempt_drop_last: int
    peak_change_across_attempts: int


class Overall(Figures):
    last_7_days: WindowFigures
    last_28_days: WindowFigures


class AssignmentHeader(Strict):
    assignment_id: str
    title: str
    kind: HomeworkKind
    state: str
    created_at: datetime
    timezone: str


class AssignmentFigures(AssignmentHeader, Figures):
    """One assignment's figures (``flags`` only for a therapist or admin)."""

    last_7_days: WindowFigures
    last_28_days: WindowFigures
    streak: StreakPublic
    series: list[SeriesView]
    exposure_steps: list[ExposureStep]
    flags: list[FlagPublic] | None = None


class ClientFigures(Strict):
    """A client's figures now: ``overall``, ``by_kind`` and ``flags`` over every assignment, one page of them."""

    client_id: str
    as_of: datetime
    overall: Overall
    by_kind: dict[str, Figures]
    assignments: list[AssignmentFigures]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last page")
    flags: list[FlagPublic] | None = Field(default=None, description="therapists and admins only")


class SummaryAssignment(AssignmentHeader, Figures):
    streak: StreakPublic


class SummarySeries(SeriesView):
    assignment_id: str
    title: str


class SummaryExposure(ExposureStep):
    assignment_id: str
    title: str


class BarrierCount(Strict):
    barrier: str
    count: int


class FigureChange(Strict):
    before: float | None
    now: float | None
    change: float | None


class Changes(Strict):
    """What moved since the previous summary."""

    previous_summary_id: str
    previous_period_end: datetime
    figures: dict[str, FigureChange]
    new_flags: list[FlagPublic]
    cleared_flags: list[FlagPublic]


class ThresholdPublic(Strict):
    metric: str
    direction: Literal["at_most", "at_least"]
    value: float


class SummaryPublic(Strict):
    """A pre-session summary over a period of the client's local days."""

    summary_id: str
    client_id: str
    practice_id: str
    period_start: datetime
    period_end: datetime
    first_day: str
    last_day: str
    timezone: str
    generated_at: datetime
    generated_by: str
    headline: Figures
    assignments: list[SummaryAssignment]
    series: list[SummarySeries]
    exposure: list[SummaryExposure]
    barriers: list[BarrierCount]
    flags: list[FlagPublic]
    changes: Changes | None = Field(description="null for a client's first summary")
    thresholds: list[ThresholdPublic]


class SummaryListItem(Strict):
    """A summary's headline, as listed."""

    summary_id: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    headline: Figures
    flags: list[FlagPublic]


class SummaryPage(Strict):
    """One page of a client's summaries, newest first; ``next_cursor`` is null on the last page."""

    items: list[SummaryListItem]
    next_cursor: str | None
