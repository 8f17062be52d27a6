"""`make run`: the whole system on one machine, stopped cleanly with Ctrl-C.

Starts the local Kafka broker and MongoDB server (unless ``KAFKA_BOOTSTRAP_SERVERS`` and
``MONGODB_URI`` point at existing ones), then every service as its own process, prints
their URLs and waits. Ctrl-C (or SIGTERM) stops the services gracefully, then the stack.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devstack

# name, module run with `python -m`, default HTTP port
SERVICES = [
    ("assignment", "homework_assignment", 8001),
    ("reminder", "homework_reminder", 8002),
    ("insights", "homework_insights", 8003),
]
DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - development mode only


def built(module: str) -> bool:
    """A service counts as built once its package has a ``__main__`` module."""
    return importlib.util.find_spec(f"{module}.__main__") is not None


def wait_ready(url: str, pid: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid.poll() is not None:
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310
            if resp.status == 200:
                return True
        time.sleep(0.3)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=".devstack", type=Path)
    args = parser.parse_args()
    own_stack = not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"))
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if own_stack:
        try:
            stack = devstack.up(args.dir)
        except devstack.DevstackError as exc:
            devstack.log(f"error: {exc}")
            return 1
        infra_env = stack.env()
    else:
        infra_env = {
            "KAFKA_BOOTSTRAP_SERVERS": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            "MONGODB_URI": os.environ["MONGODB_URI"],
        }
    logs = args.dir.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes], int]] = []
    try:
        for name, module, default_port in SERVICES:
            if not built(module):
                continue
            port = int(os.environ.get(f"{name.upper()}_HTTP_PORT", default_port))
            env = {
                **os.environ,
                **infra_env,
                "HTTP_PORT": str(port),
                "LOG_FORMAT": os.environ.get("LOG_FORMAT", "json"),
            }
            env.setdefault("ENVIRONMENT", "development")
            env.setdefault("JWT_SECRET", DEV_JWT_SECRET)
            logfile = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                env=env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            logfile.close()
            procs.append((name, proc, port))
        for name, proc, port in procs:
            if not wait_ready(f"http://127.0.0.1:{port}/readyz", proc):
                devstack.log(f"{name} did not become ready; see {logs / (name + '.log')}")
                return 1
        print("\nThe homework platform is running:")
        print(f"  Kafka    {infra_env['KAFKA_BOOTSTRAP_SERVERS']}")
        print(f"  MongoDB  {infra_env['MONGODB_URI']}")
        for name, _, port in procs:
            print(
                f"  {name:<10} http://127.0.0.1:{port}  (API docs: /docs, health: /healthz /readyz, metrics: /metrics)"
            )
        print(f"  logs     {logs}")
        print("A development token: make token ROLE=therapist SUB=therapist-1 PRACTICE=practice-1")
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stop:
            for name, proc, _ in procs:
                if proc.poll() is not None:
                    devstack.log(f"{name} exited with {proc.returncode}; see {logs / (name + '.log')}")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for _name, proc, _ in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for name, proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                devstack.log(f"{name} did not stop in 30s; killing it")
                proc.kill()
        if own_stack:
            devstack.down(args.dir)
        devstack.log("stopped")


if __name__ == "__main__":
    sys.exit(main())
