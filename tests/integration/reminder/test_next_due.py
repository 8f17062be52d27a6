"""The firing loop's look-ahead: the soonest pending reminder due before a bound, read through the due index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from homework_reminder.domain import ReminderState
from homework_reminder.store import Store
from tests.conftest import unique
from tests.infra import Infra


async def test_next_due_is_the_soonest_pending_reminder_before_the_bound_and_none_beyond(infra: Infra) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    store = Store(client[unique("next-due")])
    try:
        await store.ensure_indexes()
        now = datetime.now(UTC).replace(microsecond=0)
        await store.reminders.insert_many(
            [
                {"_id": "fired", "state": ReminderState.FIRED, "due_at": now + timedelta(seconds=5)},
                {"_id": "soon", "state": ReminderState.PENDING, "due_at": now + timedelta(minutes=1)},
                {"_id": "later", "state": ReminderState.PENDING, "due_at": now + timedelta(hours=1)},
            ]
        )
        assert await store.next_due(before=now + timedelta(minutes=10)) == now + timedelta(minutes=1)
        assert await store.next_due(before=now + timedelta(days=1)) == now + timedelta(minutes=1)
        assert await store.next_due(before=now + timedelta(seconds=30)) is None  # the fired one does not count
        assert await store.next_due(before=now + timedelta(minutes=1)) is None  # strictly before the bound
    finally:
        await client.drop_database(store.db.name)
        await client.close()
