"""The one transaction helper runs the after-commit callbacks of the attempt that committed, once, and no others.

The session below is a stand-in recording what the helper asks of it (pure control flow); the
same helper against the real server is covered by tests/integration/shared/test_transactions.py.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure

from homework_shared.after_commit import after_commit
from homework_shared.mongo import run_in_transaction

pytestmark = pytest.mark.unit


def _transient() -> OperationFailure:
    return OperationFailure("WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})


class _Session:
    """Records start, commit and abort; ``fail_commits`` commits raise their error before one succeeds."""

    def __init__(self, fail_commits: list[Exception]) -> None:
        self.fail_commits = fail_commits
        self.in_transaction = False
        self.log: list[str] = []

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None

    async def start_transaction(self, **_: Any) -> None:
        self.in_transaction = True
        self.log.append("start")

    async def commit_transaction(self) -> None:
        self.in_transaction = False
        if self.fail_commits:
            self.log.append("commit failed")
            raise self.fail_commits.pop(0)
        self.log.append("commit")

    async def abort_transaction(self) -> None:
        self.in_transaction = False
        self.log.append("abort")


class _Client:
    def __init__(self, fail_commits: list[Exception] | None = None) -> None:
        self.session = _Session(fail_commits or [])

    def start_session(self) -> _Session:
        return self.session


async def test_callbacks_run_once_after_the_commit_and_not_before() -> None:
    client = _Client()
    calls: list[str] = []

    async def write(session: AsyncClientSession) -> str:
        assert after_commit(lambda: calls.append(f"after {client.session.log[-1]}"))
        return "written"

    assert await run_in_transaction(client, write) == "written"  # type: ignore[arg-type]
    assert calls == ["after commit"]
    assert client.session.log == ["start", "commit"]


async def test_an_aborted_transaction_runs_none_of_its_callbacks() -> None:
    client = _Client()
    calls: list[str] = []

    async def write_then_fail(session: AsyncClientSession) -> None:
        after_commit(lambda: calls.append("woken"))
        raise ValueError("refused by a rule")

    with pytest.raises(ValueError, match="refused"):
        await run_in_transaction(client, write_then_fail)  # type: ignore[arg-type]
    assert calls == []
    assert client.session.log == ["start", "abort"]


async def test_a_retried_transaction_runs_the_callbacks_of_the_attempt_that_committed_only() -> None:
    client = _Client()
    calls: list[int] = []
    attempts = 0

    async def flaky_once(session: AsyncClientSession) -> None:
        nonlocal attempts
        attempts += 1
        attempt = attempts
        after_commit(lambda: calls.append(attempt))
        if attempt == 1:
            raise _transient()

    await run_in_transaction(client, flaky_once, backoff_s=0)  # type: ignore[arg-type]
    assert attempts == 2
    assert calls == [2]
    assert client.session.log == ["start", "abort", "start", "commit"]


async def test_a_commit_that_fails_transiently_reruns_the_transaction_and_calls_back_once() -> None:
    client = _Client(fail_commits=[_transient()])
    calls: list[str] = []

    async def write(session: AsyncClientSession) -> None:
        after_commit(lambda: calls.append("woken"))

    await run_in_transaction(client, write, backoff_s=0)  # type: ignore[arg-type]
    assert calls == ["woken"]
    assert client.session.log == ["start", "commit failed", "start", "commit"]


async def test_a_transaction_that_never_commits_calls_nothing_back() -> None:
    client = _Client()
    calls: list[str] = []

    async def always_transient(session: AsyncClientSession) -> None:
        after_commit(lambda: calls.append("woken"))
        raise _transient()

    with pytest.raises(OperationFailure):
        await run_in_transaction(client, always_transient, max_attempts=3, backoff_s=0)  # type: ignore[arg-type]
    assert calls == []
    assert client.session.log.count("abort") == 3


async def test_a_failing_callback_does_not_undo_the_answer_or_stop_the_others() -> None:
    client = _Client()
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("metrics backend gone")

    async def write(session: AsyncClientSession) -> str:
        after_commit(broken)
        after_commit(lambda: calls.append("relay woken"))
        return "written"

    assert await run_in_transaction(client, write) == "written"  # type: ignore[arg-type]
    assert calls == ["relay woken"]


async def test_one_callback_registered_twice_in_a_transaction_runs_once() -> None:
    client = _Client()
    calls: list[str] = []

    def wake() -> None:
        calls.append("woken")

    async def stage_two_events(session: AsyncClientSession) -> None:
        after_commit(wake)
        after_commit(wake)

    await run_in_transaction(client, stage_two_events)  # type: ignore[arg-type]
    assert calls == ["woken"]
