"""The replica's background loops: fire due reminders, detect missed occurrences, extend the horizon,
send webhooks, count what is pending. Each loop survives errors (logged, then a pause) and stops on cancel.

Sleeping: the firing loop with nothing due waits until the next due instant on the platform clock,
but never longer than ``poll_interval_s`` of real time, so a reminder scheduled meanwhile is not late
by more. The housekeeping loops (missed, horizon, webhooks, gauge) keep a real-time cadence: a
sped-up demo clock must not make them spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

from homework_reminder.config import ReminderSettings
from homework_reminder.firing import Firing, lateness
from homework_reminder.metrics import ReminderMetrics
from homework_reminder.store import FOLD_BATCH, Store
from homework_reminder.usecases import Scheduler
from homework_reminder.webhook import WebhookDelivery
from homework_shared.clock import Clock
from homework_shared.mongo import MongoClient, run_in_transaction

log = logging.getLogger(__name__)
STOP_WAIT_S = 5.0
HOUSEKEEPING_S = 1.0
"""Real seconds between two runs of an idle housekeeping loop (missed, webhooks; the horizon: five times)."""


class Workers:
    """Starts and stops the loops of one replica."""

    def __init__(
        self,
        *,
        store: Store,
        mongo: MongoClient,
        scheduler: Scheduler,
        firing: Firing,
        delivery: WebhookDelivery,
        clock: Clock,
        settings: ReminderSettings,
        metrics: ReminderMetrics,
    ) -> None:
        self.store = store
        self.mongo = mongo
        self.scheduler = scheduler
        self.firing = firing
        self.delivery = delivery
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.poll = settings.poll_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # The fire loops (``fire_concurrency``) claim one after another, so each claims the next batch
        # instead of racing for the same one; the batches then fire in transactions of their own.
        self._claiming = asyncio.Lock()

    def start(self) -> None:
        self._stopping = False
        loops: dict[str, Callable[[], Awaitable[float]]] = {
            "fire": self.fire_due,
            "missed": self.detect_missed,
            "extend": self.extend_horizon,
            "webhook": self.deliver_webhooks,
            "pending-gauge": self.count_pending,
        }
        self._tasks = [
            asyncio.create_task(self._forever(name, step), name=f"reminder-{name}") for name, step in loops.items()
        ]
        self._tasks += [
            asyncio.create_task(self._forever("fire", self.fire_due), name=f"reminder-fire-{i}")
            for i in range(1, self.settings.fire_concurrency)
        ]

    async def stop(self) -> None:
        """Cancel the loops, then release the leases this replica holds so another fires them at once.

        Bounded: a loop stuck in a slow database call is left behind after ``STOP_WAIT_S``.
        """
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_WAIT_S)
        self._tasks = []
        try:
            async with asyncio.timeout(STOP_WAIT_S):
                released = await self.firing.release()
            if released:
                log.info("released %d reminder leases", released)
        except Exception:
            log.warning("could not release reminder leases; they expire by themselves", exc_info=True)

    async def _forever(self, name: str, step: Callable[[], Awaitable[float]]) -> None:
        """Run ``step`` until cancelled; it returns the real seconds to pause before the next run."""
        failures = 0
        while not self._stopping:
            try:
                pause = await step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                pause = min(10.0, 0.2 * 2**failures)
                log.warning("%s loop failed; retrying in %.1fs", name, pause, exc_info=True)
            if pause > 0:
                await asyncio.sleep(pause)

    async def _until(self, platform_seconds: float) -> None:
        """Sleep ``platform_seconds`` on the platform clock, but at most ``poll`` real seconds.

        When the clock does not get there in that time (a test's manual clock, or a far due
        instant), the pause still lasts ``poll`` real seconds, so a loop never spins.
        """
        started = time.monotonic()
        deadline = self.clock.now() + timedelta(seconds=platform_seconds)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives as
        # the sleep ends, and the loop would outlive the replica's shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll):
                await self.clock.sleep(platform_seconds)
        if self.clock.now() < deadline:
            await asyncio.sleep(max(0.0, self.poll - (time.monotonic() - started)))

    # ------------------------------------------------------------------ one step of each loop; returns the pause

    async def fire_due(self) -> float:
        """Claim and fire one batch; with nothing due, wait for the next due instant."""
        async with self._claiming:
            claim = await self.firing.claim_due()
        if claim.taken_over:
            self.metrics.leases_taken_over.inc(claim.taken_over)
            log.info("took over %d reminders from expired leases", claim.taken_over)
        if claim.ids:
            fired = await self.firing.fire(claim)
            if fired.at is not None:
                self.metrics.fired.inc(len(fired.sent))
                for seconds in lateness(fired.sent, fired.at):
                    self.metrics.lateness.observe(seconds)
            return 0.0
        # Only a reminder due before the next poll matters: a later one is found by a later poll.
        next_due = await self.store.next_due(before=self.clock.now() + timedelta(seconds=self.poll * self.clock.speed))
        if next_due is None:
            return self.poll
        await self._until(max(0.0, (next_due - self.clock.now()).total_seconds()))
        return 0.0

    async def detect_missed(self) -> float:
        missed = await self.firing.detect_missed()
        self.metrics.missed.inc(len(missed))
        return 0.0 if len(missed) >= self.firing.missed_batch_size else HOUSEKEEPING_S

    async def extend_horizon(self) -> float:
        """Extend plans whose stored occurrences end less than a horizon minus one period ahead."""
        s = self.settings
        before = self.clock.now() + timedelta(days=s.horizon_days) - timedelta(seconds=s.extend_every_s)
        ids = await self.store.plans_to_extend(before, s.extend_batch_size)
        for assignment_id in ids:
            await run_in_transaction(self.mongo, partial(self.scheduler.extend, assignment_id))
        return 0.0 if len(ids) >= s.extend_batch_size else HOUSEKEEPING_S * 5

    async def deliver_webhooks(self) -> float:
        sent = await self.delivery.run_once()
        return 0.0 if sent else HOUSEKEEPING_S

    async def count_pending(self) -> float:
        """Fold the pending count's deltas (all of them, a batch at a time), then set the gauge."""
        folded = await self.store.fold_pending(self.mongo)
        self.metrics.pending.set(await self.store.count_waiting())
        return 0.0 if folded >= FOLD_BATCH else self.settings.pending_gauge_every_s
