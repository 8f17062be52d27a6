"""`make bench`: run every benchmark suite against one real stack and write docs/benchmarks.md.

Each suite is a module ``tests.bench.bench_<name>`` with ``async def main(infra) -> list[Figure]``;
it can also run alone: ``python -m tests.bench.run_all <name>``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.bench.common import RESULTS, Figure, load_all, save
from tests.infra import Infra, devstack, session_infra

DOC = Path("docs/benchmarks.md")
PROFILES = Path("tests/bench/profiles.md")
"""Where each service's time goes (py-spy), and the next steps: appended to the report as written."""


def suites() -> list[str]:
    import tests.bench as pkg

    return sorted(
        m.name.removeprefix("bench_") for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("bench_")
    )


def render(results: dict[str, list[Figure]]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({platform.machine()}, "
        f"Python {platform.python_version()}, local stack: Apache Kafka 4.1 from Maven jars, SecantusDB: "
        "each suite names its server).",
        "Every figure is read against a baseline measured in the same run; the ratio is figure / baseline.",
        "The machine is shared (2 cores), so compare ratios, not absolute values, between runs.",
        "",
    ]
    for suite, figures in results.items():
        lines += [f"## {suite}", ""]
        meta = load_meta(suite)
        if meta:
            lines += [
                f"Measured {meta['date']} on {meta['server']}; machine load (`uptime`, 1-minute average on "
                f"{meta['cores']} cores) {meta['load_before']} before the suite, {meta['load_after']} after.",
                "",
            ]
        lines += [
            "| figure | value | baseline (same run) | ratio | goal | reproduce |",
            "|---|---|---|---|---|---|",
        ]
        for f in figures:
            base = f"{f.baseline_name}: {f.baseline_value:,.4g} {f.unit}" if f.baseline_value is not None else "-"
            ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
            lines.append(f"| {f.name} | {f.value:,.4g} {f.unit} | {base} | {ratio} | {f.goal} | `{f.command}` |")
        notes = [f"- {f.name}: {f.notes}" for f in figures if f.notes]
        lines += ["", *notes, ""] if notes else [""]
        if suite == "system" and Path("docs/benchmarks-latency.svg").exists():
            lines += [
                "Latency percentiles, end to end against the aiokafka baseline (log scale):",
                "",
                "![latency percentiles](benchmarks-latency.svg)",
                "",
            ]
    if PROFILES.exists():  # written by hand from py-spy profiles: kept across runs
        lines += [PROFILES.read_text().rstrip(), ""]
    return "\n".join(lines)


async def drop_bench_databases(uri: str) -> None:
    """Drop what a suite left behind (``bench-*`` databases), so it does not weigh on the next suite's figures.

    The local server sweeps every TTL index of every database in the background: a suite's
    100,000-event histories left in place slowed the suites run after it.
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        for name in await client.list_database_names():
            if name.startswith(("bench-", "bench_")):
                await client.drop_database(name)
    finally:
        await client.close()


def load_average() -> str:
    """The 1-minute load average, as ``uptime`` shows it (the machine is shared: it says how busy it was)."""
    return f"{os.getloadavg()[0]:.2f}"


def server_of(infra: Infra) -> str:
    """Which MongoDB-protocol server the suite ran on."""
    kind = infra.stack.mongo_server if infra.stack is not None else ""
    if kind == "rust":
        return f"SecantusDB's Rust server (secantusd-rs {devstack.RUST_VERSION})"
    if kind == "python":
        return "SecantusDB's Python server"
    return f"the servers of {infra.origin}"


def save_meta(suite: str, meta: dict[str, str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{suite}.meta").write_text(json.dumps(meta, indent=2))


def load_meta(suite: str) -> dict[str, str]:
    path = RESULTS / f"{suite}.meta"
    return dict(json.loads(path.read_text())) if path.exists() else {}


async def run(selected: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="homework-bench-") as tmp, session_infra(Path(tmp)) as infra:
        for name in selected:
            module = importlib.import_module(f"tests.bench.bench_{name}")
            started = time.monotonic()
            print(f"== {name}", flush=True)
            before = load_average()
            figures: list[Figure] = await module.main(infra)
            save(name, figures)
            save_meta(
                name,
                {
                    "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                    "server": server_of(infra),
                    "cores": str(os.cpu_count()),
                    "load_before": before,
                    "load_after": load_average(),
                },
            )
            await drop_bench_databases(infra.mongodb_uri)
            for f in figures:
                ratio = f" (ratio {f.ratio:.2f} vs {f.baseline_name})" if f.ratio is not None else ""
                print(f"   {f.name}: {f.value:,.4g} {f.unit}{ratio}", flush=True)
            print(f"   ({time.monotonic() - started:.0f}s)", flush=True)


def main() -> int:
    selected = sys.argv[1:] or suites()
    asyncio.run(run(selected))
    DOC.write_text(render(load_all()))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
