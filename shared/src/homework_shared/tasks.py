"""Stopping background tasks within a bound, whatever they are awaiting."""

from __future__ import annotations

import asyncio
import logging
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
