"""Where kubectl is missing, deploy/k8s/render.py builds kustomize from the Go module proxy, and it renders the same."""

from __future__ import annotations

import shutil

import pytest
import yaml  # type: ignore[import-untyped]

from tests.unit.deploy.files import OVERLAYS, k8s_render


@pytest.mark.timeout(900)
def test_a_kustomize_built_with_go_renders_what_kubectl_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain here: render.py uses kubectl or kustomize from the PATH")
    binary = k8s_render.cache_dir() / "kustomize"
    if not binary.exists():
        binary = k8s_render.build_kustomize(k8s_render.cache_dir())
    by_default = {overlay: list(yaml.safe_load_all(k8s_render.render(overlay))) for overlay in OVERLAYS}
    monkeypatch.setenv("KUSTOMIZE", str(binary))
    assert k8s_render.kustomize_command() == [str(binary), "build"]
    for overlay in OVERLAYS:
        assert list(yaml.safe_load_all(k8s_render.render(overlay))) == by_default[overlay], overlay
