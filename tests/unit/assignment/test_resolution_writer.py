"""The group-commit writer fails fast while the database is away: one server selection, not one per batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from homework_assignment import resolutions
from homework_assignment.resolutions import ResolutionRequest, ResolutionWriter


def _request() -> ResolutionRequest:
    return ResolutionRequest(
        principal=None,  # type: ignore[arg-type]  # never read: the transaction is replaced below
        assignment_id="a-1",
        occurrence_id="o-1",
        now=None,  # type: ignore[arg-type]
        decide=None,  # type: ignore[arg-type]
        respond=lambda resolution: None,
    )


class _Outbox:
    def notify(self) -> None:
        pass


async def _queue_behind_a_failing_batch(monkeypatch: pytest.MonkeyPatch, error: Exception) -> tuple[list[Any], int]:
    calls = 0
    first_started = asyncio.Event()

    async def failing_transaction(client: Any, fn: Any, **_: Any) -> Any:
        nonlocal calls
        calls += 1
        first_started.set()
        await asyncio.sleep(0.05)  # the driver waiting for a server while more requests queue up
        raise error

    monkeypatch.setattr(resolutions, "run_in_transaction", failing_transaction)
    writer = ResolutionWriter(None, _Outbox(), None, linger_s=0)  # type: ignore[arg-type]
    first = asyncio.create_task(writer.record(_request()))
    await first_started.wait()
    queued = [asyncio.create_task(writer.record(_request())) for _ in range(3)]
    outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
    return outcomes, calls


@pytest.mark.unit
async def test_requests_queued_behind_a_batch_that_found_no_database_fail_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes, calls = await _queue_behind_a_failing_batch(monkeypatch, ServerSelectionTimeoutError("no server"))
    assert all(isinstance(o, ServerSelectionTimeoutError) for o in outcomes), outcomes
    assert calls == 1, "the queued requests waited for a server selection of their own"


@pytest.mark.unit
async def test_other_errors_leave_the_queued_requests_to_their_own_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes, calls = await _queue_behind_a_failing_batch(monkeypatch, RuntimeError("a bug"))
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert calls == 2, "the queued requests should have been tried as the next batch"
