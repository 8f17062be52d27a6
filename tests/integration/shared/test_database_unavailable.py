"""With MongoDB unreachable, requests fail fast with 503 and readiness says which check failed."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
from fastapi import APIRouter

from homework_shared.http import create_app
from homework_shared.mongo import make_mongo_client, mongo_ping
from homework_shared.settings import ServiceSettings
from tests.conftest import unique


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_writes_to_a_closed_port_answer_503_within_the_timeout() -> None:
    settings = ServiceSettings(
        service_name="down-test",
        kafka_bootstrap_servers="127.0.0.1:1",
        mongodb_uri=f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true",
        mongodb_database=unique("db"),
        mongo_timeout_ms=300,
    )
    client = make_mongo_client(settings)
    router = APIRouter()

    @router.post("/v1/things", status_code=201)
    async def create_thing() -> dict[str, Any]:
        await client[settings.mongodb_database].things.insert_one({"name": "x"})
        return {"ok": True}

    app = create_app(
        settings, title="t", version="1", routers=[router], readiness_checks={"mongodb": lambda: mongo_ping(client)}
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
            started = time.monotonic()
            response = await http.post("/v1/things")
            elapsed = time.monotonic() - started
            ready = await http.get("/readyz")
    finally:
        await client.close()
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["Retry-After"]
    assert elapsed < 3
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"mongodb": "failed"}
