"""The three services as separate operating-system processes: used by `make run`, the demo and the e2e tests.

Each service is ``python -m homework_<name>`` with its configuration in environment variables;
a :class:`ServiceProcess` can be started, waited on until ready, stopped with SIGTERM (graceful)
or killed with SIGKILL (crash), and started again with the same configuration.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVICES: dict[str, tuple[str, int]] = {
    "assignment": ("homework_assignment", 8001),
    "reminder": ("homework_reminder", 8002),
    "insights": ("homework_insights", 8003),
}
DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - development mode only


@dataclass
class ServiceProcess:
    """One service process and how to (re)start it."""

    name: str
    port: int
    env: dict[str, str]
    logfile: Path
    python: str = sys.executable
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def module(self) -> str:
        return SERVICES[self.name][0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.logfile, "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [self.python, "-m", self.module], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:  # noqa: S310
            return bool(resp.status == 200)
        return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode if self.proc else None}; see {self.logfile}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s; see {self.logfile}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait for a graceful exit (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def service_env(infra_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment every service of one local deployment shares."""
    env = {"ENVIRONMENT": "development", "JWT_SECRET": DEV_JWT_SECRET, "LOG_FORMAT": "json", **infra_env}
    env.update(extra)
    return env


def launch(
    names: list[str],
    env: dict[str, str],
    logs: Path,
    ports: dict[str, int] | None = None,
    per_service: dict[str, dict[str, str]] | None = None,
) -> list[ServiceProcess]:
    """Start the named services and wait until each is ready; stops them all if one fails."""
    procs = []
    for name in names:
        port = (ports or {}).get(name, SERVICES[name][1])
        procs.append(ServiceProcess(name, port, {**env, **(per_service or {}).get(name, {})}, logs / f"{name}.log"))
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready()
    except BaseException:
        for p in procs:
            p.stop(timeout=10)
        raise
    return procs
