"""Work that must wait until the current transaction has committed, and must not happen if it aborts.

The event consumer runs each transaction inside :func:`collecting`; code running in it (an
apply function, the outbox staging a record) registers callbacks with :func:`after_commit`,
and the consumer calls them once the commit succeeded. An aborted transaction, retried alone
or as part of a smaller group, drops its callbacks, so a counter is not counted twice and the
relay is woken only when a record it can read exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

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
    """Call each collected callback once, in order (after the commit)."""
    for callback in hooks:
        callback()
    hooks.clear()
