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
        mongo_server = f" (SecantusDB {stack.mongo_server} server)"
    else:
        devstack.log("MongoDB-protocol server: the existing one of MONGODB_URI (no local stack started)")
        infra_env = {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}
        mongo_server = ""
    extra = {}
    speed = os.environ.get("CLOCK_SPEED", "1")
    if float(speed) != 1.0:
        now = datetime.now(UTC).isoformat()
        extra = {"CLOCK_SPEED": speed, "CLOCK_ORIGIN": os.environ.get("CLOCK_ORIGIN", now), "CLOCK_REAL_ORIGIN": now}
    logs = args.dir.resolve() / "logs"
    names = [name for name, (module, _) in SERVICES.items() if built(module)]
    ports = {name: int(os.environ.get(f"{name.upper()}_HTTP_PORT", port)) for name, (_, port) in SERVICES.items()}
    procs: list[ServiceProcess] = []
    try:
        try:
            # The data export's fan-out follows the other services to the ports they run on here.
            fan_out = {
                "assignment": {f"{n.upper()}_URL": f"http://127.0.0.1:{ports[n]}" for n in ("reminder", "insights")}
            }
            procs = launch(names, service_env(infra_env, **extra), logs, ports, fan_out)
        except RuntimeError as exc:
            devstack.log(f"error: {exc}")
            return 1
        write_run_json(args.dir.resolve() / "run.json", procs, infra_env, extra)
        print("\nThe homework platform is running:")
        print(f"  Kafka    {infra_env['KAFKA_BOOTSTRAP_SERVERS']}")
        print(f"  MongoDB  {infra_env['MONGODB_URI']}{mongo_server}")
        for p in procs:
            print(f"  {p.name:<10} {p.url}  (API docs: /docs, health: /healthz /readyz, metrics: /metrics)")
        if extra:
            print(f"  clock    {speed}x real time from {extra['CLOCK_ORIGIN']}")
        print(f"  logs     {logs}")
        print("A development token: make token ROLE=therapist SUB=therapist-1 PRACTICE=practice-1")
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stop:
            for p in procs:
                if not p.alive():
                    devstack.log(f"{p.name} exited; see {p.logfile}")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in procs:
            p.stop(timeout=30)
        (args.dir.resolve() / "run.json").unlink(missing_ok=True)
        if own_stack:
            devstack.down(args.dir)
        devstack.log("stopped")


if __name__ == "__main__":
    sys.exit(main())
