"""The built-in delivery channel: each practice's HTTP webhook, signed, retried with back-off.

Firing never waits on a webhook: it queues a delivery (collection ``deliveries``) in its own
transaction, and this loop sends it. A reminder goes to its practice's webhook when its channels
include ``webhook`` and the practice has set one (``PUT /v1/practices/{id}/webhook``).

The request is the ``ReminderSent`` event as a structured-mode CloudEvent
(``application/cloudevents+json``), signed like Stripe's webhooks::

    X-Homework-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>

Receivers check the signature and the timestamp's freshness, and dedupe on the CloudEvents ``id``
(also in ``X-Homework-Event-Id``): a delivery is at least once. A failure (a non-2xx answer, a
timeout, a refused connection) is retried after ``base * 2**(attempt-1)`` seconds (capped), up to
``webhook_max_attempts``; then the delivery is ``failed``. Failures are counted in
``webhook_failures_total``. Back-off runs on real time, not the platform clock: it is about the
receiver's recovery, and a sped-up demo clock must not hammer it.

Each connect goes through ``egress.GuardedTransport``: a host that now resolves to a private,
loopback or link-local address (DNS rebinding) is never connected to; the delivery fails at once
with reason ``blocked_address``. Secrets are stored encrypted (``webhook_secrets``) and decrypted
only to sign.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from homework_reminder.config import ReminderSettings
from homework_reminder.egress import AddressRefused
from homework_reminder.metrics import ReminderMetrics
from homework_reminder.store import Doc, Lease, Store
from homework_reminder.webhook_secrets import SecretBox, SecretUnreadable
from homework_shared.events import ReminderSent

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Homework-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Homework-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_s: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is fresh (what a receiver does)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def cloudevent_body(delivery: Doc, source: str) -> bytes:
    """The structured-mode CloudEvent of a queued delivery."""
    event = delivery["event"]
    document = {
        "specversion": "1.0",
        "id": delivery["_id"],
        "source": source,
        "type": ReminderSent.event_type,
        "time": delivery["event_time"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": event["occurrence_id"],
        "datacontenttype": "application/json",
        "data": event,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


class WebhookDelivery:
    """Claims due deliveries with a lease, sends them concurrently, records the outcome."""

    def __init__(
        self,
        store: Store,
        settings: ReminderSettings,
        http: httpx.AsyncClient,
        metrics: ReminderMetrics,
        secrets: SecretBox,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.settings = settings
        self.http = http
        self.metrics = metrics
        self.owner = settings.replica_id
        self.source = f"/homework/{settings.service_name}"
        self.batch_size = settings.webhook_concurrency * 5
        self.lease = timedelta(seconds=settings.webhook_timeout_s * 3 + 5)

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based): exponential, capped."""
        s = self.settings
        return float(min(s.webhook_max_delay_s, s.webhook_base_delay_s * 2 ** (attempt - 1)))

    async def run_once(self) -> int:
        """Send one batch of due deliveries; returns how many were attempted."""
        batch = await self._claim()
        if not batch:
            return 0
        hooks = await self.store.webhooks_of(sorted({b["practice_id"] for b in batch}))
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def one(delivery: Doc) -> None:
            async with gate:
                await self._send(delivery, hooks.get(delivery["practice_id"]))

        await asyncio.gather(*(one(d) for d in batch))
        return len(batch)

    async def _claim(self) -> list[Doc]:
        now = datetime.now(UTC)
        lease = Lease(self.owner, now + self.lease, uuid.uuid4().hex)
        return await self.store.claim_deliveries(lease, now, self.batch_size)

    async def _send(self, delivery: Doc, hook: Doc | None) -> None:
        attempt = int(delivery.get("attempts", 0)) + 1
        if hook is None:
            await self._failed(delivery, attempt, "not_configured", "the practice has no webhook", final=True)
            return
        try:
            secret = self.secrets.reveal(hook)
        except SecretUnreadable as exc:
            log.error("%s: put its key back in WEBHOOK_SECRET_KEYS", exc)
            await self._failed(delivery, attempt, "secret_unreadable", str(exc))
            return
        body = cloudevent_body(delivery, self.source)
        headers = {
            "Content-Type": "application/cloudevents+json",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            "X-Homework-Event-Id": delivery["_id"],
            "User-Agent": "homework-reminder-webhook/1",
        }
        try:
            response = await self.http.post(hook["url"], content=body, headers=headers)
        except AddressRefused as exc:
            log.warning("webhook delivery %s refused: %s", delivery["_id"], exc)
            await self._failed(delivery, attempt, "blocked_address", f"refused: {exc}", final=True)
            return
        except httpx.HTTPError as exc:
            await self._failed(delivery, attempt, "connection", f"{type(exc).__name__}: {exc}")
            return
        if 200 <= response.status_code < 300:
            now = datetime.now(UTC)
            delivered = {"state": "delivered", "attempts": attempt, "delivered_at": now, "finished_at": now}
            await self.store.delivery_attempted(delivery, delivered)
            self.metrics.webhook_deliveries.inc()
            return
        await self._failed(delivery, attempt, f"http_{response.status_code // 100}xx", f"HTTP {response.status_code}")

    async def _failed(self, delivery: Doc, attempt: int, reason: str, error: str, *, final: bool = False) -> None:
        self.metrics.webhook_failures.labels(reason).inc()
        now = datetime.now(UTC)
        give_up = final or attempt >= self.settings.webhook_max_attempts
        change: dict[str, Any] = {"attempts": attempt, "last_error": error[:500]}
        if give_up:
            change |= {"state": "failed", "finished_at": now}
            log.warning("webhook delivery %s failed for good: %s", delivery["_id"], error[:200])
        else:
            change |= {"state": "pending", "next_attempt_at": now + timedelta(seconds=self.delay(attempt))}
        await self.store.delivery_attempted(delivery, change)
