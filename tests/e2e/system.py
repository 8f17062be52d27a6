"""The whole platform for end-to-end tests: the three services as separate processes on real servers.

Each deployment gets its own topic prefix and databases, so deployments never see each
other's data on shared servers; ``Deployment`` can stop (SIGTERM), kill (SIGKILL) and
restart any service with the same configuration.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homework_shared.clock import Clock, ScaledClock, SystemClock
from homework_shared.events import Topics
from tests.conftest import unique
from tests.infra import ROOT, Infra

sys.path.insert(0, str(ROOT / "deploy" / "local"))

import devstack
from demo import System
from processes import SERVICES, ServiceProcess, launch, service_env


@dataclass
class Deployment:
    """One running platform: its processes, its names on the servers, and the clock it keeps."""

    infra: Infra
    prefix: str
    processes: dict[str, ServiceProcess]
    clock: Clock
    logs: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def system(self) -> System:
        p = self.processes
        return System(
            p["assignment"].url,
            p["reminder"].url,
            p["insights"].url,
            self.infra.kafka_bootstrap,
            self.prefix,
            self.clock,
        )

    def database(self, service: str) -> str:
        return f"{self.prefix}_{service}"

    @property
    def system_topics(self) -> Topics:
        """The deployment's topic names (its own prefix)."""
        return Topics(prefix=self.prefix)

    def restart(self, name: str, *, kill: bool = False, timeout: float = 60) -> None:
        """Stop (or SIGKILL) one service and start it again with the same configuration."""
        proc = self.processes[name]
        if kill:
            proc.kill()
        else:
            proc.stop()
        proc.start()
        proc.wait_ready(timeout)

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop(timeout=30)


def deployment_env(infra: Infra, prefix: str, clock: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    env = service_env(
        {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "MONGODB_URI": infra.mongodb_uri},
        TOPIC_PREFIX=prefix,
        TOPIC_PARTITIONS="3",
        **(clock or {}),
        **extra,
    )
    return env


@contextlib.contextmanager
def deploy(
    infra: Infra,
    logs: Path,
    *,
    speed: float = 1.0,
    origin: datetime | None = None,
    services: list[str] | None = None,
    service_env: dict[str, dict[str, str]] | None = None,
    **extra: str,
) -> Iterator[Deployment]:
    """Start the platform (all services unless ``services`` says which) with a clock ``speed`` times real time.

    ``origin`` is the platform instant at which the clock starts (default: now), e.g. just
    before a DST change. Extra keyword arguments become environment variables of every service;
    ``service_env`` adds variables to one service each (e.g. its own ``MONGODB_URI``).
    """
    prefix = unique("e2e").replace("-", "")
    real_origin = datetime.now(UTC)
    clock_env: dict[str, str] = {}
    clock: Clock = SystemClock()
    if speed != 1.0 or origin is not None:
        start = origin or real_origin
        clock_env = {
            "CLOCK_SPEED": str(speed),
            "CLOCK_ORIGIN": start.isoformat(),
            "CLOCK_REAL_ORIGIN": real_origin.isoformat(),
        }
        clock = ScaledClock(speed, start, real_origin)
    env = deployment_env(infra, prefix, clock_env, **extra)
    names = services or list(SERVICES)
    ports = {name: devstack.free_port() for name in names}
    per_service = {
        name: {"MONGODB_DATABASE": f"{prefix}_{name}", **(service_env or {}).get(name, {})} for name in names
    }
    # The assignment service gathers a client's export from the others' ports of this deployment.
    per_service.setdefault("assignment", {}).update(
        {f"{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in ("reminder", "insights") if name in ports}
    )
    procs = launch(names, env, logs, ports, per_service)
    deployment = Deployment(infra, prefix, {p.name: p for p in procs}, clock, logs, env)
    try:
        yield deployment
    finally:
        deployment.stop()


def wait(condition: Any, timeout: float, interval: float = 0.25, message: str = "condition") -> Any:
    """Poll a synchronous ``condition`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last: {last!r}")
