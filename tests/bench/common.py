"""What every benchmark reports: a figure, the baseline measured in the same run, their ratio, and how to rerun it.

The machine is shared and absolute times drift, so every figure is read against a baseline
measured moments before or after it, in the same process (e.g. raw aiokafka, or the same
MongoDB writes done directly with PyMongo).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(".bench")
# The benchmarks run services on a local plain-text stack with the development secret: only
# ENVIRONMENT=development accepts that (the services default to production).
os.environ["ENVIRONMENT"] = "development"


@dataclass
class Figure:
    """One measured figure and its same-run baseline."""

    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline_value: float | None = None
    goal: str = ""
    command: str = ""
    higher_is_better: bool = True
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def save(suite: str, figures: list[Figure]) -> Path:
    """Write one suite's figures to .bench/<suite>.json for run_all to gather."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{suite}.json"
    path.write_text(json.dumps([asdict(f) for f in figures], indent=2))
    return path


def load_all() -> dict[str, list[Figure]]:
    out: dict[str, list[Figure]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        out[path.stem] = [Figure(**raw) for raw in json.loads(path.read_text())]
    return out
