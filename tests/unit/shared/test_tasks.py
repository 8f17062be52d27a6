"""stop_task: a shutdown never waits for ever on a background task."""

from __future__ import annotations

import asyncio
import time

import pytest

from homework_shared.tasks import stop_task

pytestmark = pytest.mark.unit


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0
    looping = asyncio.Event()

    async def loop() -> None:
        nonlocal swallowed
        while True:
            looping.set()
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed == 2:
                    raise
                swallowed += 1  # as asyncio.wait_for may on Python 3.11

    task = asyncio.create_task(loop())
    await looping.wait()  # inside its loop (a task cancelled before it first runs just ends)
    assert await stop_task(task, timeout=5)
    assert task.cancelled()
    assert swallowed == 2


async def test_a_task_that_never_ends_is_left_behind_after_the_timeout() -> None:
    release, looping = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            looping.set()
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await looping.wait()  # inside its loop (a task cancelled before it first runs just ends)
    started = time.monotonic()
    assert not await stop_task(task, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    release.set()
    await task


async def test_none_and_finished_tasks_are_already_stopped() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    assert await stop_task(task)
    assert await stop_task(None)
