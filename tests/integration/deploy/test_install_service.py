"""Each image's install steps, run here: the service alone in a clean virtual environment, started until ready.

No Docker engine runs here, so the test does what the Dockerfile's build stages do: it lays
out the files their COPY instructions take from the build context (honouring .dockerignore),
runs their ``install-service.sh`` steps with /opt/venv replaced by a temporary directory,
then starts ``python -m homework_<service>`` from that environment against the session's
Kafka and MongoDB, waits for ``/readyz``, sends SIGTERM and expects a clean exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.infra import Infra
from tests.unit.deploy.files import SERVICES, copy_build_context, stage_chain

IMAGE_VENV = "/opt/venv"
SHUTDOWN_TIMEOUT_S = 10
READY_TIMEOUT_S = 150
# What a Python 3.11 venv holds before anything is installed.
VENV_SEED = {"pip", "setuptools"}
NEVER_IN_AN_IMAGE = {"pytest", "ruff", "mypy", "secantusdb", "testcontainers", "kubernetes-validate"}


def uv_binary() -> str:
    found = os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed to export the lock file (make installs it)"
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: none of the workspace's virtualenv or test settings leak in."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return {**env, **extra}


def install_steps(service: str, venv: Path) -> list[list[str]]:
    """The build stages' install-service.sh commands, in build order, writing to ``venv``."""
    steps = []
    for stage in reversed(stage_chain(f"build-{service}")):
        for run in stage.of("RUN"):
            words = shlex.split(" ".join(run.value))
            if words and words[0].endswith("install-service.sh"):
                steps.append([str(venv) if w == IMAGE_VENV else w for w in words])
    return steps


def lock_export(service: str) -> set[str]:
    """Distribution names uv.lock pins for the service (what the image must hold, besides the workspace)."""
    out = subprocess.run(
        [
            uv_binary(),
            *("export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes", "--no-header", "--no-annotate"),
            *("--package", f"homework-{service}"),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    ).stdout
    names = set()
    for line in out.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            names.add(line.split("==")[0].split(";")[0].strip().lower().replace("_", "-"))
    return names


def installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout
    return {item["name"].lower().replace("_", "-") for item in json.loads(out)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before ready:\n{log.read_text()[-4000:]}")
        if get(url) == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"not ready after {READY_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", SERVICES)
def test_the_service_installs_alone_from_the_lock_file_and_runs_until_sigterm(
    service: str, infra: Infra, tmp_path: Path
) -> None:
    context, venv = tmp_path / "src", tmp_path / "venv"
    copied = copy_build_context(f"build-{service}", context)
    assert f"services/{service}/pyproject.toml" in copied
    assert not any(path.startswith("tests/") for path in copied)

    steps = install_steps(service, venv)
    assert [step[-1] for step in steps] == ["deps", "project"]
    for step in steps:
        result = subprocess.run(
            step,
            cwd=context,
            env=clean_env(UV=uv_binary(), PYTHON=sys.executable),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{shlex.join(step)} failed:\n{result.stdout}\n{result.stderr}"

    packages = installed(venv)
    expected = lock_export(service) | {"homework-shared", f"homework-{service}"}
    assert packages - VENV_SEED == expected, f"extra: {packages - VENV_SEED - expected}, missing: {expected - packages}"
    assert not packages & NEVER_IN_AN_IMAGE
    assert not {f"homework-{other}" for other in SERVICES if other != service} & packages

    port, log = free_port(), tmp_path / f"{service}.log"
    env = clean_env(
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap,
        MONGODB_URI=infra.mongodb_uri,
        MONGODB_DATABASE=unique(f"deploy-{service}").replace("-", "_"),
        TOPIC_PREFIX=unique("deploy"),
        TOPIC_PARTITIONS="2",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
        LOG_FORMAT="json",
        # The local stack is plain text with the development secret: only development accepts that.
        ENVIRONMENT="development",
    )
    with log.open("wb") as out:
        # From an empty directory: nothing of the checkout can be imported by accident.
        process = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", f"homework_{service}"], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", process, log)
        assert get(f"{base}/healthz") == 200
        assert get(f"{base}/metrics") == 200
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=SHUTDOWN_TIMEOUT_S + 20)
        output = log.read_text()
        # A graceful stop exits 0 (runner.serve keeps uvicorn from re-raising the signal); anything
        # else, or an exit without the lifespan's shutdown completing, is a failure.
        assert returncode == 0, f"exit code {returncode} after SIGTERM:\n{output[-4000:]}"
        assert "Application shutdown complete." in output, output[-4000:]
        assert '"level": "ERROR"' not in output, output[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
