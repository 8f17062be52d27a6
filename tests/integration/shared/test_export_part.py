"""One service's part of a client's export, on the real MongoDB server: paged, keyed by practice and client, capped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from homework_shared.export import (
    OPERATIONAL,
    PAGE_SIZE,
    ClientData,
    ExportTooLarge,
    by_assignment,
    by_client,
    client_key,
    export_part,
)
from tests.conftest import unique
from tests.infra import Infra

DATA = ClientData(
    exported={"assignments": by_client, "notes": by_client, "revisions": by_assignment},
    client_free=OPERATIONAL,
    assignments="assignments",
)
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Any]:
    """A fresh database, read with timezone-aware dates as the services' client reads it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        yield client[unique("export")]
    finally:
        await client.close()


async def _seed(db: Any) -> None:
    """Practice p1's client c1 (the one exported), c2 of p1, and c1 of p2 (the same id in another practice)."""
    for practice, client, prefix in (("p1", "c1", "a"), ("p1", "c2", "b"), ("p2", "c1", "x")):
        await db["assignments"].insert_one({"_id": f"{prefix}-1", "practice_id": practice, "client_id": client})
        await db["revisions"].insert_one({"_id": f"{prefix}-1:v1", "assignment_id": f"{prefix}-1", "note": "text"})
    many = [
        {"_id": f"n-{i:05d}", "practice_id": "p1", "client_id": "c1", "at": NOW, "text": f"note {i}"}
        for i in range(PAGE_SIZE * 2 + 7)
    ]
    await db["notes"].insert_many(many)
    await db["notes"].insert_many(
        [
            {"_id": "n-other-client", "practice_id": "p1", "client_id": "c2"},
            {"_id": "n-other-practice", "practice_id": "p2", "client_id": "c1"},
        ]
    )


async def test_a_part_pages_through_every_document_of_the_client_and_nothing_of_anyone_else(db: Any) -> None:
    await _seed(db)
    key = await client_key(db, DATA, "p1", "c1")
    part = await export_part(db, DATA, key, NOW, max_documents=10_000)

    assert key.assignment_ids == ("a-1",)
    assert [d["_id"] for d in part.collections["assignments"]] == ["a-1"]
    assert [d["_id"] for d in part.collections["revisions"]] == ["a-1:v1"]
    notes = part.collections["notes"]
    assert [d["_id"] for d in notes] == [f"n-{i:05d}" for i in range(PAGE_SIZE * 2 + 7)]  # across three pages
    assert notes[0]["at"] == "2026-12-02T12:00:00Z"  # BSON dates as ISO 8601 in UTC
    assert part.schema_version == 1
    assert part.generated_at == NOW


async def test_a_part_past_the_cap_is_refused_with_413_instead_of_read_whole(db: Any) -> None:
    await _seed(db)
    key = await client_key(db, DATA, "p1", "c1")
    total = 1 + 1 + PAGE_SIZE * 2 + 7
    with pytest.raises(ExportTooLarge) as refused:
        await export_part(db, DATA, key, NOW, max_documents=total - 1)
    assert refused.value.status == 413
    assert refused.value.code == "export_too_large"
    assert sum(map(len, (await export_part(db, DATA, key, NOW, max_documents=total)).collections.values())) == total


def test_a_collection_cannot_be_declared_both_exported_and_client_free() -> None:
    with pytest.raises(ValueError, match="both"):
        ClientData(exported={"notes": by_client, "outbox": by_client}, client_free=OPERATIONAL, assignments="notes")
