"""Session-wide fixtures: real servers for integration tests, unique names, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymongo import AsyncMongoClient

from tests.infra import Infra, devstack, prepare_local_stack, session_infra

T = TypeVar("T")
# The services default to production, which refuses the development JWT secret, time compression and
# plain-text Kafka and MongoDB. Tests run on a local plain-text stack: say so explicitly, for every
# settings object built here and every service process started from here (they inherit it).
os.environ["ENVIRONMENT"] = "development"
# Tests read spans through an in-memory recorder: record them although no OTLP endpoint is set.
os.environ.setdefault("OTEL_TRACES_SAMPLER", "always_on")

TIERS = ("unit", "integration", "contracts", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the folder it lives in: tests/unit -> unit, and so on."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        tier = next((p for p in parts if p in TIERS), None)
        if tier == "contracts":
            # Contract tests mix pure schema checks and broker round trips; they say which.
            continue
        if tier and not any(m.name in ("unit", "integration", "e2e") for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the local servers before any test when a selected test needs them (shown, not captured)."""
    if session.config.option.collectonly:
        return
    if any("infra" in getattr(item, "fixturenames", ()) for item in session.items):
        capture = session.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            try:
                prepare_local_stack()
            except devstack.DevstackError as exc:  # the tests that need the stack report it again
                print(f"\nthe local stack cannot be prepared: {exc}", file=sys.stderr)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """The real Kafka broker and MongoDB server for this test session."""
    with tempfile.TemporaryDirectory(prefix="homework-tests-") as tmp, session_infra(Path(tmp)) as found:
        yield found


def unique(prefix: str = "t") -> str:
    """A name no other test uses: for topics, databases and consumer groups."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def names() -> Callable[[str], str]:
    return unique


@pytest.fixture
async def mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    try:
        yield client
    finally:
        await client.close()


async def wait_for(
    check: Callable[[], Awaitable[T]], timeout: float = 20.0, interval: float = 0.05, message: str = "condition"
) -> T:
    """Poll ``check`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


async def report_if_slow(seconds: float) -> None:
    """Print every task's stack if a shutdown takes longer than ``seconds`` (a hang shows where it hangs)."""
    await asyncio.sleep(seconds)
    print(f"shutdown slower than {seconds}s; tasks:")
    for task in asyncio.all_tasks():
        task.print_stack(limit=8)


@contextlib.asynccontextmanager
async def bounded_shutdown(what: str, seconds: float = 90.0) -> AsyncIterator[None]:
    """Fail, rather than hang the whole session, when a shutdown takes longer than ``seconds``;
    every task's stack is printed after a third of that, so the failure shows where it waits."""
    watchdog = asyncio.create_task(report_if_slow(seconds / 3))
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"{what} did not shut down within {seconds}s (task stacks printed)") from None
    finally:
        watchdog.cancel()
