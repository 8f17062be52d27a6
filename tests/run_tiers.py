"""``make test``'s runner: the test tiers in parallel pytest sessions, each on a stack of its own.

The end-to-end tests spend most of their time waiting on a platform clock, not on the CPU, so
running them beside the unit, contract and integration tests takes the wall time from the sum of
the tiers to about the longest one. Each session starts its own Kafka broker and MongoDB server
(``tests/infra.py``) unless ``KAFKA_BOOTSTRAP_SERVERS``/``MONGODB_URI`` point at shared ones, and
the tests isolate by unique topic, database and group names either way.

Each session's output goes to a log file, printed whole when it ends, so sessions never
interleave; the last line sums them up. Extra arguments are passed to every session.
``TEST_TIERS_SERIAL=1`` runs the sessions one after another instead.
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
# The slowest end-to-end files in one session, the other end-to-end files in a second, and every
# tier that needs no platform clock in a third: about equal wall times.
SLOW_E2E = ["tests/e2e/test_openapi_fuzz.py", "tests/e2e/test_dst.py", "tests/e2e/test_export.py"]
SESSIONS: dict[str, list[str]] = {
    "e2e (fuzz, DST, export)": SLOW_E2E,
    "e2e (the rest, faults)": ["tests/e2e", *(f"--ignore={path}" for path in SLOW_E2E)],
    "unit, contracts, integration": ["tests/unit", "tests/contracts", "tests/integration"],
}
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def main(extra: list[str]) -> int:
    started = time.monotonic()
    serial = os.environ.get("TEST_TIERS_SERIAL") == "1"
    totals: dict[str, int] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="homework-tiers-") as tmp:
        running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for index, (name, args) in enumerate(SESSIONS.items()):
            log = Path(tmp) / f"session-{index}.log"
            command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, *extra]
            print(f"[tests] {name}: {' '.join(command[1:])}", flush=True)
            with log.open("wb") as out:
                proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            running.append((name, proc, log))
            if serial:
                proc.wait()
        for name, proc, log in running:
            code = proc.wait()
            text = log.read_text(errors="replace")
            print(f"\n[tests] ===== {name}: exit {code} =====\n{text}", flush=True)
            summary = next((line for line in reversed(text.splitlines()) if line.startswith("=")), "")
            for number, word in COUNTS.findall(summary):
                key = "errors" if word.startswith("error") else word
                totals[key] = totals.get(key, 0) + int(number)
            if code != 0:
                failed.append(f"{name} (exit {code})")
    minutes = (time.monotonic() - started) / 60
    print(f"\n[tests] {len(SESSIONS)} sessions in {minutes:.1f} min; failed: {', '.join(failed) or 'none'}")
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
