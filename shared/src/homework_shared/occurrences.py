"""The platform's occurrence rules, written once: the assignment, reminder and insights services all apply these.

* An occurrence O has ``opens_at``/``closes_at`` from :mod:`homework_shared.schedule`. Its *effective
  window* is ``[max(O.opens_at, created_at), O.closes_at)``; an occurrence whose window closed
  before the assignment was created does not exist for anyone.
* O is **void** (not due, no reminders, never missed) if at any instant of its effective window,
  before O was resolved, the assignment was paused, cancelled or ended. Pausing at P and resuming
  at Q voids every unresolved occurrence open at P or opening in [P, Q); cancelling or ending at
  C voids the unresolved occurrence open at C and everything after. A resolved occurrence is
  never void.
* A revision at instant R with a new schedule: the old schedule governs occurrences with
  ``opens_at < R``, the new one those with ``opens_at >= R`` (a revision at or before an earlier
  one's instant replaces it). Ids are deterministic (``<assignment_id>@<local start>``), so an id
  present under two schedules is one occurrence: the later schedule's.
* O is **due** once it is resolved (completed or skipped, even before it closes), or once its
  window closed and it is not void. O is **missed** when its window closes unresolved and it is
  not void; a late completion afterwards counts as done, late.

Each schedule is expanded once per process into sorted tuples (:func:`expansion`), so every
question above is a dictionary look-up or a binary search.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from homework_shared.schedule import (
    MAX_OCCURRENCES,
    Occurrence,
    ScheduleError,
    ScheduleT,
    occurrences,
    parse_occurrence_id,
)

VoidCause = Literal["paused", "stopped"]
Standing = Literal["void", "upcoming", "open", "missed"]


class ScheduleTooLong(ScheduleError):
    """A schedule with more occurrences than any service expands (the assignment service refuses these)."""


# ------------------------------------------------------------------ the cached expansion


@dataclass(frozen=True)
class Expansion:
    """Every occurrence of one schedule, sorted by opening instant, for O(log n) range queries."""

    local_starts: tuple[datetime, ...]
    opens: tuple[datetime, ...]
    closes: tuple[datetime, ...]
    max_window: timedelta
    index: dict[datetime, int]


_EXPANSIONS: dict[str, Expansion] = {}
_EXPANSIONS_KEPT = 512


def _expand(schedule: ScheduleT) -> Expansion:
    items: list[Occurrence] = []
    for occ in occurrences("x", schedule):
        items.append(occ)
        if len(items) > MAX_OCCURRENCES:
            raise ScheduleTooLong(f"the schedule has more than {MAX_OCCURRENCES} occurrences")
    items.sort(key=lambda o: o.opens_at)
    window = max((o.closes_at - o.opens_at for o in items), default=timedelta(0))
    return Expansion(
        tuple(o.local_start for o in items),
        tuple(o.opens_at for o in items),
        tuple(o.closes_at for o in items),
        window,
        {o.local_start.replace(second=0, microsecond=0): k for k, o in enumerate(items)},
    )


def expansion(schedule: ScheduleT) -> Expansion:
    """The cached expansion of ``schedule`` (computed once per process and schedule, then O(log n) queries)."""
    key = schedule.model_dump_json()
    found = _EXPANSIONS.get(key)
    if found is None:
        if len(_EXPANSIONS) >= _EXPANSIONS_KEPT:
            _EXPANSIONS.pop(next(iter(_EXPANSIONS)))
        found = _EXPANSIONS[key] = _expand(schedule)
    return found


# ------------------------------------------------------------------ segments and pauses


@dataclass(frozen=True)
class Segment:
    """A schedule and the instant from which it governs occurrences (None: from the beginning)."""

    starts_at: datetime | None
    schedule: ScheduleT


@dataclass(frozen=True)
class Pause:
    """A stretch from ``start`` in which nothing is due: paused, or stopped (``end`` None: still is).

    Stored as ``interruptions`` by assignment, ``pauses`` by reminder and ``stops`` by insights: the
    stored field names are kept.
    """

    start: datetime
    end: datetime | None = None


SegmentT = TypeVar("SegmentT", bound=Segment)


def revised_segments(segments: Sequence[SegmentT], new: SegmentT) -> tuple[SegmentT, ...]:
    """The segments after a revision: ``new`` governs from its start, replacing any that start there or later."""
    at = new.starts_at
    kept = tuple(s for s in segments if s.starts_at is None or (at is not None and s.starts_at < at))
    return (*kept, new)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


# ------------------------------------------------------------------ the timeline of one assignment


@dataclass(frozen=True)
class Timeline:
    """Everything that decides which occurrences of one assignment exist and which are void.

    ``pauses`` are the stretches in which nothing is due (in insights also a stop, kept as a pause
    that never ends); ``stopped_at`` is when the assignment was cancelled or ended (a stop), where a
    service keeps that apart. Pause is the one word for such a stretch in every service.
    """

    assignment_id: str
    created_at: datetime
    segments: Sequence[Segment]
    pauses: Sequence[Pause] = ()
    stopped_at: datetime | None = None

    def bounds(self, i: int) -> tuple[datetime | None, datetime | None]:
        """The opening instants ``[lo, hi)`` that segment ``i`` governs (None: open-ended)."""
        lo = self.segments[i].starts_at if i > 0 else None
        hi = self.segments[i + 1].starts_at if i + 1 < len(self.segments) else None
        return lo, hi

    def exists(self, occ: Occurrence) -> bool:
        """False for an occurrence whose window closed before the assignment was created."""
        return occ.closes_at > self.created_at

    def _at(self, i: int, local_start: datetime) -> Occurrence | None:
        """The occurrence segment ``i`` governs at ``local_start`` (None: it governs none then)."""
        exp = expansion(self.segments[i].schedule)
        k = exp.index.get(local_start)
        if k is None:
            return None
        lo, hi = self.bounds(i)
        occ = Occurrence(self.assignment_id, exp.local_starts[k], exp.opens[k], exp.closes[k])
        in_range = (lo is None or occ.opens_at >= lo) and (hi is None or occ.opens_at < hi)
        return occ if in_range and self.exists(occ) else None

    def _superseded(self, i: int, occ: Occurrence) -> bool:
        local = occ.local_start.replace(second=0, microsecond=0)
        return any(self._at(j, local) is not None for j in range(i + 1, len(self.segments)))

    def occurrence(self, occurrence_id: str) -> Occurrence | None:
        """The occurrence with this id, from the schedule that governs it; None if the assignment has none such."""
        try:
            assignment_id, local = parse_occurrence_id(occurrence_id)
        except ValueError:
            return None
        if assignment_id != self.assignment_id:
            return None
        for i in reversed(range(len(self.segments))):
            if (occ := self._at(i, local)) is not None:
                return occ
        return None

    def governed_between(self, start: datetime | None, end: datetime | None) -> Iterator[tuple[int, Occurrence]]:
        """Occurrences opening in ``[start, end)``, in order, each with the index of the segment governing it."""
        for i, segment in enumerate(self.segments):
            lo, hi = self.bounds(i)
            a, b = _later(start, lo), _earlier(end, hi)
            exp = expansion(segment.schedule)
            first = 0 if a is None else bisect.bisect_left(exp.opens, a)
            last = len(exp.opens) if b is None else bisect.bisect_left(exp.opens, b)
            for k in range(first, last):
                occ = Occurrence(self.assignment_id, exp.local_starts[k], exp.opens[k], exp.closes[k])
                if self.exists(occ) and not self._superseded(i, occ):
                    yield i, occ

    def opening_between(self, start: datetime | None, end: datetime | None) -> Iterator[Occurrence]:
        """Occurrences whose opening instant is in ``[start, end)``, each from the schedule that governs it."""
        for _, occ in self.governed_between(start, end):
            yield occ

    def overlapping(self, since: datetime, until: datetime) -> Iterator[tuple[int, Occurrence]]:
        """Occurrences that close after ``since`` and open before ``until``, each with its segment's index."""
        widest = max(expansion(s.schedule).max_window for s in self.segments)
        for i, occ in self.governed_between(since - widest, until):
            if occ.closes_at > since:
                yield i, occ

    def closing_between(self, after: datetime, until: datetime) -> Iterator[Occurrence]:
        """Occurrences whose window closes in ``(after, until]``."""
        if until <= after:
            return
        for _, occ in self.overlapping(after, until):
            if occ.closes_at <= until:
                yield occ

    def last_close(self) -> datetime | None:
        """When the last occurrence under every schedule it has had closes (None: no occurrence at all)."""
        closes: list[datetime] = []
        for i, segment in enumerate(self.segments):
            exp = expansion(segment.schedule)
            lo, hi = self.bounds(i)
            if hi is None:
                closes += exp.closes[-1:]
                continue
            k = bisect.bisect_left(exp.opens, hi) - 1
            if k >= 0 and (lo is None or exp.opens[k] >= lo):
                closes.append(exp.closes[k])
        return max(closes, default=None)

    def void_cause(self, occ: Occurrence) -> VoidCause | None:
        """Why an unresolved occurrence is void (stopped, or paused during its effective window), or None."""
        if self.stopped_at is not None and self.stopped_at < occ.closes_at:
            return "stopped"
        start = max(occ.opens_at, self.created_at)
        if any(s.start < occ.closes_at and (s.end is None or s.end > start) for s in self.pauses):
            return "paused"
        return None

    def is_void(self, occ: Occurrence) -> bool:
        """Whether an unresolved occurrence is void: the assignment was interrupted during its window."""
        return self.void_cause(occ) is not None

    def standing(self, occ: Occurrence, now: datetime) -> Standing:
        """Where an unresolved occurrence stands at ``now``: exactly one of void, upcoming, open, missed."""
        if self.is_void(occ):
            return "void"
        if now < occ.opens_at:
            return "upcoming"
        return "open" if now < occ.closes_at else "missed"

    def stopped_since(self) -> datetime | None:
        """When the open-ended interruption or stop began (paused, cancelled or ended and not resumed), else None."""
        starts = [s.start for s in self.pauses if s.end is None]
        if self.stopped_at is not None:
            starts.append(self.stopped_at)
        return min(starts, default=None)
