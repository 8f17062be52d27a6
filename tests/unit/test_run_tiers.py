"""``make test``'s runner (tests/run_tiers.py): every test file runs in exactly one session, and what measures
faults or fail-fast timings never runs beside the end-to-end scenarios."""

from __future__ import annotations

from pathlib import Path

from tests import run_tiers
from tests.infra import ROOT


def _files(args: list[str]) -> set[Path]:
    """The test files a session's arguments select (paths, minus ``--ignore``)."""
    ignored = [ROOT / a.removeprefix("--ignore=") for a in args if a.startswith("--ignore=")]
    chosen: set[Path] = set()
    for arg in (a for a in args if not a.startswith("-")):
        path = ROOT / arg
        chosen |= set(path.rglob("test_*.py")) if path.is_dir() else {path}
    return {f for f in chosen if not any(f == i or i in f.parents for i in ignored)}


def test_every_test_file_runs_in_exactly_one_session() -> None:
    sessions = {name: _files(args) for phase in run_tiers.PHASES for name, args in phase.items()}
    every = set((ROOT / "tests").rglob("test_*.py")) - set((ROOT / "tests" / "bench").rglob("*"))
    counted = {f: [n for n, files in sessions.items() if f in files] for f in every}
    assert {f.relative_to(ROOT).as_posix(): n for f, n in counted.items() if len(n) != 1} == {}
    assert all(path.is_file() for path in (ROOT / p for p in run_tiers.SOLO)), run_tiers.SOLO


def test_the_fault_tier_and_process_tests_never_run_beside_the_end_to_end_scenarios() -> None:
    faults = ROOT / run_tiers.FAULTS
    for phase in run_tiers.PHASES:
        files = {name: _files(args) for name, args in phase.items()}
        with_faults = [n for n, fs in files.items() if any(faults in f.parents for f in fs)]
        with_solo = [n for n, fs in files.items() if fs & {ROOT / p for p in run_tiers.SOLO}]
        with_e2e = [n for n, fs in files.items() if any(f.parent == ROOT / "tests" / "e2e" for f in fs)]
        if with_faults or with_solo:
            assert len(phase) == 1, f"{with_faults or with_solo} runs beside {list(phase)}"
        assert len(phase) <= 2, list(phase)
        assert len(with_e2e) <= 1
