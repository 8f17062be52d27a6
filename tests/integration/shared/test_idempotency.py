"""Idempotency-Key against the real MongoDB server: remember, replay, refuse a reused key, survive a race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_shared.auth.deps import PrincipalDep
from homework_shared.auth.jwt import Role
from homework_shared.auth.mint import mint_token
from homework_shared.http import create_app
from homework_shared.idempotency import (
    COLLECTION,
    IdempotencyKeyDep,
    IdempotencyKeyReused,
    StoredResponse,
    ensure_idempotency_indexes,
    remember,
    replay_or_none,
    request_fingerprint,
    respond_idempotently,
)
from homework_shared.mongo import run_in_transaction
from homework_shared.settings import ServiceSettings
from tests.conftest import unique, wait_for
from tests.infra import Infra

Client = AsyncMongoClient[dict[str, Any]]
FINGERPRINT = request_fingerprint("POST", "/v1/assignments", b'{"title":"Breathing"}')


async def test_a_remembered_response_is_replayed(mongo: Client) -> None:
    db = mongo[unique("db")]

    async def write(session: AsyncClientSession) -> None:
        await remember(db, session, "t1", "key-1", FINGERPRINT, 201, {"id": "a1", "tags": ["x"], "$odd.key": 1})

    await run_in_transaction(mongo, write)
    stored = await replay_or_none(db, "t1", "key-1", FINGERPRINT)
    assert stored == StoredResponse(status=201, body={"id": "a1", "tags": ["x"], "$odd.key": 1})
    assert stored.to_response().headers["Idempotent-Replayed"] == "true"


async def test_keys_are_per_caller_and_unknown_keys_replay_nothing(mongo: Client) -> None:
    db = mongo[unique("db")]

    async def write(session: AsyncClientSession) -> None:
        await remember(db, session, "t1", "key-1", FINGERPRINT, 201, {"id": "a1"})

    await run_in_transaction(mongo, write)
    assert await replay_or_none(db, "t2", "key-1", FINGERPRINT) is None
    assert await replay_or_none(db, "t1", "key-2", FINGERPRINT) is None


async def test_the_same_key_for_a_different_request_is_refused(mongo: Client) -> None:
    db = mongo[unique("db")]

    async def write(session: AsyncClientSession) -> None:
        await remember(db, session, "t1", "key-1", FINGERPRINT, 201, {"id": "a1"})

    await run_in_transaction(mongo, write)
    other = request_fingerprint("POST", "/v1/assignments", b'{"title":"Journaling"}')
    with pytest.raises(IdempotencyKeyReused) as raised:
        await replay_or_none(db, "t1", "key-1", other)
    assert (raised.value.status, raised.value.code) == (422, "idempotency_key_reused")


async def test_nothing_is_remembered_when_the_transaction_aborts(mongo: Client) -> None:
    db = mongo[unique("db")]
    await db.create_collection(COLLECTION)

    async def write_then_fail(session: AsyncClientSession) -> None:
        await remember(db, session, "t1", "key-1", FINGERPRINT, 201, {"id": "a1"})
        raise RuntimeError("business write failed")

    with pytest.raises(RuntimeError):
        await run_in_transaction(mongo, write_then_fail)
    assert await replay_or_none(db, "t1", "key-1", FINGERPRINT) is None


async def test_a_concurrent_duplicate_loses_on_the_unique_id(mongo: Client) -> None:
    db = mongo[unique("db")]

    async def create(session: AsyncClientSession, assignment_id: str) -> None:
        await db.assignments.insert_one({"_id": assignment_id}, session=session)
        await remember(db, session, "t1", "key-1", FINGERPRINT, 201, {"id": assignment_id})

    outcomes = await asyncio.gather(
        run_in_transaction(mongo, lambda s: create(s, "a1")),
        run_in_transaction(mongo, lambda s: create(s, "a2")),
        return_exceptions=True,
    )
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["DuplicateKeyError", "NoneType"]
    winner = "a1" if outcomes[0] is None else "a2"
    assert [doc["_id"] async for doc in db.assignments.find({})] == [winner]
    stored = await replay_or_none(db, "t1", "key-1", FINGERPRINT)
    assert stored is not None
    assert stored.body == {"id": winner}


async def test_a_changed_ttl_setting_changes_the_existing_index(mongo: Client) -> None:
    db = mongo[unique("db")]
    await ensure_idempotency_indexes(db)
    await ensure_idempotency_indexes(db)  # a restart with the same setting: nothing to do
    await ensure_idempotency_indexes(db, 3600)  # a restart with another one: no IndexOptionsConflict
    indexes = {index["name"]: index async for index in await db[COLLECTION].list_indexes()}
    assert indexes["created_at_ttl"]["expireAfterSeconds"] == 3600


async def test_a_key_is_forgotten_after_its_ttl_and_the_same_key_is_then_a_new_request(
    infra: Infra, mongo: Client
) -> None:
    """With a 1 s TTL the server's TTL monitor (every 60 s on mongod and SecantusDB) deletes the key;
    the same key with another body is then written as a new request, not refused as a reuse (422)."""
    database = unique("db")
    settings = route_settings(infra, database, idempotency_key_ttl_s=1)
    await ensure_idempotency_indexes(mongo[database], settings.idempotency_key_ttl_s)  # as Runtime.start does
    token = mint_token(sub="t1", role=Role.THERAPIST, practice_id="p1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(assignments_app(infra, mongo, database, settings)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        key = {"Idempotency-Key": "k1"}
        first = await http.post("/v1/assignments", json={"title": "Breathing"}, headers=key)
        reused = await http.post("/v1/assignments", json={"title": "Journaling"}, headers=key)
        assert (first.status_code, reused.status_code) == (201, 422), "remembered while its TTL runs"

        async def forgotten() -> bool:
            return await mongo[database][COLLECTION].count_documents({"_id": "t1:k1"}) == 0

        await wait_for(forgotten, timeout=180, interval=1, message="the TTL monitor to delete the key")
        again = await http.post("/v1/assignments", json={"title": "Journaling"}, headers=key)
    assert again.status_code == 201, again.text
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    titles = sorted([doc["title"] async for doc in mongo[database].assignments.find({})])
    assert titles == ["Breathing", "Journaling"]
    assert await mongo[database][COLLECTION].count_documents({"_id": "t1:k1"}) == 1, "remembered again"


# ---------------------------------------------------------------- through a route


def route_settings(infra: Infra, database: str, **overrides: Any) -> ServiceSettings:
    return ServiceSettings(
        service_name="idem-test",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=database,
        **overrides,
    )


def assignments_app(infra: Infra, client: Client, database: str, settings: ServiceSettings | None = None) -> FastAPI:
    router = APIRouter()
    db = client[database]

    @router.post("/v1/assignments", status_code=201)
    async def create_assignment(request: Request, principal: PrincipalDep, key: IdempotencyKeyDep) -> Response:
        payload = await request.json()

        async def write(session: AsyncClientSession) -> dict[str, Any]:
            inserted = await db.assignments.insert_one({"title": payload["title"]}, session=session)
            return {"id": str(inserted.inserted_id), "title": payload["title"]}

        return await respond_idempotently(client, db, request, principal.sub, key, 201, write)

    return create_app(settings or route_settings(infra, database), title="t", version="1", routers=[router])


@pytest.fixture
async def route_db(infra: Infra, mongo: Client) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    database = unique("db")
    app = assignments_app(infra, mongo, database)
    token = mint_token(sub="t1", role=Role.THERAPIST, practice_id="p1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://test", headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http, database


async def test_a_retried_post_is_answered_from_memory(route_db: tuple[httpx.AsyncClient, str], mongo: Client) -> None:
    http, database = route_db
    first = await http.post("/v1/assignments", json={"title": "Breathing"}, headers={"Idempotency-Key": "k1"})
    again = await http.post("/v1/assignments", json={"title": "Breathing"}, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await mongo[database].assignments.count_documents({}) == 1


async def test_a_reused_key_with_another_body_is_422(route_db: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = route_db
    await http.post("/v1/assignments", json={"title": "Breathing"}, headers={"Idempotency-Key": "k1"})
    reused = await http.post("/v1/assignments", json={"title": "Journaling"}, headers={"Idempotency-Key": "k1"})
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"


async def test_concurrent_posts_with_one_key_write_once(route_db: tuple[httpx.AsyncClient, str], mongo: Client) -> None:
    http, database = route_db
    responses = await asyncio.gather(
        *(
            http.post("/v1/assignments", json={"title": "Breathing"}, headers={"Idempotency-Key": "k1"})
            for _ in range(4)
        )
    )
    assert [response.status_code for response in responses] == [201] * 4
    assert len({response.text for response in responses}) == 1
    assert await mongo[database].assignments.count_documents({}) == 1


async def test_without_a_key_every_post_writes(route_db: tuple[httpx.AsyncClient, str], mongo: Client) -> None:
    http, database = route_db
    for _ in range(2):
        assert (await http.post("/v1/assignments", json={"title": "Breathing"})).status_code == 201
    assert await mongo[database].assignments.count_documents({}) == 2
