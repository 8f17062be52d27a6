"""Stopping background tasks within a bound, whatever they are awaiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[Any] | None, *, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
    """Cancel ``task`` and wait at most ``timeout`` seconds for it to end; True if it ended.

    The cancellation is repeated while the task runs on: a cancellation that arrives as an inner
    await completes can be swallowed (``asyncio.wait_for`` on Python 3.11 does so), and a single
    ``cancel(); await task`` then waits for ever, hanging the service's shutdown. A task still
    running after ``timeout`` is left behind with a warning; the process exits anyway.
    """
    if task is None or task.done():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("task %s did not stop within %.1fs; left behind", task.get_name(), timeout)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.5, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.warning("task %s ended with an error", task.get_name(), exc_info=task.exception())
    return True


class Periodic:
    """Runs ``step`` every ``interval_s`` seconds in the background, from ``start`` to ``stop``.

    A step that fails is logged with ``failure`` and tried again at the next interval; ``stop``
    cancels a step in progress (its transaction, if any, rolls back).
    """

    def __init__(self, name: str, interval_s: float, step: Callable[[], Awaitable[Any]], failure: str) -> None:
        self.name = name
        self.interval_s = interval_s
        self.step = step
        self.failure = failure
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping = True
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(self.failure, exc_info=True)
            await asyncio.sleep(self.interval_s)
