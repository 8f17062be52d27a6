"""A process SIGKILLed inside a transaction does not lock the documents it wrote for ever, on either
MongoDB-protocol server of the dev stack: the server aborts the orphaned transaction after its lifetime,
as mongod does (``transactionLifetimeLimitSeconds``, 60 s by default), even when only plain writes
wait for those documents."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from tests.infra import devstack

LIFETIME_S = 5  # shortened for the test; mongod's default (and the dev stack's) is 60
WRITE_CONFLICT = 112

# Builds the Rust server before the first test if needed (tests/conftest.py), and runs where the suite runs.
pytestmark = pytest.mark.usefixtures("infra")

# A client that writes a document inside a transaction, says so, and then hangs until it is killed.
HOLDER = """
import sys, time
from pymongo import MongoClient
client = MongoClient(sys.argv[1])
with client.start_session() as session:
    session.start_transaction()
    client.orphans.docs.update_one({"_id": "d1"}, {"$set": {"holder": True}}, session=session)
    print("holding", flush=True)
    time.sleep(3600)
"""


def _rust_server_unavailable() -> str | None:
    if devstack._built_binary() or not devstack._build_tools_missing():
        return None
    return "no Rust server built and no cargo/cc/cmake to build it"


@pytest.mark.parametrize("server", ["rust", "python"])
async def test_a_transaction_of_a_killed_process_is_aborted_after_its_lifetime(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server == "rust" and (why := _rust_server_unavailable()):
        pytest.skip(why)
    monkeypatch.setenv("DEVSTACK_TRANSACTION_LIFETIME_S", str(LIFETIME_S))  # read by the Python server's reaper
    uri, pid, _ = devstack.start_mongo(tmp_path, server=server)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, socketTimeoutMS=120_000)
    holder: subprocess.Popen[str] | None = None
    try:
        if server == "rust":
            # The Rust server keeps mongod's parameter, default and all; the test shortens it as one would on mongod.
            got = await client.admin.command({"getParameter": 1, "transactionLifetimeLimitSeconds": 1})
            assert got["transactionLifetimeLimitSeconds"] == 60
            await client.admin.command({"setParameter": 1, "transactionLifetimeLimitSeconds": LIFETIME_S})
        docs = client.orphans.docs
        await docs.insert_one({"_id": "d1", "writes": 0})
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, uri], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "holding\n"
        os.kill(holder.pid, signal.SIGKILL)
        await asyncio.to_thread(holder.wait)

        # The dead client's transaction still holds the document: another transaction conflicts at once.
        with pytest.raises(OperationFailure) as conflict:
            async with client.start_session() as session, await session.start_transaction():
                await docs.update_one({"_id": "d1"}, {"$inc": {"writes": 1}}, session=session)
        assert conflict.value.code == WRITE_CONFLICT

        # A plain write waits for the document; no transaction command arrives meanwhile, so only a
        # background reaper can free it.
        started = time.monotonic()
        await docs.update_one({"_id": "d1"}, {"$inc": {"writes": 1}})
        waited = time.monotonic() - started
        assert waited < LIFETIME_S + 30, waited  # the margin is for a machine with both cores busy

        # The orphan was aborted, not committed.
        assert await docs.find_one({"_id": "d1"}) == {"_id": "d1", "writes": 1}
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        await client.close()
        devstack.stop_pid(pid)
