"""The rules of the insights, pure (no I/O): which occurrences are due, adherence, series, trends, streaks, flags.

Which occurrences are due, void or missed: the platform-wide rules of :mod:`homework_shared.occurrences`
(the assignment and reminder services apply the same ones).

Adherence % = (done + sum of partial percents / 100) / due x 100, None while nothing is due.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from homework_shared.events.models import CompletionRecorded
from homework_shared.occurrences import Expansion, ScheduleTooLong, Timeline
from homework_shared.occurrences import expansion as shared_expansion
from homework_shared.schedule import Occurrence, ScheduleT, parse_occurrence_id, to_local

LOW_ADHERENCE_PCT = 50.0
MIN_DUE_FOR_LOW_ADHERENCE = 4
EARLY_DAYS = 14
MIN_DUE_FOR_EARLY_LOW_ADHERENCE = 3
TOO_HARD_REPEATS = 2
TREND_MIN_POINTS = 5
TREND_MIN_DAYS = 3
TREND_THRESHOLD_SHARE = 0.10
ATTEMPTS_KEPT = 20


class UnappliableEvent(ValueError):
    """A decodable event that contradicts what the insights know (parked on the dead-letter topic)."""


# ------------------------------------------------------------------ schedules, pauses, revisions


def expansion(schedule: ScheduleT) -> Expansion:
    """The shared cached expansion of ``schedule``; one too long to expand is an event the insights cannot apply."""
    try:
        return shared_expansion(schedule)
    except ScheduleTooLong as exc:
        raise UnappliableEvent(str(exc)) from exc


@dataclass(frozen=True)
class Plan(Timeline):
    """An assignment's timeline (the shared rules), with what the tally of due occurrences needs."""

    @property
    def timezone(self) -> str:
        """The client's time zone, from the schedule in force last."""
        return self.segments[-1].schedule.timezone

    def due_when_closed(self, occ: Occurrence) -> bool:
        """Whether an unresolved occurrence counts as due (missed) once its window has closed."""
        return self.exists(occ) and not self.is_void(occ)

    def tally_limit(self, until: datetime) -> datetime:
        """Nothing closing after an open-ended stop began can be due unresolved: walks stop there."""
        since = self.stopped_since()
        return until if since is None else min(until, since)

    def active_until(self) -> datetime | None:
        """When the last occurrence that can still be due closes (None: the schedule is too long to say)."""
        ends = [expansion(s.schedule).closes[-1] for s in self.segments if expansion(s.schedule).closes]
        last = max(ends) if ends else self.created_at
        since = self.stopped_since()
        return min(last, since) if since is not None else last


def day_of(occurrence_id: str) -> str:
    """The local date (ISO) an occurrence belongs to: the date of its scheduled local start."""
    return parse_occurrence_id(occurrence_id)[1].date().isoformat()


def local_day(instant: datetime, zone_name: str) -> date:
    """The client's local date at an instant."""
    return to_local(instant, zone_name).date()


def days_back(today: date, n: int) -> str:
    """The ISO date ``n - 1`` days before ``today``: the first day of a window of n days ending today."""
    return (today - timedelta(days=n - 1)).isoformat()


# ------------------------------------------------------------------ adherence


def adherence_pct(due: float, done: float, partial_percent_sum: float) -> float | None:
    """(done + sum of partial percents / 100) / due x 100, rounded to 0.1; None when nothing is due."""
    if due <= 0:
        return None
    return round(min(100.0, (done + partial_percent_sum / 100) / due * 100), 1)


# ------------------------------------------------------------------ series


@dataclass(frozen=True)
class SeriesInfo:
    """One numeric series a completion may carry: its scale and which direction is better."""

    label: str
    scale: float | None
    higher_is_better: bool | None


SERIES: dict[str, SeriesInfo] = {
    "quality": SeriesInfo("Quality / effort (0-10)", 10, True),
    "mood": SeriesInfo("Mood (0-10)", 10, True),
    "mood_intensity": SeriesInfo("Mood intensity (0-10)", 10, None),
    "emotion_before": SeriesInfo("Emotion intensity before (0-100)", 100, False),
    "emotion_after": SeriesInfo("Emotion intensity after (0-100)", 100, False),
    "pleasure": SeriesInfo("Pleasure (0-10)", 10, True),
    "mastery": SeriesInfo("Mastery (0-10)", 10, True),
    "suds_before": SeriesInfo("SUDS before (0-100)", 100, False),
    "suds_peak": SeriesInfo("SUDS peak (0-100)", 100, False),
    "suds_after": SeriesInfo("SUDS after (0-100)", 100, False),
    "exposure_minutes": SeriesInfo("Exposure minutes", None, None),
    "outcome": SeriesInfo("Conversation outcome (0-10)", 10, True),
    "mindfulness_minutes": SeriesInfo("Mindfulness minutes", None, None),
    "mindfulness_rating": SeriesInfo("Mindfulness rating (0-10)", 10, True),
    "pages": SeriesInfo("Pages read", None, None),
}


