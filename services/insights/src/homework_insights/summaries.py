"""The pre-session summary: what a therapist reads before the next session, over a period of local days.

A period covers the occurrences whose local start date falls from the local date of
``period_start`` to the local date of ``period_end`` (the client's time zone: that of their
latest assignment), as known when the summary is generated. By default a summary starts where
the previous one ended (that boundary day appears in both, so nothing falls between two
summaries), or at the client's first assignment. Its cost is the period's day documents and
the assignments active in it, not the history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from homework_insights.alerts import rules_of
from homework_insights.domain import local_day
from homework_insights.figures import (
    AssignmentReading,
    exposure_view,
    figures_from,
    merge_counts,
    series_view,
)
from homework_insights.store import Doc, Store
from homework_shared.documents import pick
from homework_shared.events import InsightSummaryGenerated

HEADLINE_CHANGES = ("due", "done", "partial", "skipped", "missed", "adherence_pct", "quality_mean")


class PeriodError(ValueError):
    """A period that ends before it starts."""


async def build_summary(
    store: Store,
    client: Doc,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    generated_by: str = "",
) -> Doc:
    """Compute (not store) a summary for ``client`` over ``[start, end]`` (defaults: see the module docstring)."""
    practice_id, client_id = client["practice_id"], client["client_id"]
    previous = next(iter(await store.summaries_of(practice_id, client_id, limit=1)), None)
    end = end or now
    start = start or (previous["period_end"] if previous else client["first_assignment_at"])
    if start > end:
        raise PeriodError("from must not be after to")
    zone = client["timezone"]
    sections = SummarySections(local_day(start, zone).isoformat(), local_day(end, zone).isoformat(), zone)
    docs, days = await _period_assignments(store, practice_id, client_id, start, sections)
    rules = rules_of(await store.thresholds(practice_id, client_id))
    for doc in sorted(docs.values(), key=lambda d: d["created_at"]):
        if doc["created_at"] <= end:
            sections.add(AssignmentReading(doc, now), [d for d in days if d["assignment_id"] == doc["_id"]], rules)
    headline = figures_from(sections.total)
    return {
        "_id": f"sum-{uuid.uuid4().hex[:16]}",
        "client_id": client_id,
        "practice_id": practice_id,
        "period_start": start,
        "period_end": end,
        "first_day": sections.first_day,
        "last_day": sections.last_day,
        "timezone": zone,
        "generated_at": now,
        "generated_by": generated_by,
        "headline": headline,
        "assignments": sections.rows,
        "series": sections.series,
        "exposure": sections.exposure,
        "barriers": [{"barrier": b, "count": n} for b, n in headline["barriers"].items()],
        "flags": sections.flags,
        "changes": changes_since(previous, headline, sections.flags),
        "thresholds": [{"metric": r.metric, "direction": r.direction, "value": r.value} for r in rules],
    }


async def _period_assignments(
    store: Store, practice_id: str, client_id: str, start: datetime, sections: SummarySections
) -> tuple[dict[str, Doc], list[Doc]]:
    """The assignments active since ``start`` or with a day in the period, and the period's day documents."""
    docs = {d["_id"]: d for d in await store.assignments_of(practice_id, client_id, active_since=start)}
    days = await store.days_of(practice_id, client_id, sections.first_day, sections.last_day)
    for d in days:
        if d["assignment_id"] not in docs and (found := await store.assignment(d["assignment_id"])) is not None:
            docs[found["_id"]] = found
    return docs, days


@dataclass
class SummarySections:
    """The parts of a summary over the local days ``first_day``..``last_day``, gathered one assignment at a time."""

    first_day: str
    last_day: str
    zone: str
    total: dict[str, Any] = field(default_factory=dict)
    rows: list[Doc] = field(default_factory=list)
    series: list[Doc] = field(default_factory=list)
    exposure: list[Doc] = field(default_factory=list)
    flags: list[Doc] = field(default_factory=list)

    def add(self, reading: AssignmentReading, mine: list[Doc], rules: list[Any]) -> None:
        """One assignment's figures, series, exposure attempts and flags in the period (``mine``: its days)."""
        doc = reading.doc
        counts = reading.days_counts(mine, self.first_day, self.last_day)
        merge_counts(self.total, counts)
        self.rows.append({**reading.header(), **figures_from(counts), "streak": reading.streak()})
        for view in series_view(mine):
            self.series.append({"assignment_id": doc["_id"], "title": doc["title"], **view})
        for step in exposure_view(doc):
            attempts = [a for a in step["attempts"] if self._in_period(a["at"])]
            if attempts:
                self.exposure.append({"assignment_id": doc["_id"], "title": doc["title"], **step, "attempts": attempts})
        self.flags.extend(f.to_doc() for f in reading.flags(rules))

    def _in_period(self, instant: datetime) -> bool:
        return self.first_day <= local_day(instant, self.zone).isoformat() <= self.last_day


def changes_since(previous: Doc | None, headline: dict[str, Any], flags: list[Doc]) -> dict[str, Any] | None:
    """What moved since the previous summary: headline figures, flags that appeared or went away."""
    if previous is None:
        return None
    before = previous["headline"]
    figures = {
        name: {
            "before": before.get(name),
            "now": headline.get(name),
            "change": _delta(before.get(name), headline[name]),
        }
        for name in HEADLINE_CHANGES
    }
    keys = {(f["key"], f["assignment_id"]) for f in flags}
    old = {(f["key"], f["assignment_id"]) for f in previous["flags"]}
    return {
        "previous_summary_id": previous["_id"],
        "previous_period_end": previous["period_end"],
        "figures": figures,
        "new_flags": [f for f in flags if (f["key"], f["assignment_id"]) not in old],
        "cleared_flags": [f for f in previous["flags"] if (f["key"], f["assignment_id"]) not in keys],
    }


def _delta(before: Any, now: Any) -> float | None:
    if isinstance(before, int | float) and isinstance(now, int | float):
        return round(now - before, 2)
    return None


def summary_event(summary: Doc) -> InsightSummaryGenerated:
    """The ``insight summary generated`` event of a stored summary."""
    h = summary["headline"]
    return InsightSummaryGenerated(
        **pick(summary, "client_id", "practice_id", "period_start", "period_end", "generated_at"),
        **pick(h, "done", "partial", "skipped", "missed", "adherence_pct"),
        summary_id=summary["_id"],
        occurrences_due=h["due"],
        flags=sorted({f["code"] for f in summary["flags"]}),
    )
