"""`make run`: the whole system on one machine, stopped cleanly with Ctrl-C.

Starts the local Kafka broker and MongoDB server (unless ``KAFKA_BOOTSTRAP_SERVERS`` and
``MONGODB_URI`` point at existing ones; its first line says which MongoDB-protocol server runs),
then every service as its own process, prints
their URLs and waits. Ctrl-C (or SIGTERM) stops the services gracefully, then the stack.

Time compression for the demo: ``make run CLOCK_SPEED=720`` runs platform time 720 times
faster (one real second is twelve minutes), from the current instant.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devstack
from processes import SERVICES, ServiceProcess, launch, service_env


def built(module: str) -> bool:
    """A service counts as built once its package has a ``__main__`` module."""
    return importlib.util.find_spec(f"{module}.__main__") is not None


def write_run_json(path: Path, procs: list[ServiceProcess], infra_env: dict[str, str], clock: dict[str, str]) -> None:
    """Where the running system is and which clock it keeps: read by `make demo`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "urls": {p.name: p.url for p in procs},
        "kafka_bootstrap": infra_env["KAFKA_BOOTSTRAP_SERVERS"],
        "topic_prefix": os.environ.get("TOPIC_PREFIX", "homework"),
        "clock_speed": float(clock.get("CLOCK_SPEED", 1)),
        "clock_origin": clock.get("CLOCK_ORIGIN"),
        "clock_real_origin": clock.get("CLOCK_REAL_ORIGIN"),
        "pid": os.getpid(),
    }
    path.write_text(json.dumps(info, indent=2))


class Stop:
    """Set by Ctrl-C or SIGTERM: the run loop then stops the services and the stack."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.requested = True


def start_infrastructure(stack_dir: Path, own_stack: bool) -> tuple[dict[str, str], str] | None:
    """Kafka and MongoDB: the local stack, or the existing ones of the environment; their env and a label."""
    if not own_stack:
        devstack.log("MongoDB-protocol server: the existing one of MONGODB_URI (no local stack started)")
        return {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}, ""
    try:
        stack = devstack.up(stack_dir)
    except devstack.DevstackError as exc:
        devstack.log(f"error: {exc}")
        return None
    return stack.env(), f" (SecantusDB {stack.mongo_server} server)"


def clock_env() -> dict[str, str]:
    """``CLOCK_SPEED`` (with its origins, from now) for the services when time is compressed; else nothing."""
    speed = os.environ.get("CLOCK_SPEED", "1")
    if float(speed) == 1.0:
        return {}
    now = datetime.now(UTC).isoformat()
    return {"CLOCK_SPEED": speed, "CLOCK_ORIGIN": os.environ.get("CLOCK_ORIGIN", now), "CLOCK_REAL_ORIGIN": now}


def start_services(infra_env: dict[str, str], clock: dict[str, str], logs: Path) -> list[ServiceProcess]:
    """Every built service as its own process, on its port (``<NAME>_HTTP_PORT`` or the default)."""
    names = [name for name, (module, _) in SERVICES.items() if built(module)]
    ports = {name: int(os.environ.get(f"{name.upper()}_HTTP_PORT", port)) for name, (_, port) in SERVICES.items()}
    # The data export's fan-out follows the other services to the ports they run on here.
    fan_out = {"assignment": {f"{n.upper()}_URL": f"http://127.0.0.1:{ports[n]}" for n in ("reminder", "insights")}}
    return launch(names, service_env(infra_env, **clock), logs, ports, fan_out)


def print_banner(
    infra_env: dict[str, str], mongo_server: str, procs: list[ServiceProcess], clock: dict[str, str], logs: Path
) -> None:
    """Where everything runs, and how to get a token."""
    print("\nThe homework platform is running:")
    print(f"  Kafka    {infra_env['KAFKA_BOOTSTRAP_SERVERS']}")
    print(f"  MongoDB  {infra_env['MONGODB_URI']}{mongo_server}")
    for p in procs:
        print(f"  {p.name:<10} {p.url}  (API docs: /docs, health: /healthz /readyz, metrics: /metrics)")
    if clock:
        print(f"  clock    {clock['CLOCK_SPEED']}x real time from {clock['CLOCK_ORIGIN']}")
    print(f"  logs     {logs}")
    print("A development token: make token ROLE=therapist SUB=therapist-1 PRACTICE=practice-1")
    print("Press Ctrl-C to stop.\n", flush=True)


def watch(procs: list[ServiceProcess], stop: Stop) -> int:
    """Wait for Ctrl-C (0), or for a service to exit on its own (1)."""
    while not stop.requested:
        for p in procs:
            if not p.alive():
                devstack.log(f"{p.name} exited; see {p.logfile}")
                return 1
        time.sleep(0.5)
    return 0


def shut_down(procs: list[ServiceProcess], stack_dir: Path, own_stack: bool) -> None:
    """Stop the services gracefully (all signalled first, then each awaited), then the stack."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    for p in procs:
        p.stop(timeout=30)
    (stack_dir.resolve() / "run.json").unlink(missing_ok=True)
    if own_stack:
        devstack.down(stack_dir)
    devstack.log("stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=".devstack", type=Path)
    args = parser.parse_args()
    own_stack = not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"))
    stop = Stop()
    infrastructure = start_infrastructure(args.dir, own_stack)
    if infrastructure is None:
        return 1
    infra_env, mongo_server = infrastructure
    clock = clock_env()
    logs = args.dir.resolve() / "logs"
    procs: list[ServiceProcess] = []
    try:
        try:
            procs = start_services(infra_env, clock, logs)
        except RuntimeError as exc:
            devstack.log(f"error: {exc}")
            return 1
        write_run_json(args.dir.resolve() / "run.json", procs, infra_env, clock)
        print_banner(infra_env, mongo_server, procs, clock, logs)
        return watch(procs, stop)
    finally:
        shut_down(procs, args.dir, own_stack)


if __name__ == "__main__":
    sys.exit(main())
