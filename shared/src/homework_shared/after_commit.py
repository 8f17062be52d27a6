"""Work that must wait until the current transaction has committed, and must not happen if it aborts.

:func:`homework_shared.mongo.run_in_transaction` (the one transaction helper: HTTP writes, the
event consumer, the schedulers) runs each attempt inside :func:`collecting`; code running in it
(an apply function, the outbox staging a record) registers callbacks with :func:`after_commit`,
and the helper calls them once that attempt committed. An aborted attempt (retried, or a
consumer's group retried record by record) drops its callbacks, so a counter is not counted
twice and the relay is woken only when a record it can read exists.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar

log = logging.getLogger(__name__)

_hooks: ContextVar[list[Callable[[], None]] | None] = ContextVar("after_commit", default=None)


def after_commit(callback: Callable[[], None]) -> bool:
    """Call ``callback`` after the surrounding transaction commits; False (not registered) outside one.

    A callback equal to one already registered is registered once (the outbox's ``notify``,
    staged by each of the events a transaction applies, wakes the relay once).
    """
    hooks = _hooks.get()
    if hooks is None:
        return False
    if callback not in hooks:
        hooks.append(callback)
    return True


def now_or_after_commit(callback: Callable[[], None]) -> None:
    """``after_commit(callback)``, or call it at once when no transaction is collecting callbacks."""
    if not after_commit(callback):
        callback()


@contextlib.contextmanager
def collecting() -> Iterator[list[Callable[[], None]]]:
    """Collect the callbacks registered inside; the caller runs them after its commit, or drops them."""
    hooks: list[Callable[[], None]] = []
    token = _hooks.set(hooks)
    try:
        yield hooks
    finally:
        _hooks.reset(token)


def run(hooks: list[Callable[[], None]]) -> None:
    """Call each collected callback once, in order (after the commit).

    The transaction has committed by now: a callback that raises is logged and the others still
    run, so the caller is not told that a write which happened failed (and does not redo it).
    """
    callbacks = list(hooks)
    hooks.clear()
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("an after-commit callback failed; the transaction had committed")
