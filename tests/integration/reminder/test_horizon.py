"""The rolling horizon: an assignment's occurrences and reminders are stored only up to now + horizon and
extended as time passes, so a long (or open-ended) daily assignment costs a bounded number of documents."""

from __future__ import annotations

from homework_reminder.store import FAR_FUTURE
from tests.conftest import wait_for
from tests.integration.reminder.conftest import T0, Deployment, at, counts, daily_at_20_berlin


async def test_a_long_daily_assignment_is_stored_a_horizon_ahead_and_extended_as_time_passes(
    deployment: Deployment,
) -> None:
    d = deployment
    store = d.store(await d.start(horizon_days=3, extend_every_s=3600))
    long, short = d.created(schedule=daily_at_20_berlin(count=1000)), d.created(schedule=daily_at_20_berlin(count=2))
    await d.publish(long, short)

    # Now is May 1, 10:00 Berlin: the evenings of May 1, 2 and 3 open within three days.
    await wait_for(counts(store.plans, {}, 2), message="both applied")
    await wait_for(counts(store.occurrences, {"assignment_id": long.assignment_id}, 3), message="3 days ahead")
    assert await store.reminders.count_documents({"assignment_id": long.assignment_id}) == 3
    plan = await store.plans.find_one({"_id": short.assignment_id})
    assert plan is not None
    assert plan["extend_after"] == FAR_FUTURE, "a schedule with nothing left is never extended again"

    d.clock.set(T0 + at(48))  # May 3, 10:00: extended to May 6, 10:00
    await wait_for(counts(store.occurrences, {"assignment_id": long.assignment_id}, 5), message="extended")
    d.clock.set(T0 + at(24 * 10))  # ten days on (as after downtime): the gap is filled, and no further
    await wait_for(counts(store.occurrences, {"assignment_id": long.assignment_id}, 13), message="extended again")
    await wait_for(
        counts(store.occurrences, {"assignment_id": long.assignment_id, "state": "missed"}, 10), message="gap missed"
    )
    assert await store.reminders.count_documents({"assignment_id": long.assignment_id, "state": "pending"}) == 3
    plan = await store.plans.find_one({"_id": long.assignment_id})
    assert plan is not None
    assert plan["expanded_until"] == T0 + at(24 * 13)
    assert await store.occurrences.count_documents({"assignment_id": short.assignment_id}) == 2
