"""A transaction the dev stack's MongoDB-protocol server acknowledged survives a SIGKILL of the server, as a
majority commit on mongod does, when the stack asks for it (``devstack.start_mongo(sync_on_commit=True)``,
what the fault tests that kill the server use).

Without ``--sync-on-commit`` SecantusDB acknowledges a commit before its journal record is on disk: a
killed server came back without 1-5 of ~600 acknowledged transactions (2026-12-02), which was the
MongoDB outage fault test's occasional "insights counted 496 of 500": the consumer had committed its
Kafka offsets for events whose applied transaction the restarted server no longer had.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.errors import PyMongoError

from tests.infra import devstack

WRITERS = 8
WRITE_S = 2.0
KILLS = 2

# Builds the Rust server before the first test if needed (tests/conftest.py), and runs where the suite runs.
pytestmark = pytest.mark.usefixtures("infra")


async def _write_until_killed(uri: str, pid: int, first: int) -> list[int]:
    """Transactions from WRITERS concurrent clients, the server SIGKILLed after WRITE_S; the acknowledged ids."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=2000, socketTimeoutMS=5000
    )
    acknowledged: list[int] = []
    killed = asyncio.Event()

    async def writer(w: int) -> None:
        n = first + w
        while not killed.is_set():
            try:
                async with (
                    client.start_session() as session,
                    await session.start_transaction(write_concern=WriteConcern("majority")),
                ):
                    await client.durable.docs.insert_one({"_id": n, "pad": "x" * 200}, session=session)
            except PyMongoError:
                return  # the server is gone: what was acknowledged so far is what counts
            acknowledged.append(n)
            n += WRITERS

    try:
        writers = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
        deadline = time.monotonic() + 30
        while len(acknowledged) < 50 and time.monotonic() < deadline:  # writing for real before the clock runs
            await asyncio.sleep(0.05)
        await asyncio.sleep(WRITE_S)
        await asyncio.to_thread(devstack.stop_pid, pid, sig=signal.SIGKILL)
        killed.set()
        await asyncio.gather(*writers)
    finally:
        await client.close()
    return acknowledged


async def test_a_commit_acknowledged_before_the_server_is_killed_is_there_after_its_restart(tmp_path: Path) -> None:
    uri, pid, _ = devstack.start_mongo(tmp_path, sync_on_commit=True)
    stack = devstack.Stack(root=tmp_path, kafka_bootstrap="", mongodb_uri=uri, pids={"mongo": pid})
    stack.mongo_sync_on_commit = True
    acknowledged: list[int] = []
    try:
        for kill in range(KILLS):
            acknowledged += await _write_until_killed(uri, stack.pids["mongo"], first=kill * 1_000_000)
            devstack.restart_mongo(stack)
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=20_000)
            try:
                stored = {d["_id"] async for d in client.durable.docs.find({}, {"_id": 1})}
            finally:
                await client.close()
            lost = sorted(set(acknowledged) - stored)
            assert len(acknowledged) > 50 * (kill + 1), f"too few writes to tell: {len(acknowledged)}"
            assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged transactions lost: {lost[:10]}"
    finally:
        devstack.stop_pid(stack.pids["mongo"])