def series_values(completion: CompletionRecorded) -> dict[str, float]:
    """The numeric values a completion adds to the series (custom kinds add only quality)."""
    out: dict[str, float] = {}
    if completion.quality_rating is not None:
        out["quality"] = completion.quality_rating
    d: Any = completion.data
    if d is None:
        return out
    pairs: list[tuple[str, Any]] = []
    if d.kind == "mood_log":
        pairs = [("mood", d.mood), ("mood_intensity", d.intensity)]
    elif d.kind == "thought_record":
        pairs = [("emotion_before", d.emotion_intensity_before), ("emotion_after", d.emotion_intensity_after)]
    elif d.kind == "behavioural_activation":
        pairs = [("pleasure", d.pleasure), ("mastery", d.mastery)]
    elif d.kind == "exposure":
        pairs = [
            ("suds_before", d.suds_before),
            ("suds_peak", d.suds_peak),
            ("suds_after", d.suds_after),
            ("exposure_minutes", d.duration_minutes),
        ]
    elif d.kind == "communication_practice":
        pairs = [("outcome", d.outcome_rating)]
    elif d.kind == "mindfulness":
        pairs = [("mindfulness_minutes", d.minutes), ("mindfulness_rating", d.rating)]
    elif d.kind == "reading":
        pairs = [("pages", d.pages)]
    out.update({name: float(v) for name, v in pairs if v is not None})
    return out


@dataclass(frozen=True)
class DayPoint:
    """One day of a series: how many values, their sum, minimum and maximum."""

    day: str
    n: int
    total: float
    low: float
    high: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0


Trend = Literal["improving", "stable", "declining"]


def trend_label(points: Sequence[DayPoint], name: str) -> Trend | None:
    """Improving / stable / declining from the least-squares slope of the daily means; None on too little data.

    Needs at least ``TREND_MIN_POINTS`` values over at least ``TREND_MIN_DAYS`` days and a
    series with a better direction. The change across the period (slope x span in days) counts
    as stable while it stays under ``TREND_THRESHOLD_SHARE`` (10%) of the series' scale.
    """
    info = SERIES.get(name)
    usable = [p for p in points if p.n > 0]
    if info is None or info.scale is None or info.higher_is_better is None:
        return None
    if sum(p.n for p in usable) < TREND_MIN_POINTS or len(usable) < TREND_MIN_DAYS:
        return None
    origin = date.fromisoformat(usable[0].day)
    xs = [(date.fromisoformat(p.day) - origin).days for p in usable]
    ys = [p.mean for p in usable]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    change = slope * (xs[-1] - xs[0])
    if abs(change) < TREND_THRESHOLD_SHARE * info.scale or math.isclose(change, 0.0):
        return "stable"
    better = change > 0 if info.higher_is_better else change < 0
    return "improving" if better else "declining"


# ------------------------------------------------------------------ streaks


@dataclass
class Streak:
    """Consecutive scheduled occurrences completed (done or partial), following the schedule, not the calendar.

    The sequence is the assignment's accounted occurrences (completed, skipped, or reported
    missed) in order of opening; void occurrences are not in it. ``before_last`` is the run
    that ended just before the last accounted occurrence, so a late completion of that one
    (after it was reported missed) is folded in O(1).
    """

    current: int = 0
    longest: int = 0
    before_last: int = 0
    last_opens: datetime | None = None
    last_completed: bool = False

    def record(self, opens_at: datetime, completed: bool) -> bool:
        """Fold one outcome in; False when it concerns an older occurrence and the streak needs a rebuild."""
        if self.last_opens is None or opens_at > self.last_opens:
            self.before_last = self.current
            self.current = self.current + 1 if completed else 0
            self.last_opens, self.last_completed = opens_at, completed
        elif opens_at == self.last_opens:
            if completed and not self.last_completed:
                self.current = self.before_last + 1
                self.last_completed = True
        else:
            return False
        self.longest = max(self.longest, self.current)
        return True

    @classmethod
    def rebuilt(cls, outcomes: Iterable[tuple[datetime, bool]]) -> Streak:
        """The streak of a whole ordered sequence of (opens_at, completed)."""
        streak = cls()
        for opens_at, completed in sorted(outcomes, key=lambda o: o[0]):
            streak.record(opens_at, completed)
        return streak

    def to_doc(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "longest": self.longest,
            "before_last": self.before_last,
            "last_opens": self.last_opens,
            "last_completed": self.last_completed,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> Streak:
        doc = doc or {}
        return cls(
            current=int(doc.get("current", 0)),
            longest=int(doc.get("longest", 0)),
            before_last=int(doc.get("before_last", 0)),
            last_opens=doc.get("last_opens"),
            last_completed=bool(doc.get("last_completed", False)),
        )


# ------------------------------------------------------------------ reminder effect


def after_reminder(completed_at: datetime, reminders_sent: Iterable[datetime], hours: float) -> bool:
    """Whether a completion came within ``hours`` after some reminder of its occurrence."""
    window = timedelta(hours=hours)
    return any(sent <= completed_at <= sent + window for sent in reminders_sent)


# ------------------------------------------------------------------ thresholds and flags


@dataclass(frozen=True)
class ThresholdRule:
    """A therapist's line on a series: flag when a value is ``at_most`` or ``at_least`` ``value``."""

    metric: str
    direction: Literal["at_most", "at_least"]
    value: float

    def crossed_by(self, value: float) -> bool:
        return value <= self.value if self.direction == "at_most" else value >= self.value

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.direction == 'at_most' else '>='} {self.value:g}"


