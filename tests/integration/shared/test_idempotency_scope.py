"""Idempotency keys are scoped by practice and caller, on the real MongoDB server: no replay across tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from homework_shared.auth.deps import PrincipalDep
from homework_shared.auth.jwt import Principal, Role
from homework_shared.auth.mint import mint_token
from homework_shared.http import create_app
from homework_shared.idempotency import IdempotencyKeyDep, caller_scope, respond_idempotently
from homework_shared.settings import ServiceSettings
from tests.conftest import unique
from tests.infra import Infra

Client = AsyncMongoClient[dict[str, Any]]


def notes_app(infra: Infra, client: Client, database: str) -> FastAPI:
    """A route that writes a note for the caller's practice and answers it, idempotently, as the services do."""
    router = APIRouter()
    db = client[database]

    @router.post("/v1/clients/{client_id}/notes", status_code=201)
    async def add_note(request: Request, client_id: str, principal: PrincipalDep, key: IdempotencyKeyDep) -> Response:
        async def write(session: AsyncClientSession) -> dict[str, Any]:
            doc = {"practice_id": principal.practice_id, "client_id": client_id}
            inserted = await db.notes.insert_one(doc, session=session)
            return {"id": str(inserted.inserted_id), "practice_id": principal.practice_id}

        return await respond_idempotently(client, db, request, caller_scope(principal), key, 201, write)

    settings = ServiceSettings(
        service_name="idem-scope-test",
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        mongodb_database=database,
    )
    return create_app(settings, title="t", version="1", routers=[router])


@pytest.fixture
async def notes(infra: Infra, mongo: Client) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    database = unique("db")
    app = notes_app(infra, mongo, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        yield http, database
    await mongo.drop_database(database)


def caller(sub: str, practice: str, role: Role = Role.THERAPIST) -> dict[str, str]:
    token = mint_token(sub=sub, role=role, practice_id=practice)
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": "same-key"}


async def test_the_same_sub_and_key_in_another_practice_is_not_answered_with_the_first_practices_response(
    notes: tuple[httpx.AsyncClient, str], mongo: Client
) -> None:
    http, database = notes
    a = await http.post("/v1/clients/c-1/notes", headers=caller("t-1", "practice-a"))
    b = await http.post("/v1/clients/c-1/notes", headers=caller("t-1", "practice-b"))
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["practice_id"] == "practice-a"
    assert b.json()["practice_id"] == "practice-b"
    assert "Idempotent-Replayed" not in b.headers
    assert await mongo[database].notes.count_documents({}) == 2
    retried = await http.post("/v1/clients/c-1/notes", headers=caller("t-1", "practice-a"))
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == a.json()


async def test_a_client_whose_id_equals_a_therapists_sub_does_not_share_their_keys(
    notes: tuple[httpx.AsyncClient, str], mongo: Client
) -> None:
    http, database = notes
    therapist = await http.post("/v1/clients/t-1/notes", headers=caller("t-1", "practice-a"))
    client = await http.post("/v1/clients/t-1/notes", headers=caller("t-1", "practice-a", Role.CLIENT))
    assert "Idempotent-Replayed" not in client.headers
    assert client.json()["id"] != therapist.json()["id"]
    assert await mongo[database].notes.count_documents({}) == 2


def test_a_scope_cannot_be_spoofed_with_separators_in_its_parts() -> None:
    one = caller_scope(Principal(sub="c", role=Role.CLIENT, practice_id="a|client"))
    two = caller_scope(Principal(sub="client|c", role=Role.CLIENT, practice_id="a"))
    assert one != two
    assert caller_scope(Principal(sub="t-1", role=Role.THERAPIST, practice_id="p-1")) == "p-1|therapist|t-1"
