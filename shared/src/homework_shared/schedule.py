"""Occurrences of a schedule, in the client's local time, with one written DST policy.

Schedules are expanded in local *wall* time ("20:00 every day" stays 20:00 local across
DST changes); each local start is then turned into an instant by RFC 5545's rule
(section 3.3.5), which is Python's ``fold=0``:

* a local time that happens twice (fall back) means its **first** instant, the one
  before the clocks go back (01:30 on 2026-11-01 in New York is 05:30 UTC, EDT);
* a local time that does not exist (spring forward) is read with the offset in force
  **before** the gap, so it lands as far after the gap's start as it was meant to
  (02:30 on 2026-03-08 in New York becomes 03:30 EDT, 07:30 UTC).

An occurrence's identity is the assignment id and its scheduled local start, to the
minute: ``<assignment_id>@2026-03-29T20:00``. It does not change when the zone's rules
or the clocks do, so assignment, reminder and insights agree on it without talking.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from homework_shared.events.values import OnceSchedule, RecurringSchedule

ScheduleT = OnceSchedule | RecurringSchedule
_ID_FORMAT = "%Y-%m-%dT%H:%M"
FORBIDDEN_RRULE_PARTS = ("DTSTART", "UNTIL", "COUNT", "SECONDLY", "MINUTELY")
MAX_OCCURRENCES = 10_000


class ScheduleError(ValueError):
    """A schedule that cannot be expanded: a bad RRULE, too dense, or windows that overlap."""


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of an assignment: open from ``opens_at`` until ``closes_at`` (UTC)."""

    assignment_id: str
    local_start: datetime
    opens_at: datetime
    closes_at: datetime

    @property
    def occurrence_id(self) -> str:
        return occurrence_id(self.assignment_id, self.local_start)


def occurrence_id(assignment_id: str, local_start: datetime) -> str:
    """The deterministic id of the occurrence of ``assignment_id`` that starts at ``local_start``."""
    return f"{assignment_id}@{local_start.strftime(_ID_FORMAT)}"


def parse_occurrence_id(value: str) -> tuple[str, datetime]:
    """Split an occurrence id into assignment id and local start; ValueError if malformed."""
    assignment_id, sep, local = value.rpartition("@")
    if not sep or not assignment_id:
        raise ValueError(f"not an occurrence id: {value!r}")
    return assignment_id, datetime.strptime(local, _ID_FORMAT)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def to_utc(local: datetime, zone_name: str) -> datetime:
    """The instant of a local wall time, by the policy in this module's docstring (RFC 5545)."""
    return local.replace(tzinfo=zone(zone_name), fold=0).astimezone(UTC)


def to_local(instant: datetime, zone_name: str) -> datetime:
    """The naive local wall time of an instant in a zone."""
    return instant.astimezone(zone(zone_name)).replace(tzinfo=None)


@lru_cache(maxsize=4096)
def _rule(rule: str, starts_at: datetime, until: datetime | None, count: int | None) -> rrule:
    upper = rule.upper()
    if any(part in upper for part in FORBIDDEN_RRULE_PARTS):
        raise ScheduleError(
            "rrule must not contain DTSTART, UNTIL or COUNT (use starts_at, until, count) "
            "nor a SECONDLY or MINUTELY frequency"
        )
    text = upper.removeprefix("RRULE:")
    if until is not None:
        text += f";UNTIL={until.strftime('%Y%m%dT%H%M%S')}"
    if count is not None:
        text += f";COUNT={count}"
    try:
        parsed = rrulestr(text, dtstart=starts_at)
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"rrule is not valid RFC 5545: {exc}") from exc
    if not isinstance(parsed, rrule):
        raise ScheduleError("rrule must be a single RRULE")
    return parsed


def _recurring_rule(s: RecurringSchedule) -> rrule:
    return _rule(s.rrule, s.starts_at, s.until, s.count)


