"""Counting transactions and write conflicts as the server reports them (PyMongo command monitoring).

A real replica set (and the Rust SecantusDB of the dev stack) aborts a transaction at its first
write conflict (``WriteConflict``, code 112, labelled ``TransientTransactionError``); the caller
retries the whole. Tests that race writers use :data:`CONFLICTS` to show that those retries stay
few. Only clients created after this module is imported report to it, and it counts only while
a test has it ``watching``: the other tests of the session run while it is idle.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from pymongo import monitoring

WRITE_CONFLICT = 112


@dataclass
class ConflictCounter(monitoring.CommandListener):
    """Commits, aborts and write conflicts seen while ``watching``."""

    active: bool = False
    commits: int = 0
    aborts: int = 0
    conflicts_in_transactions: int = 0
    conflicts_outside_transactions: int = 0
    where: Counter[str] = field(default_factory=Counter)
    """Write conflicts by the command and collection that met them, e.g. ``update counters``."""
    _in_transaction: dict[int, bool] = field(default_factory=dict)
    _commands: dict[int, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def watching(self) -> Iterator[ConflictCounter]:
        """Count from zero until the block ends."""
        self.commits = self.aborts = self.conflicts_in_transactions = self.conflicts_outside_transactions = 0
        self._in_transaction.clear()
        self._commands.clear()
        self.where.clear()
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.active:
            return
        if event.command_name == "abortTransaction":
            self.aborts += 1
        self._in_transaction[event.request_id] = event.command.get("autocommit") is False
        self._commands[event.request_id] = f"{event.command_name} {event.command.get(event.command_name)}"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if not self.active:
            return
        in_transaction = self._in_transaction.pop(event.request_id, False)
        command = self._commands.pop(event.request_id, event.command_name)
        if event.command_name == "commitTransaction" and in_transaction:
            self.commits += 1
        reply = event.reply if isinstance(event.reply, dict) else {}
        for error in reply.get("writeErrors", []):  # an update's conflict is reported as a write error
            self._count(error.get("code"), in_transaction, command)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        if not self.active:
            return
        in_transaction = self._in_transaction.pop(event.request_id, False)
        command = self._commands.pop(event.request_id, event.command_name)
        if isinstance(event.failure, dict):
            self._count(event.failure.get("code"), in_transaction, command)

    def _count(self, code: object, in_transaction: bool, command: str) -> None:
        if code == WRITE_CONFLICT:
            self.where[command] += 1
        if code == WRITE_CONFLICT and in_transaction:
            self.conflicts_in_transactions += 1
        elif code == WRITE_CONFLICT:
            self.conflicts_outside_transactions += 1

    def __str__(self) -> str:
        return (
            f"{self.commits} commits, {self.aborts} aborts, {self.conflicts_in_transactions} write conflicts in "
            f"transactions, {self.conflicts_outside_transactions} outside; conflicts met by {dict(self.where)}"
        )


CONFLICTS = ConflictCounter()
monitoring.register(CONFLICTS)