@dataclass(frozen=True)
class AssignmentFacts:
    """What the flags of one assignment rest on."""

    assignment_id: str
    title: str
    due: float
    done: float
    partial_percent: float
    early_due: float
    early_done: float
    early_partial_percent: float
    too_hard_since_revision: int
    latest: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Flag:
    """A condition worth the therapist's attention, with the figures it rests on."""

    code: Literal["low_adherence", "early_low_adherence", "repeatedly_too_hard", "rating_threshold_crossed"]
    key: str
    assignment_id: str
    reason: str
    figures: dict[str, float | int | str | None]

    def to_doc(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "key": self.key,
            "assignment_id": self.assignment_id,
            "reason": self.reason,
            "figures": self.figures,
        }


def evaluate_flags(facts: AssignmentFacts, rules: Sequence[ThresholdRule]) -> list[Flag]:
    """Every flag whose condition holds for one assignment now.

    * ``low_adherence``: adherence under 50% once at least 4 occurrences are due;
    * ``early_low_adherence``: adherence under 50% over the first 14 local days of the
      assignment, once at least 3 of those occurrences are due;
    * ``repeatedly_too_hard``: skipped as "too hard" at least twice since the last revision
      (a revision, e.g. smaller steps, ends the episode);
    * ``rating_threshold_crossed``: the latest value of a series is on the wrong side of a
      threshold the therapist set.
    """
    found = [_low_adherence(facts), _early_low_adherence(facts), _repeatedly_too_hard(facts)]
    return [f for f in found if f is not None] + _thresholds_crossed(facts, rules)


def _low_adherence(facts: AssignmentFacts) -> Flag | None:
    pct = adherence_pct(facts.due, facts.done, facts.partial_percent)
    if facts.due < MIN_DUE_FOR_LOW_ADHERENCE or pct is None or pct >= LOW_ADHERENCE_PCT:
        return None
    return Flag(
        "low_adherence",
        "low_adherence",
        facts.assignment_id,
        f"{facts.title}: adherence {pct:g}% is under {LOW_ADHERENCE_PCT:g}% "
        f"({_count(facts.done)} done, {facts.partial_percent / 100:g} partial of {_count(facts.due)} due).",
        {"adherence_pct": pct, "due": _count(facts.due), "done": _count(facts.done)},
    )


def _early_low_adherence(facts: AssignmentFacts) -> Flag | None:
    early = adherence_pct(facts.early_due, facts.early_done, facts.early_partial_percent)
    if facts.early_due < MIN_DUE_FOR_EARLY_LOW_ADHERENCE or early is None or early >= LOW_ADHERENCE_PCT:
        return None
    return Flag(
        "early_low_adherence",
        "early_low_adherence",
        facts.assignment_id,
        f"{facts.title}: adherence {early:g}% in the first {EARLY_DAYS} days "
        f"({_count(facts.early_done)} done of {_count(facts.early_due)} due); "
        "early adherence predicts outcome.",
        {"early_adherence_pct": early, "early_due": _count(facts.early_due)},
    )


def _repeatedly_too_hard(facts: AssignmentFacts) -> Flag | None:
    if facts.too_hard_since_revision < TOO_HARD_REPEATS:
        return None
    return Flag(
        "repeatedly_too_hard",
        "repeatedly_too_hard",
        facts.assignment_id,
        f"{facts.title}: skipped as too hard {facts.too_hard_since_revision} times; consider smaller steps.",
        {"too_hard_skips": facts.too_hard_since_revision},
    )


def _thresholds_crossed(facts: AssignmentFacts, rules: Sequence[ThresholdRule]) -> list[Flag]:
    flags: list[Flag] = []
    for rule in rules:
        value = facts.latest.get(rule.metric)
        if value is not None and rule.crossed_by(value):
            flags.append(
                Flag(
                    "rating_threshold_crossed",
                    f"rating_threshold_crossed:{rule.metric}",
                    facts.assignment_id,
                    f"{facts.title}: latest {rule.metric} {value:g} crosses the threshold {rule.describe()}.",
                    {"metric": rule.metric, "value": value, "threshold": rule.value, "direction": rule.direction},
                )
            )
    return flags


def _count(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def alert_id(flag: Flag, episode: int) -> str:
    """The deterministic id of a flag's n-th episode: one alert per episode, however often it is staged."""
    return f"alr-{flag.key.replace(':', '.')}-{flag.assignment_id}-{episode}"
