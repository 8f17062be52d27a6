"""The platform's clock: real time, or real time sped up for demos and tests.

Every service reads "now" from a :class:`Clock`, never from ``datetime.now`` directly, so
that a demo can play two weeks of homework in two minutes: with speed ``s``, platform
time is ``origin + (real_now - real_origin) * s``. All services of one deployment get the
same ``CLOCK_SPEED``, ``CLOCK_ORIGIN`` and ``CLOCK_REAL_ORIGIN`` and so agree on the time.
Tests use :class:`ManualClock` to step time by hand.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol

from homework_shared.settings import ServiceSettings


class Clock(Protocol):
    speed: float
    """Platform seconds per real second while the clock runs by itself (1 for real time)."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of platform time."""
        ...


class SystemClock:
    """Real time, UTC."""

    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Real time sped up ``speed`` times from ``origin`` (platform) = ``real_origin`` (real)."""

    def __init__(self, speed: float, origin: datetime, real_origin: datetime) -> None:
        self.speed = speed
        self.origin = origin.astimezone(UTC)
        self.real_origin = real_origin.astimezone(UTC)

    def now(self) -> datetime:
        return self.origin + (datetime.now(UTC) - self.real_origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds / self.speed))


class ManualClock:
    """A clock that moves only when told to: for tests."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, instant: datetime) -> None:
        self._now = instant.astimezone(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(0.01, max(0.0, seconds)))


def clock_from(settings: ServiceSettings) -> Clock:
    """The clock the settings ask for."""
    if settings.clock_speed == 1.0 and settings.clock_origin is None:
        return SystemClock()
    assert settings.clock_origin is not None
    return ScaledClock(settings.clock_speed, settings.clock_origin, settings.clock_real_origin or datetime.now(UTC))
