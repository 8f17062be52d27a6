"""Settings of the insights service (environment variables only)."""

from __future__ import annotations

from pydantic import Field

from homework_shared.settings import ConsumerSettings


class InsightsSettings(ConsumerSettings):
    """The shared settings plus what the insights need: the reminder-effect window and the flag minimums."""

    service_name: str = "insights"
    mongodb_database: str = "homework_insights"
    http_port: int = 8003
    # A completion counts as "after a reminder" when it comes at most this many hours after one.
    reminder_effect_hours: float = Field(default=2.0, gt=0, le=168)
    # Records per poll; the offsets are committed once per batch (at most 1,000 here).
    consumer_batch_size: int = Field(default=100, ge=1, le=1000)
