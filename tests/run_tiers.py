"""``make test``'s runner: the tiers in two phases of pytest sessions, each session on a stack of its own.

Phase 1 runs two sessions side by side: the end-to-end scenarios (they spend most of their time
waiting on a platform clock, not on the CPU) and the unit, contract and integration tests. Phase 2
then runs alone what measures how the platform behaves under a fault or times how fast it fails:
the fault tier (``tests/e2e/faults``) and the integration files that start service processes or
stop a server (``SOLO``). An earlier runner ran the fault tier beside the heavy end-to-end session;
with one more test session on the machine, its fault and process tests timed out. Never more than
two sessions run at once, and the fault tier never beside the end-to-end scenarios.

The local servers are built or found once before any session starts (a fresh clone builds the
MongoDB server for ~8.5 min; two sessions would otherwise both build it). Each session's output goes
to a log file, printed whole when the session ends, so logs never interleave; the last lines give
each session's wall time and the summed counts. Extra arguments go to every session.
``TEST_TIERS_SERIAL=1`` runs the sessions one after another.

Measured 2026-12-02, phase 1's two sessions side by side on the shared 2-core machine (load average
15-27 from other developers' tests): the e2e session 138 passed in 40 min 17 s (the duplicate-delivery,
demo and DST scenarios 126-189 s each, the fuzz's assignment API about 7 min in all), the unit,
contract and integration session 1041 passed in 35 min; its two bounded-input process tests timed
out waiting 60 s for their service to start, so they moved to ``SOLO``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAULTS = "tests/e2e/faults"
SOLO = [
    "tests/integration/assignment/test_outages.py",
    "tests/integration/assignment/test_process.py",
    "tests/integration/assignment/test_bounded_input_process.py",
    "tests/integration/reminder/test_process.py",
    "tests/integration/insights/test_process.py",
    "tests/integration/deploy/test_orphaned_transactions.py",
    "tests/integration/deploy/test_durable_commits.py",
    "tests/integration/deploy/test_install_service.py",
]
"""Integration files that start service processes or stop a server, and time how fast things fail."""

PHASES: list[dict[str, list[str]]] = [
    {
        "e2e": ["tests/e2e", f"--ignore={FAULTS}"],
        "unit, contracts, integration": [
            "tests/unit",
            "tests/contracts",
            "tests/integration",
            *(f"--ignore={path}" for path in SOLO),
        ],
    },
    {"faults and process tests": [FAULTS, *SOLO]},
]
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def prepare() -> None:
    """Build or find the local servers once, in this process, before the sessions start."""
    from tests.infra import prepare_local_stack

    prepare_local_stack()


def run_phase(sessions: dict[str, list[str]], extra: list[str], logs: Path, serial: bool) -> list[dict[str, object]]:
    """Start the phase's sessions (one after another if ``serial``), wait for all; what each gave."""
    running = []
    for name, args in sessions.items():
        log = logs / f"{re.sub(r'[^a-z]+', '-', name)}.log"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, *extra]
        print(f"[tests] {name}: pytest {' '.join(command[4:])}", flush=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        running.append((name, proc, log, time.monotonic()))
        if serial:
            proc.wait()
    results = []
    for name, proc, log, started in running:
        code = proc.wait()
        text = log.read_text(errors="replace")
        print(f"\n[tests] ===== {name}: exit {code} =====\n{text}", flush=True)
        summary = next((line for line in reversed(text.splitlines()) if COUNTS.search(line) and " in " in line), "")
        results.append({"name": name, "code": code, "summary": summary, "seconds": time.monotonic() - started})
    return results


def main(extra: list[str]) -> int:
    started = time.monotonic()
    serial = os.environ.get("TEST_TIERS_SERIAL") == "1"
    prepare()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="homework-tiers-") as tmp:
        for number, sessions in enumerate(PHASES, 1):
            print(f"[tests] phase {number} of {len(PHASES)}: {', '.join(sessions)}", flush=True)
            results += run_phase(sessions, extra, Path(tmp), serial)
    totals: dict[str, int] = {}
    for result in results:
        for count, word in COUNTS.findall(str(result["summary"])):
            key = "errors" if word.startswith("error") else word
            totals[key] = totals.get(key, 0) + int(count)
    print()
    for result in results:
        print(f"[tests] {result['name']}: exit {result['code']} in {float(str(result['seconds'])) / 60:.1f} min")
    failed = [str(r["name"]) for r in results if r["code"] != 0]
    minutes = (time.monotonic() - started) / 60
    print(f"[tests] {len(results)} sessions in {minutes:.1f} min; failed: {', '.join(failed) or 'none'}")
    failures = totals.get("failed", 0) + totals.get("errors", 0)
    if failed and failures == 0:
        failures = len(failed)  # a session that crashed or collected nothing still fails the run
    line = f"{totals.get('passed', 0)} passed, {failures} failed"
    if totals.get("skipped"):
        line += f", {totals['skipped']} skipped"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
