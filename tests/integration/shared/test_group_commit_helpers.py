"""Helpers for group commit: records prepared in each request's trace context, remembered responses built apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_shared.events import Topics
from homework_shared.events.examples import EXAMPLES
from homework_shared.events.models import AssignmentPaused, OccurrenceMissed
from homework_shared.idempotency import COLLECTION, StoredResponse, remembered, replay_or_none, request_fingerprint
from homework_shared.mongo import run_in_transaction
from homework_shared.observability import current_traceparent, trace_context
from homework_shared.outbox import Outbox
from tests.conftest import unique
from tests.infra import Infra

FIRST = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECOND = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_records_prepared_in_two_trace_contexts_are_staged_in_one_transaction(infra: Infra) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        outbox = Outbox(
            client[unique("db")], Topics(prefix=unique("p")), source="/homework/test", traceparent=current_traceparent
        )
        await outbox.ensure_indexes()
        with trace_context(FIRST):
            first = outbox.prepare(EXAMPLES[OccurrenceMissed], event_id="missed:a")
        with trace_context(SECOND):
            second = outbox.prepare(EXAMPLES[AssignmentPaused])

        before = datetime.now(UTC)
        staged = await run_in_transaction(client, lambda s: outbox.stage_prepared(s, [first, second]))
        again = await run_in_transaction(client, lambda s: outbox.stage_prepared(s, [first]))

        assert staged == ["missed:a", second["_id"]]
        assert again == []
        third = outbox.prepare(EXAMPLES[AssignmentPaused])
        unchecked = await run_in_transaction(client, lambda s: outbox.stage_prepared(s, [third], check_existing=False))
        assert unchecked == [third["_id"]]
        stored = (await outbox.collection.find().sort("seq", 1).to_list())[:2]
        traces = [dict(d["headers"])["traceparent"].split("-")[1] for d in stored]
        assert all(d["created_at"] >= before for d in stored), "created when staged, not when prepared"
        assert traces == [FIRST.split("-")[1], SECOND.split("-")[1]]
    finally:
        await client.close()


async def test_a_remembered_document_inserted_by_the_caller_is_replayed(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    db = mongo[unique("db")]
    fingerprint = request_fingerprint("POST", "/v1/x", b"{}")
    docs = [
        remembered("c1", "k1", fingerprint, 201, {"id": "a"}),
        remembered("c1", "k2", fingerprint, 201, {"id": "b"}),
    ]

    async def write(session: AsyncClientSession) -> None:
        await db[COLLECTION].insert_many(docs, session=session)

    await run_in_transaction(mongo, write)
    assert await replay_or_none(db, "c1", "k2", fingerprint) == StoredResponse(201, {"id": "b"})
