"""SecantusDB's daemon with a background transaction reaper, as mongod has.

mongod aborts a transaction left idle longer than ``transactionLifetimeLimitSeconds`` (60 s) from
a background thread. SecantusDB (0.7) only reaps when some transaction statement, commit or abort
arrives. After a client is SIGKILLed mid-transaction, the documents its transaction wrote stay
locked; when every other client is then blocked on plain writes to those documents (the server
retries them on write conflicts without end, as mongod does), no transaction command arrives and
the orphan is never reaped: the servers spins and every write to the collection waits for ever.

This wrapper starts the unchanged daemon (``secantusd-py``'s ``main``) and adds one thread that
calls the registry's own ``prune_expired`` every second, so the local stand-in behaves as mongod
does: an orphaned transaction holds its documents at most ``lifetime`` seconds.

Only the Python server (the dev stack's fallback, ``MONGO_SERVER=python``) needs it. The Rust
server (``secantusd-rs`` 0.5.3-beta.196) reaps in the background on its own: measured on
2026-12-02, a plain write to a document held by a SIGKILLed client's transaction waited 60.8 s
and then succeeded, and it keeps mongod's ``transactionLifetimeLimitSeconds`` parameter
(``getParameter``/``setParameter``, default 60). Both are tested in
``tests/integration/deploy/test_orphaned_transactions.py``.
"""

from __future__ import annotations

import os
import sys
import threading

from secantus import cli
from secantus.server import SecantusDBServer

REAP_EVERY_S = 1.0
LIFETIME_S = float(os.environ.get("DEVSTACK_TRANSACTION_LIFETIME_S", "60"))  # mongod's default

_start = SecantusDBServer.start


def _start_with_reaper(self: SecantusDBServer) -> None:
    _start(self)
    registry = self.transactions
    registry._lifetime = LIFETIME_S  # the registry's own setting (only a constructor argument)

    def reap() -> None:
        while not self._stop_event.wait(REAP_EVERY_S):
            try:
                registry.prune_expired()
            except Exception as exc:  # noqa: BLE001 - never let the reaper end the server
                print(f"transaction reaper: {exc!r}", file=sys.stderr)

    threading.Thread(target=reap, name="devstack-transaction-reaper", daemon=True).start()


SecantusDBServer.start = _start_with_reaper  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
