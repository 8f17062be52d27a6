"""run_in_transaction against a server that cannot be reached gives up after one selection timeout."""

from __future__ import annotations

import socket
import time

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ServerSelectionTimeoutError

from homework_shared.mongo import make_mongo_client, run_in_transaction
from homework_shared.settings import ServiceSettings


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_server_is_not_retried() -> None:
    settings = ServiceSettings(
        service_name="unreachable-test",
        kafka_bootstrap_servers="127.0.0.1:1",
        mongodb_uri=f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true",
        mongodb_database="db",
        mongo_timeout_ms=300,
    )
    client = make_mongo_client(settings)
    attempts: list[int] = []

    async def write(session: AsyncClientSession) -> None:
        attempts.append(1)
        await client["db"].things.insert_one({"x": 1}, session=session)

    started = time.monotonic()
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            await run_in_transaction(client, write)
    finally:
        await client.close()
    assert len(attempts) <= 1
    assert time.monotonic() - started < 1.5
