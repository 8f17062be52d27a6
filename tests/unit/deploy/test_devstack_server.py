"""The dev stack's choice of MongoDB-protocol server, and its one-time build of the Rust server into the
cache (with a stand-in ``cargo`` on PATH, so the build's bookkeeping is tested in seconds, not minutes)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import ROOT, devstack

VERSION_SCRIPT = f'#!/bin/sh\necho "{devstack.RUST_BINARY} {devstack.RUST_VERSION}"\n'

# Stands in for `cargo install ... --root DIR`: counts its runs, leaves junk in CARGO_TARGET_DIR,
# takes a while (so two first runs overlap), then installs a binary that answers --version.
FAKE_CARGO = """#!/bin/sh
echo run >> "$FAKE_CARGO_RUNS"
while [ "$1" != "--root" ]; do shift; done
root="$2"
mkdir -p "$CARGO_TARGET_DIR/release" && echo junk > "$CARGO_TARGET_DIR/release/big.o"
echo "   Compiling secantus-mdb"
sleep 2
[ -n "$FAKE_CARGO_FAIL" ] && { echo "error: linking failed"; exit 101; }
mkdir -p "$root/bin"
printf '%s' "$BINARY_SCRIPT" > "$root/bin/secantusd-rs" && chmod +x "$root/bin/secantusd-rs"
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache and a PATH with no build tools; returns the directory that PATH holds."""
    tools = tmp_path / "bin"
    tools.mkdir()
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv("HOMEWORK_DEVSTACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MONGO_SERVER", raising=False)
    monkeypatch.setattr(devstack, "_failed_builds", [])
    return tools


def _with_build_tools(tools: Path) -> None:
    _executable(tools / "cargo", FAKE_CARGO)
    for tool in ("cc", "cmake"):
        _executable(tools / tool, "#!/bin/sh\n")


def test_without_cargo_the_python_server_is_chosen_and_the_reason_given(machine: Path) -> None:
    choice = devstack.choose_mongo_server()
    assert choice.kind == "python"
    assert "cargo" in choice.reason
    assert "Python server" in choice.describe()


def test_mongo_server_python_is_obeyed_even_where_the_rust_server_could_be_built(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_build_tools(machine)
    monkeypatch.setenv("MONGO_SERVER", "python")
    assert devstack.choose_mongo_server().kind == "python"


def test_mongo_server_rust_without_cargo_is_an_error_naming_what_is_missing(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGO_SERVER", "rust")
    with pytest.raises(devstack.DevstackError, match="cargo, cc, cmake not found"):
        devstack.choose_mongo_server()


def test_an_unknown_mongo_server_value_is_refused(machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_SERVER", "mongod")
    with pytest.raises(devstack.DevstackError, match="MONGO_SERVER='mongod'"):
        devstack.choose_mongo_server()


def test_a_cached_rust_server_is_chosen_without_cargo(machine: Path) -> None:
    binary = devstack.rust_server_root() / "bin" / devstack.RUST_BINARY
    binary.parent.mkdir(parents=True)
    _executable(binary, VERSION_SCRIPT)
    choice = devstack.choose_mongo_server()
    assert (choice.kind, "Rust server" in choice.describe()) == ("rust", True)
    assert devstack.rust_server_binary() == binary


def test_a_cached_binary_of_another_version_is_not_reused(machine: Path) -> None:
    binary = devstack.rust_server_root() / "bin" / devstack.RUST_BINARY
    binary.parent.mkdir(parents=True)
    _executable(binary, '#!/bin/sh\necho "secantusd-rs 0.5.2"\n')
    assert devstack.choose_mongo_server().kind == "python"


def test_two_first_runs_at_once_build_once_and_share_the_binary(machine: Path, tmp_path: Path) -> None:
    _with_build_tools(machine)
    runs = tmp_path / "cargo-runs"
    env = {
        **os.environ,
        "PATH": f"{machine}:/usr/bin:/bin",
        "FAKE_CARGO_RUNS": str(runs),
        "BINARY_SCRIPT": VERSION_SCRIPT,
        "PYTHONPATH": str(ROOT / "deploy" / "local"),
    }
    code = "import devstack; print(devstack.rust_server_binary())"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    expected = str(devstack.rust_server_root() / "bin" / devstack.RUST_BINARY)
    assert [out.strip() for out, _ in results] == [expected, expected]
    assert runs.read_text().splitlines() == ["run"]  # one build; the other process waited for it
    logs = sorted((err for _, err in results), key=len)
    assert "waiting for it" in logs[0]
    first_build_line = logs[1].splitlines()[0]
    assert "building the MongoDB-protocol server once, ~9 min on 2 cores" in first_build_line
    assert "Compiling secantus-mdb" in logs[1]  # cargo's output is shown as it goes
    cache = devstack.cache_dir()
    assert not (cache / "build").exists()  # the build folder is deleted afterwards
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [
            f"secantus-rs-{devstack.RUST_VERSION}",
            f"secantus-rs-{devstack.RUST_VERSION}.lock",
            f"secantus-rs-{devstack.RUST_VERSION}.build.log",
        ]
    )


def test_a_failed_build_leaves_no_binary_and_says_where_its_output_is(
    machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_build_tools(machine)
    monkeypatch.setenv("PATH", f"{machine}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_CARGO_RUNS", str(tmp_path / "cargo-runs"))
    monkeypatch.setenv("FAKE_CARGO_FAIL", "1")
    with pytest.raises(devstack.DevstackError, match=r"failed \(exit 101\).*build\.log"):
        devstack.rust_server_binary()
    cache = devstack.cache_dir()
    assert not devstack.rust_server_root().exists()
    assert not (cache / "build").exists()
    assert not list(cache.glob("*.partial"))
    assert "linking failed" in (cache / f"secantus-rs-{devstack.RUST_VERSION}.build.log").read_text()


def test_with_auto_a_failed_build_falls_back_to_the_python_server_once(
    machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_build_tools(machine)
    monkeypatch.setenv("PATH", f"{machine}:/usr/bin:/bin")
    runs = tmp_path / "cargo-runs"
    monkeypatch.setenv("FAKE_CARGO_RUNS", str(runs))
    monkeypatch.setenv("FAKE_CARGO_FAIL", "1")
    assert devstack.prepare() == "python"
    assert devstack.choose_mongo_server().kind == "python"  # not built again by the same process
    assert runs.read_text().splitlines() == ["run"]


def test_with_mongo_server_rust_a_failed_build_is_an_error(
    machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_build_tools(machine)
    monkeypatch.setenv("PATH", f"{machine}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_CARGO_RUNS", str(tmp_path / "cargo-runs"))
    monkeypatch.setenv("FAKE_CARGO_FAIL", "1")
    monkeypatch.setenv("MONGO_SERVER", "rust")
    with pytest.raises(devstack.DevstackError, match="failed"):
        devstack.prepare()
