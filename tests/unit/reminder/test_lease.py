"""``LEASE_TTL_S`` is real seconds: a sped-up clock (demos, tests) does not shorten how long a claim is held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from homework_reminder.config import ReminderSettings
from homework_reminder.firing import Firing
from homework_shared.clock import ScaledClock, SystemClock


def firing(clock: Any, lease_ttl_s: float) -> Firing:
    settings = ReminderSettings(kafka_bootstrap_servers="k:9092", mongodb_uri="mongodb://m", lease_ttl_s=lease_ttl_s)
    unused: Any = None
    return Firing(unused, unused, unused, unused, clock, settings)


def test_a_lease_lasts_lease_ttl_s_real_seconds_at_any_clock_speed() -> None:
    origin = datetime(2026, 3, 1, tzinfo=UTC)
    assert firing(SystemClock(), 30).lease == timedelta(seconds=30)
    # 720 platform seconds pass per real second: 10 real seconds are 2 platform hours.
    assert firing(ScaledClock(720, origin, origin), 10).lease == timedelta(hours=2)
