"""The consumer's apply function (assignment and reminder streams): thin."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from homework_insights.config import InsightsSettings
from homework_insights.metrics import InsightsMetrics
from homework_insights.store import MongoStore
from homework_insights.unit_of_work import Context
from homework_insights.usecases import apply_event
from homework_shared.after_commit import now_or_after_commit
from homework_shared.consumer import Apply
from homework_shared.events import Envelope
from homework_shared.service import Runtime


def make_apply(rt: Runtime, settings: InsightsSettings, metrics: InsightsMetrics) -> Apply:
    """Fold each event into the figures inside the consumer's transaction; alerts go through the outbox."""

    async def apply(env: Envelope[Any], session: AsyncClientSession) -> None:
        ctx = Context(MongoStore(rt.db, session, rt.outbox), rt.clock.now(), settings.reminder_effect_hours)
        await apply_event(ctx, env)
        if ctx.alerts:
            # Counted once committed (a transaction shared by several events may be dropped and
            # each event applied again alone); the outbox wakes the relay itself.
            raised = len(ctx.alerts)
            now_or_after_commit(lambda: metrics.alerts.inc(raised))

    return apply
