"""The reminder service's settings: the shared ones plus the horizon, the firing loop and webhook delivery."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Self

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, model_validator

from homework_shared.settings import ConsumerSettings

DEV_WEBHOOK_SECRET_KEY = "ZGV2LW9ubHktd2ViaG9vay1rZXktY2hhbmdlLW1lLTA="  # noqa: S105 - public, refused in production
"""The Fernet key development and tests use when ``WEBHOOK_SECRET_KEYS`` is unset; refused elsewhere."""


def _replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ReminderSettings(ConsumerSettings):
    """Read from environment variables (``HORIZON_DAYS``, ``LEASE_TTL_S``, ...)."""

    service_name: str = "reminder"
    mongodb_database: str = "homework_reminder"
    http_port: int = 8002

    # The Kafka consumer group reading the assignment stream (also names the dead-letter topic).
    consumer_group: str = Field(default="reminder", min_length=1, max_length=200)
    # Events about an assignment not created here yet are held this many real seconds at most, waiting
    # for it (docs/reminder.md); default 7 days, the topics' retention.
    held_event_ttl_s: float = Field(default=7 * 24 * 3600.0, ge=60, le=366 * 24 * 3600.0)

    # Occurrences and reminders are stored this far ahead of now, extended every ``extend_every_s``.
    horizon_days: float = Field(default=14.0, gt=0, le=366)
    extend_every_s: float = Field(default=3600.0, gt=0)
    extend_batch_size: int = Field(default=100, ge=1, le=10_000)

    # Firing: due reminders are claimed in batches with a lease of ``lease_ttl_s`` real seconds (a sped-up
    # clock does not shorten it: a dead replica's claims are taken over that long after it took them).
    replica_id: str = Field(default_factory=_replica_id, min_length=1, max_length=200)
    fire_batch_size: int = Field(default=250, ge=1, le=5_000)
    # Batches fired at once by one replica: claims stay one at a time, each batch then fires in its own
    # transaction while the next is claimed (docs/benchmarks.md, reminder profile).
    fire_concurrency: int = Field(default=2, ge=1, le=16)
    lease_ttl_s: float = Field(default=30.0, gt=0)
    # Longest real-time pause of the loops when nothing is due (they wake earlier for a due reminder).
    poll_interval_s: float = Field(default=0.2, gt=0, le=60)

    # An occurrence is missed once its window has been closed this long without a completion or skip,
    # so a completion made just before the close has time to arrive.
    missed_grace_s: float = Field(default=60.0, ge=0)
    missed_batch_size: int = Field(default=200, ge=1, le=5_000)
    pending_gauge_every_s: float = Field(default=10.0, gt=0)

    # Webhook delivery (real time: it is about the receiver's recovery, not the platform's clock).
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_base_delay_s: float = Field(default=1.0, gt=0)
    webhook_max_delay_s: float = Field(default=300.0, gt=0)
    webhook_concurrency: int = Field(default=10, ge=1, le=200)
    # Lifts the rule that a webhook URL must resolve to public unicast addresses, for a receiver on the
    # developer's machine (127.0.0.1). Refused unless ENVIRONMENT=development.
    webhook_allow_private_networks: bool = False
    # Fernet keys (comma-separated, urlsafe base64 of 32 bytes) that encrypt practices' webhook secrets at
    # rest: the first encrypts, all decrypt (rotation: put the new key first). Required outside development
    # and test, where a public development key is used when unset.
    webhook_secret_keys: SecretStr | None = None

    @model_validator(mode="after")
    def _webhook_rules(self) -> Self:
        if self.webhook_allow_private_networks and self.environment != "development":
            raise ValueError(
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS: private network webhooks are allowed only with ENVIRONMENT=development"
            )
        keys = self.webhook_secret_key_list()
        if not keys:
            if self.environment != "development":
                raise ValueError("WEBHOOK_SECRET_KEYS: set at least one Fernet key outside development")
            return self
        if self.environment != "development" and DEV_WEBHOOK_SECRET_KEY in keys:
            raise ValueError("WEBHOOK_SECRET_KEYS: the development key is refused outside development")
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    f"WEBHOOK_SECRET_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return self

    def webhook_secret_key_list(self) -> list[str]:
        """The configured Fernet keys, the encrypting one first (empty when unset)."""
        raw = self.webhook_secret_keys.get_secret_value() if self.webhook_secret_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]
