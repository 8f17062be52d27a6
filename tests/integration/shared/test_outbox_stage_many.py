"""Outbox.stage_many: a batch staged in one insert, in order; repeated deterministic ids are skipped."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from homework_shared.events import Topics
from homework_shared.events.examples import EXAMPLES
from homework_shared.events.models import AssignmentPaused, OccurrenceMissed
from homework_shared.mongo import run_in_transaction
from homework_shared.outbox import Outbox
from tests.conftest import unique
from tests.infra import Infra


async def test_stage_many_stages_a_batch_in_order_and_skips_ids_already_staged(infra: Infra) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        outbox = Outbox(client[unique("db")], Topics(prefix=unique("p")), source="/homework/test")
        await outbox.ensure_indexes()
        missed, paused = EXAMPLES[OccurrenceMissed], EXAMPLES[AssignmentPaused]
        batch = [(missed, "missed:a"), (paused, None), (missed, "missed:b"), (missed, "missed:a")]

        first = await run_in_transaction(client, lambda s: outbox.stage_many(s, batch))
        again = await run_in_transaction(client, lambda s: outbox.stage_many(s, [(missed, "missed:b"), (missed, "c")]))

        assert len(first) == 3
        assert (first[0], first[2]) == ("missed:a", "missed:b")
        assert again == ["c"]
        stored = await outbox.collection.find().sort("seq", 1).to_list()
        assert [d["_id"] for d in stored] == [*first, "c"]
        assert [d["type"] for d in stored[:2]] == [missed.event_type, paused.event_type]
        assert await run_in_transaction(client, lambda s: outbox.stage_many(s, [])) == []
    finally:
        await client.close()
