"""Render a kustomize overlay to stdout: ``python deploy/k8s/render.py prod`` (or ``dev``, or a path).

The kustomize used, in this order: ``$KUSTOMIZE`` if set, ``kustomize`` on the PATH,
``kubectl kustomize`` (built into kubectl), a kustomize this script built before (in
``~/.cache/homework``), or else one it builds now with ``go install`` from the Go module proxy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.5.0"


class RenderError(RuntimeError):
    """No kustomize could be found or built, or it refused the overlay."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "homework" / f"kustomize-{KUSTOMIZE_VERSION}"


def _kubectl_has_kustomize(kubectl: str) -> bool:
    try:
        result = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def build_kustomize(target_dir: Path) -> Path:
    """Build kustomize with ``go install`` into ``target_dir`` and return the binary."""
    go = shutil.which("go")
    if go is None:
        raise RenderError("no kustomize, no kubectl and no Go toolchain to build kustomize with")
    target_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target_dir), "GOFLAGS": "-mod=mod"}
    result = subprocess.run(
        [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    binary = target_dir / "kustomize"
    if result.returncode != 0 or not binary.exists():
        raise RenderError(f"go install {KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION} failed:\n{result.stderr}")
    return binary


def kustomize_command() -> list[str]:
    """The command that renders a kustomization directory given as its last argument."""
    if explicit := os.environ.get("KUSTOMIZE"):
        return [explicit, "build"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    kubectl = shutil.which("kubectl")
    if kubectl and _kubectl_has_kustomize(kubectl):
        return [kubectl, "kustomize"]
    binary = cache_dir() / "kustomize"
    if not binary.exists():
        binary = build_kustomize(cache_dir())
    return [str(binary), "build"]


def overlay_path(name: str) -> Path:
    """``dev`` and ``prod`` name the overlays in deploy/k8s/overlays; anything else is a path."""
    named = HERE / "overlays" / name
    return named if named.is_dir() else Path(name)


def render(overlay: str | Path) -> str:
    """The overlay's manifests as one multi-document YAML string."""
    path = overlay_path(str(overlay))
    if not (path / "kustomization.yaml").exists():
        raise RenderError(f"{path}: no kustomization.yaml")
    result = subprocess.run([*kustomize_command(), str(path)], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RenderError(f"kustomize refused {path}:\n{result.stderr}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("overlay", help="dev, prod, or the path of a kustomization directory")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.overlay))
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
