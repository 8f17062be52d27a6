"""The read audit writes a batch again after a try that was written but not answered, without losing or doubling."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from homework_shared.auth import Principal, Role
from homework_shared.read_audit import READ_AUDIT, ReadAudit
from tests.conftest import unique
from tests.infra import Infra


async def test_a_batch_written_again_after_an_unanswered_write_is_stored_once_and_the_rest_is_written(
    infra: Infra,
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    db = client[unique("audit")]
    try:
        audit = ReadAudit(db, "assignment", CollectorRegistry())
        await audit.ensure_indexes()
        therapist = Principal(sub="t1", role=Role.THERAPIST, practice_id="p1")
        for n in range(3):
            audit.record(therapist, "GET /v1/clients/{client_id}/assignments", {"client_id": f"c{n}"}, f"c{n}")
        queued = list(audit._pending)
        await db[READ_AUDIT].insert_many([dict(d) for d in queued[:2]])  # an earlier try landed, unanswered
        assert await audit.flush() == 3  # the whole batch again: no error, nothing put back
        assert audit._pending == []
        stored = sorted([d["client_id"] async for d in db[READ_AUDIT].find({}, {"client_id": 1})])
        assert stored == ["c0", "c1", "c2"]
    finally:
        await client.drop_database(db.name)
        await client.close()
