"""`make bench`: run every benchmark suite against one real stack and write docs/benchmarks.md.

Each suite is a module ``tests.bench.bench_<name>`` with ``async def main(infra) -> list[Figure]``;
it can also run alone: ``python -m tests.bench.run_all <name>``.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.bench.common import Figure, load_all, save
from tests.infra import session_infra

DOC = Path("docs/benchmarks.md")


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
        f"Python {platform.python_version()}, local stack: Apache Kafka 4.1 from Maven jars, SecantusDB).",
        "Every figure is read against a baseline measured in the same run; the ratio is figure / baseline.",
        "The machine is shared (2 cores), so compare ratios, not absolute values, between runs.",
        "",
    ]
    for suite, figures in results.items():
        lines += [
            f"## {suite}",
            "",
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


async def run(selected: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="homework-bench-") as tmp, session_infra(Path(tmp)) as infra:
        for name in selected:
            module = importlib.import_module(f"tests.bench.bench_{name}")
            started = time.monotonic()
            print(f"== {name}", flush=True)
            figures: list[Figure] = await module.main(infra)
            save(name, figures)
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