def _make(assignment_id: str, s: ScheduleT, local_start: datetime) -> Occurrence:
    if isinstance(s, OnceSchedule):
        return Occurrence(assignment_id, local_start, to_utc(s.opens_at, s.timezone), to_utc(s.due_at, s.timezone))
    opens = to_utc(local_start, s.timezone)
    return Occurrence(assignment_id, local_start, opens, opens + timedelta(minutes=s.window_minutes))


def occurrences(
    assignment_id: str, s: ScheduleT, *, start: datetime | None = None, end: datetime | None = None
) -> Iterator[Occurrence]:
    """Occurrences whose opening instant is in ``[start, end)`` (UTC; open-ended when None), in order."""
    if isinstance(s, OnceSchedule):
        occ = _make(assignment_id, s, s.opens_at)
        if (start is None or occ.opens_at >= start) and (end is None or occ.opens_at < end):
            yield occ
        return
    rule = _recurring_rule(s)
    # Search a day wider in local time: offsets never exceed +-26 h, then filter on instants.
    local_from = to_local(start, s.timezone) - timedelta(days=1) if start else None
    local_to = to_local(end, s.timezone) + timedelta(days=1) if end else None
    source = rule.xafter(local_from, inc=True) if local_from else iter(rule)
    for local_start in source:
        if local_to is not None and local_start > local_to:
            return
        occ = _make(assignment_id, s, local_start)
        if (start is None or occ.opens_at >= start) and (end is None or occ.opens_at < end):
            yield occ


def occurrence_at(assignment_id: str, s: ScheduleT, local_start: datetime) -> Occurrence | None:
    """The occurrence starting at ``local_start``, or None when the schedule has none then."""
    if isinstance(s, OnceSchedule):
        return (
            _make(assignment_id, s, s.opens_at) if local_start == s.opens_at.replace(second=0, microsecond=0) else None
        )
    rule = _recurring_rule(s)
    found = rule.after(local_start - timedelta(seconds=1), inc=True)
    if found is not None and found.replace(second=0, microsecond=0) == local_start:
        return _make(assignment_id, s, found)
    return None


def last_close(s: ScheduleT) -> datetime | None:
    """When the schedule's last occurrence closes (UTC), or None if it has no occurrence."""
    if isinstance(s, OnceSchedule):
        return to_utc(s.due_at, s.timezone)
    rule = _recurring_rule(s)
    last = None
    for n, local_start in enumerate(rule):
        if n > MAX_OCCURRENCES:
            break
        last = local_start
    return _make("", s, last).closes_at if last else None


def validate_schedule(s: ScheduleT) -> None:
    """Raise ScheduleError unless the schedule expands, has an occurrence, and its windows do not overlap."""
    if isinstance(s, OnceSchedule):
        if s.opens_at.second or s.opens_at.microsecond:
            raise ScheduleError("opens_at must be a whole minute")
        return
    if s.starts_at.second or s.starts_at.microsecond:
        raise ScheduleError("starts_at must be a whole minute")
    rule = _recurring_rule(s)
    first = list(_take(rule, 200))
    if not first:
        raise ScheduleError("the schedule has no occurrence")
    if s.count is None and _exceeds(rule, MAX_OCCURRENCES):
        raise ScheduleError(f"the schedule has more than {MAX_OCCURRENCES} occurrences; end it sooner")
    window = timedelta(minutes=s.window_minutes)
    occs = [_make("", s, local) for local in first]
    for a, b in pairwise(occs):
        if a.opens_at + window > b.opens_at:
            raise ScheduleError(
                f"window_minutes ({s.window_minutes}) is longer than the gap between occurrences "
                f"{a.local_start:%Y-%m-%d %H:%M} and {b.local_start:%Y-%m-%d %H:%M}"
            )


def _take(rule: rrule, n: int) -> Iterator[datetime]:
    for i, value in enumerate(rule):
        if i >= n:
            return
        yield value


def _exceeds(rule: rrule, n: int) -> bool:
    return sum(1 for _ in _take(rule, n + 1)) > n
