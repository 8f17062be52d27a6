"""Flags of an assignment after an event, and one ``AdherenceAlertRaised`` per episode through the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homework_insights.domain import AssignmentFacts, ThresholdRule, alert_id, evaluate_flags
from homework_insights.store import Doc
from homework_insights.unit_of_work import Work
from homework_shared.events import AdherenceAlertRaised


def facts_of(doc: Doc, extra_due: float = 0, extra_early_due: float = 0) -> AssignmentFacts:
    """The figures an assignment's flags rest on (``extra_*``: due occurrences a read adds)."""
    totals, early = doc.get("totals", {}), doc.get("early", {})
    return AssignmentFacts(
        assignment_id=doc["_id"],
        title=doc["title"],
        due=totals.get("due", 0) + extra_due,
        done=totals.get("done", 0),
        partial_percent=totals.get("partial_percent", 0),
        early_due=early.get("due", 0) + extra_early_due,
        early_done=early.get("done", 0),
        early_partial_percent=early.get("partial_percent", 0),
        too_hard_since_revision=int(doc.get("too_hard_since_revision", 0)),
        latest={k: v["value"] for k, v in doc.get("latest", {}).items()},
    )


def rules_of(doc: Doc | None) -> list[ThresholdRule]:
    """The threshold rules a thresholds document holds."""
    return [ThresholdRule(r["metric"], r["direction"], float(r["value"])) for r in (doc or {}).get("rules", [])]


async def raise_alerts(work: Work, at: datetime, *, with_thresholds: bool) -> None:
    """Stage ``AdherenceAlertRaised`` for each flag whose condition just became true: once per episode.

    Only a completion with a rating can move one, so the therapist's thresholds are read (one
    query) for those alone; other events leave the threshold flags as they were. A reminder
    changes no figure a flag rests on: no evaluation at all.
    """
    a = work.a.doc
    rules = rules_of(await work.ctx.store.thresholds(a["practice_id"], a["client_id"])) if with_thresholds else []
    flags = evaluate_flags(facts_of(a), rules)
    states: dict[str, Any] = a.get("flags", {})
    present = set() if with_thresholds else {k for k in states if k.startswith("rating_threshold_crossed")}
    for flag in flags:
        present.add(flag.key)
        state = states.get(flag.key, {"active": False, "episode": 0})
        if state["active"]:
            continue
        episode = int(state["episode"]) + 1
        work.a.set(f"flags.{flag.key}", {"code": flag.code, "active": True, "episode": episode})
        event_id = alert_id(flag, episode)
        alert = AdherenceAlertRaised(
            client_id=a["client_id"],
            practice_id=a["practice_id"],
            alert_id=event_id,
            code=flag.code,
            assignment_id=a["_id"],
            reason=flag.reason[:500],
            figures=flag.figures,
            raised_at=at,
        )
        await work.ctx.store.stage(alert, event_id)
        work.ctx.alerts.append(event_id)
    for key, state in states.items():
        if state["active"] and key not in present:
            work.a.set(f"flags.{key}", {**state, "active": False})
