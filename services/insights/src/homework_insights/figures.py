"""Reading a client's figures: the totals the fold keeps, plus the occurrences that closed since the tally last moved.

A read never writes. Its cost is the client's assignments, at most 29 day documents per
assignment, and the occurrences that closed since each assignment's last event; never the
history of events.

Figures of a set of occurrences: ``due``, ``done``, ``partial``, ``skipped`` and ``missed`` (due
and unresolved: ``due - done - partial - skipped``), ``late`` (completed after the window
closed), ``adherence_pct`` (see ``domain.adherence_pct``), the quality mean, barriers, and the
reminder effect: completions within N hours after a reminder of their occurrence
(``completions_after_reminder``) against the others (``completions_without_reminder``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from homework_insights.alerts import facts_of, rules_of
from homework_insights.domain import (
    SERIES,
    DayPoint,
    Flag,
    Streak,
    adherence_pct,
    day_of,
    days_back,
    evaluate_flags,
    local_day,
    trend_label,
)
from homework_insights.store import Doc, Store
from homework_insights.usecases import pending_due, plan_of

WINDOWS = (7, 28)
PAGE_DEFAULT, PAGE_MAX = 50, 200
"""How many assignments one figures response lists by default, and at most (``limit``)."""


class UnknownCursor(ValueError):
    """A cursor that names no assignment of this client."""


def page_of(docs: list[Doc], limit: int | None, after: str | None) -> tuple[list[Doc], str | None]:
    """The assignments after the one ``after`` names (in ``created_at``, id order), at most ``limit``, and the cursor
    of the next page (None on the last)."""
    ordered = sorted(docs, key=lambda d: (d["created_at"], d["_id"]))
    start = 0
    if after is not None:
        ids = [d["_id"] for d in ordered]
        if after not in ids:
            raise UnknownCursor(after)
        start = ids.index(after) + 1
    page = ordered[start:] if limit is None else ordered[start : start + limit]
    more = limit is not None and start + limit < len(ordered)
    return page, (page[-1]["_id"] if more and page else None)


def merge_counts(into: dict[str, Any], counts: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``counts`` into ``into`` (nested): sums, except ``min``/``max`` keys which keep the extreme."""
    for key, value in counts.items():
        if isinstance(value, Mapping):
            merge_counts(into.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if key == "min":
                into[key] = min(into.get(key, value), value)
            elif key == "max":
                into[key] = max(into.get(key, value), value)
            else:
                into[key] = into.get(key, 0) + value
    return into


COUNTED = (
    "due",
    "done",
    "partial",
    "partial_percent",
    "skipped",
    "late",
    "missed_reported",
    "reminded",
    "after_reminder",
    "without_reminder",
)


def counts_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The countable part of a day document or an assignment's totals."""
    return {k: doc[k] for k in (*COUNTED, "barriers", "series") if k in doc}


def figures_from(c: Mapping[str, Any]) -> dict[str, Any]:
    """Headline figures from summed counts."""
    due, done, partial, skipped = (int(c.get(k, 0)) for k in ("due", "done", "partial", "skipped"))
    quality = c.get("series", {}).get("quality", {})
    barriers = sorted(((b, int(n)) for b, n in c.get("barriers", {}).items() if n), key=lambda bn: (-bn[1], bn[0]))
    return {
        "due": due,
        "done": done,
        "partial": partial,
        "skipped": skipped,
        "missed": max(0, due - done - partial - skipped),
        "late": int(c.get("late", 0)),
        "adherence_pct": adherence_pct(due, done, c.get("partial_percent", 0)),
        "quality_mean": round(quality["sum"] / quality["n"], 2) if quality.get("n") else None,
        "quality_ratings": int(quality.get("n", 0)),
        "barriers": dict(barriers),
        "reminders": {
            "occurrences_reminded": int(c.get("reminded", 0)),
            "completions_after_reminder": int(c.get("after_reminder", 0)),
            "completions_without_reminder": int(c.get("without_reminder", 0)),
            "missed_reported": int(c.get("missed_reported", 0)),
        },
    }


def series_points(days: Iterable[Doc]) -> dict[str, list[DayPoint]]:
    """Per series, one point per day that has values, in date order."""
    out: dict[str, list[DayPoint]] = {}
    for d in sorted(days, key=lambda d: d["date"]):
        for name, s in d.get("series", {}).items():
            if s.get("n"):
                out.setdefault(name, []).append(DayPoint(d["date"], int(s["n"]), s["sum"], s["min"], s["max"]))
    return out


def series_view(days: Iterable[Doc]) -> list[dict[str, Any]]:
    """Every series of some day documents with its points and trend label."""
    views = []
    for name, points in series_points(days).items():
        info = SERIES.get(name)
        views.append(
            {
                "metric": name,
                "label": info.label if info else name,
                "scale": info.scale if info else None,
                "values": sum(p.n for p in points),
                "mean": round(sum(p.total for p in points) / sum(p.n for p in points), 2),
                "trend": trend_label(points, name),
                "points": [
                    {"date": p.day, "n": p.n, "mean": round(p.mean, 2), "min": p.low, "max": p.high} for p in points
                ],
            }
        )
    return sorted(views, key=lambda v: list(SERIES).index(v["metric"]) if v["metric"] in SERIES else 99)


def exposure_view(doc: Doc) -> list[dict[str, Any]]:
    """Per exposure step: the last attempts with SUDS before/peak/after, and habituation within and across them."""
    out = []
    for step, attempts in sorted(doc.get("attempts", {}).items(), key=lambda kv: int(kv[0])):
        if not attempts:
            continue
        first, last = attempts[0], attempts[-1]
        out.append(
            {
                "step": int(step),
                "attempts": attempts,
                "within_attempt_drop_last": last["peak"] - last["after"],
                "peak_change_across_attempts": last["peak"] - first["peak"],
            }
        )
    return out


class AssignmentReading:
    """One assignment as read at ``now``: its stored totals plus the due occurrences the tally has not reached."""

    def __init__(self, doc: Doc, now: datetime) -> None:
        self.doc = doc
        self.plan = plan_of(doc)
        self.pending = pending_due(doc, self.plan, now)
        self.pending_by_day = Counter(day_of(o) for o in self.pending)
        self.today = local_day(now, doc["timezone"])

    def totals(self) -> dict[str, Any]:
        counts = counts_of(self.doc.get("totals", {}))
        counts["due"] = counts.get("due", 0) + len(self.pending)
        return counts

    def days_counts(self, days: Iterable[Doc], first: str, last: str) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for d in days:
            if first <= d["date"] <= last:
                merge_counts(total, counts_of(d))
        total["due"] = total.get("due", 0) + sum(n for day, n in self.pending_by_day.items() if first <= day <= last)
        return total

    def streak(self) -> dict[str, int]:
        s = Streak.from_doc(self.doc.get("streak"))
        current = s.current
        if self.pending and (s.last_opens is None or self._latest_pending_opens() > s.last_opens):
            current = 0
        return {"current": current, "longest": s.longest}

    def _latest_pending_opens(self) -> datetime:
        occ = self.plan.occurrence(self.pending[-1])
        return occ.opens_at if occ else self.doc["through"]

    def flags(self, rules: list[Any]) -> list[Flag]:
        early = sum(n for day, n in self.pending_by_day.items() if day < self.doc["early_until"])
        return evaluate_flags(facts_of(self.doc, len(self.pending), early), rules)

    def header(self) -> dict[str, Any]:
        d = self.doc
        return {
            "assignment_id": d["_id"],
            "title": d["title"],
            "kind": d["kind"],
            "state": d["state"],
            "created_at": d["created_at"],
            "timezone": d["timezone"],
        }


async def client_figures(
    store: Store,
    practice_id: str,
    client_id: str,
    now: datetime,
    *,
    with_flags: bool,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """A client's figures at ``now``: overall, per kind, per assignment, 7/28-day adherence, series, streaks.

    The overall, per-kind and window figures (and ``flags``) cover every assignment of the client;
    ``assignments`` lists one page of them (``limit`` after the assignment ``after``; all when
    ``limit`` is None), and ``next_cursor`` names the last one when more follow.
    """
    docs = await store.assignments_of(practice_id, client_id)
    page, next_cursor = page_of(docs, limit, after)
    readings = [AssignmentReading(d, now) for d in sorted(docs, key=lambda d: (d["created_at"], d["_id"]))]
    today = max((r.today for r in readings), default=now.date())
    days = await _recent_days_by_assignment(store, practice_id, client_id, today)
    rules = rules_of(await store.thresholds(practice_id, client_id)) if with_flags else []
    figures = ClientFigures(listed={d["_id"] for d in page}, with_flags=with_flags)
    for r in readings:
        figures.add(r, days.get(r.doc["_id"], []), rules)
    return figures.result(client_id, now, next_cursor)


async def _recent_days_by_assignment(
    store: Store, practice_id: str, client_id: str, today: date
) -> dict[str, list[Doc]]:
    """The client's day documents of the longest window up to ``today``, per assignment."""
    first = (today - timedelta(days=max(WINDOWS))).isoformat()
    by_assignment: dict[str, list[Doc]] = {}
    for d in await store.days_of(practice_id, client_id, first, today.isoformat()):
        by_assignment.setdefault(d["assignment_id"], []).append(d)
    return by_assignment


@dataclass
class ClientFigures:
    """A client's figures, gathered one assignment at a time: the totals over all, the views of one page."""

    listed: set[str]
    with_flags: bool
    overall: dict[str, Any] = field(default_factory=dict)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    windows: dict[int, dict[str, Any]] = field(default_factory=lambda: {n: {} for n in WINDOWS})
    assignments: list[dict[str, Any]] = field(default_factory=list)
    flags: list[Doc] = field(default_factory=list)

    def add(self, r: AssignmentReading, mine: list[Doc], rules: list[Any]) -> None:
        """Count one assignment in (``mine``: its recent day documents); list it if it is on the page."""
        totals = r.totals()
        merge_counts(self.overall, totals)
        merge_counts(self.by_kind.setdefault(r.doc["kind"], {}), totals)
        recent = {}
        for n in WINDOWS:
            counts = r.days_counts(mine, days_back(r.today, n), r.today.isoformat())
            merge_counts(self.windows[n], counts)
            recent[f"last_{n}_days"] = _window(counts)
        mine_flags = [f.to_doc() for f in r.flags(rules)] if self.with_flags else []
        self.flags.extend(mine_flags)
        if r.doc["_id"] in self.listed:
            self.assignments.append(self._view(r, totals, recent, mine, mine_flags))

    def _view(
        self, r: AssignmentReading, totals: Doc, recent: Doc, mine: list[Doc], mine_flags: list[Doc]
    ) -> dict[str, Any]:
        view: dict[str, Any] = {
            **r.header(),
            **figures_from(totals),
            **recent,
            "streak": r.streak(),
            "series": series_view(d for d in mine if d["date"] >= days_back(r.today, 28)),
            "exposure_steps": exposure_view(r.doc),
        }
        if self.with_flags:
            view["flags"] = mine_flags
        return view

    def result(self, client_id: str, now: datetime, next_cursor: str | None) -> dict[str, Any]:
        """The response body: overall and per-kind figures, the page of assignments, and the flags when asked."""
        result: dict[str, Any] = {
            "client_id": client_id,
            "as_of": now,
            "overall": {**figures_from(self.overall), **{f"last_{n}_days": _window(self.windows[n]) for n in WINDOWS}},
            "by_kind": {kind: figures_from(c) for kind, c in sorted(self.by_kind.items())},
            "assignments": self.assignments,
            "next_cursor": next_cursor,
        }
        if self.with_flags:
            result["flags"] = self.flags
        return result


def _window(counts: Mapping[str, Any]) -> dict[str, Any]:
    f = figures_from(counts)
    return {k: f[k] for k in ("due", "done", "partial", "skipped", "missed", "adherence_pct")}
