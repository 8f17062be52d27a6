"""One event's unit of work: documents read once, changed in memory, written back as one update each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from homework_insights.domain import day_of
from homework_insights.store import Doc, Store, apply_update


@dataclass
class Context:
    """What applying an event needs: the store, the clock's now, the settings; collects alerts raised."""

    store: Store
    now: datetime
    reminder_hours: float = 2.0
    alerts: list[str] = field(default_factory=list)


@dataclass
class Tracked:
    """A document changed in memory and written back as one MongoDB update."""

    doc: Doc
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _op(self, op: str, path: str, value: Any) -> None:
        apply_update(self.doc, {op: {path: value}})
        self.ops.setdefault(op, {})[path] = value

    def inc(self, path: str, n: float = 1) -> None:
        apply_update(self.doc, {"$inc": {path: n}})
        bucket = self.ops.setdefault("$inc", {})
        bucket[path] = bucket.get(path, 0) + n

    def set(self, path: str, value: Any) -> None:
        self._op("$set", path, value)

    def min(self, path: str, value: float) -> None:
        bucket = self.ops.setdefault("$min", {})
        bucket[path] = value if path not in bucket else min(bucket[path], value)
        apply_update(self.doc, {"$min": {path: value}})

    def max(self, path: str, value: float) -> None:
        bucket = self.ops.setdefault("$max", {})
        bucket[path] = value if path not in bucket else max(bucket[path], value)
        apply_update(self.doc, {"$max": {path: value}})

    def push(self, path: str, value: Any, keep: int) -> None:
        apply_update(self.doc, {"$push": {path: {"$each": [value], "$slice": -keep}}})
        bucket = self.ops.setdefault("$push", {})
        earlier = bucket.get(path, {"$each": []})["$each"]
        bucket[path] = {"$each": [*earlier, value], "$slice": -keep}

    def on_insert(self, fields: dict[str, Any]) -> None:
        self.ops["$setOnInsert"] = fields
        for k, v in fields.items():
            self.doc.setdefault(k, v)


class Work:
    """One event's changes to one assignment, its days and its occurrences."""

    def __init__(self, ctx: Context, assignment: Doc) -> None:
        self.ctx = ctx
        self.a = Tracked(assignment)
        self.days: dict[str, Tracked] = {}
        self.occurrences: dict[str, Tracked] = {}

    @property
    def assignment_id(self) -> str:
        return str(self.a.doc["_id"])

    def day(self, occurrence_id: str) -> Tracked:
        date = day_of(occurrence_id)
        if date not in self.days:
            t = Tracked({})
            a = self.a.doc
            t.on_insert(
                {
                    "practice_id": a["practice_id"],
                    "client_id": a["client_id"],
                    "assignment_id": a["_id"],
                    "date": date,
                    "kind": a["kind"],
                }
            )
            self.days[date] = t
        return self.days[date]

    async def occurrence(self, occurrence_id: str) -> Tracked:
        if occurrence_id not in self.occurrences:
            found = await self.ctx.store.occurrence(occurrence_id)
            t = Tracked(found or {"_id": occurrence_id})
            if found is None:
                a = self.a.doc
                t.on_insert(
                    {
                        "assignment_id": a["_id"],
                        "practice_id": a["practice_id"],
                        "client_id": a["client_id"],
                        "date": day_of(occurrence_id),
                    }
                )
            self.occurrences[occurrence_id] = t
        return self.occurrences[occurrence_id]

    def count(self, occurrence_id: str, name: str, n: float = 1) -> None:
        """Add ``n`` to a figure of an occurrence's day, of the assignment, and of its first two weeks if in them."""
        date = day_of(occurrence_id)
        self.day(occurrence_id).inc(name, n)
        self.a.inc(f"totals.{name}", n)
        if name in ("due", "done", "partial_percent") and date < self.a.doc["early_until"]:
            self.a.inc(f"early.{name}", n)

    async def flush(self) -> None:
        store = self.ctx.store
        for oid, t in self.occurrences.items():
            await store.update_occurrence(oid, t.ops)
        for date, t in self.days.items():
            await store.update_day(f"{self.assignment_id}|{date}", t.ops)
        await store.update_assignment(self.assignment_id, self.a.ops)
