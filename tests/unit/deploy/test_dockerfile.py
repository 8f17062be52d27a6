"""deploy/docker/Dockerfile: a slim, non-root target per service, installed from the lock file, healthy on /healthz."""

from __future__ import annotations

import re
import stat

import pytest

from tests.unit.deploy.files import (
    CONTAINER_PORT,
    INSTALL_SCRIPT,
    NON_ROOT_UID,
    ROOT,
    SERVICES,
    context_copies,
    context_files,
    dockerfile_args,
    dockerfile_stages,
    dockerignored,
    stage_chain,
)


def instruction(stage_name: str, cmd: str) -> list[str]:
    """The values of every ``cmd`` instruction of a target and the stages it builds on, nearest first."""
    return [" ".join(c.value) for stage in stage_chain(stage_name) for c in stage.of(cmd)]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_target_that_runs_it_in_exec_form(service: str) -> None:
    stage = dockerfile_stages()[service]
    [entrypoint] = stage.of("ENTRYPOINT")
    assert entrypoint.json, "exec form, so that SIGTERM reaches python itself"
    assert list(entrypoint.value) == ["python", "-m", f"homework_{service}"]
    assert not stage.of("CMD")


@pytest.mark.parametrize("service", SERVICES)
def test_each_target_is_the_slim_base_with_a_non_root_user(service: str) -> None:
    # The runtime and the build stage share the base, so the venv's interpreter path is valid in both.
    for stage in (stage_chain(service)[-1], stage_chain(f"build-{service}")[-1]):
        image = dockerfile_args()[stage.base[2:-1]] if stage.base.startswith("${") else stage.base
        assert image == "python:3.11-slim"
    users = instruction(service, "USER")
    assert users, "a USER instruction"
    uid = users[0].split(":")[0]
    assert uid == str(NON_ROOT_UID)
    assert any(f"--uid {NON_ROOT_UID}" in run for run in instruction(service, "RUN"))


@pytest.mark.parametrize("service", SERVICES)
def test_each_target_checks_health_on_healthz_and_exposes_the_service_port(service: str) -> None:
    [healthcheck] = [c for stage in stage_chain(service) for c in stage.of("HEALTHCHECK")]
    text = healthcheck.original
    assert "/healthz" in text
    assert f"'{CONTAINER_PORT}'" in text or f":{CONTAINER_PORT}/" in text
    assert instruction(service, "EXPOSE") == [str(CONTAINER_PORT)]
    env = " ".join(instruction(service, "ENV"))
    assert f"HTTP_PORT {CONTAINER_PORT}" in env
    assert "PYTHONDONTWRITEBYTECODE 1" in env, "the root filesystem is read-only in Kubernetes"


@pytest.mark.parametrize("service", SERVICES)
def test_each_target_holds_only_its_own_virtual_environment(service: str) -> None:
    final = dockerfile_stages()[service]
    copies = [c for c in final.of("COPY")]
    assert [c.flags for c in copies] == [(f"--from=build-{service}",)]
    assert list(copies[0].value) == ["/opt/venv", "/opt/venv"]
    runs = instruction(f"build-{service}", "RUN")
    assert f"deploy/docker/install-service.sh {service} /opt/venv project" in runs
    assert f"deploy/docker/install-service.sh {service} /opt/venv deps" in runs
    # Only this service's sources reach its build stage.
    sources = {src for sources, _ in context_copies(f"build-{service}") for src in sources}
    others = {f"services/{other}/" for other in SERVICES if other != service}
    assert not sources & others


@pytest.mark.parametrize("service", SERVICES)
def test_every_copy_keeps_the_repository_layout_under_the_work_directory(service: str) -> None:
    # What lets the install test lay out a build context as the image's /src would hold it.
    assert instruction("build", "WORKDIR") == ["/src"]
    for sources, destination in context_copies(service):
        for source in sources:
            parent = source.rstrip("/").rpartition("/")[0]
            assert destination in ("./", f"{parent}/", source), (source, destination)


def test_uv_is_pinned_in_the_build_stage() -> None:
    runs = " ".join(instruction("build", "RUN"))
    assert re.search(r"pip install [^&]*\buv==\d+\.\d+\.\d+", runs)


def test_the_install_script_exports_the_lock_file_with_hashes_and_installs_without_resolving() -> None:
    script = INSTALL_SCRIPT.read_text()
    assert INSTALL_SCRIPT.stat().st_mode & stat.S_IXUSR
    assert 'uv" export --frozen --no-dev --no-emit-workspace' in script
    assert '--package "homework-$service"' in script
    assert "--require-hashes --no-deps" in script
    assert '--no-deps ./shared "./services/$service"' in script


def test_the_build_context_holds_what_every_copy_needs_and_nothing_else() -> None:
    files = set(context_files())
    for service in SERVICES:
        for sources, _ in context_copies(service):
            for source in sources:
                assert any(f == source.rstrip("/") or f.startswith(source) for f in files), source
    assert "uv.lock" in files
    assert "shared/src/homework_shared/__init__.py" in files
    for excluded in (".venv/pyvenv.cfg", ".git/HEAD", "tests/conftest.py", "docs/deploy.md", ".env", "README.md"):
        assert dockerignored(excluded), excluded
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert (ROOT / ".dockerignore").exists()
