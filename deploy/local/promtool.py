"""promtool, the Prometheus rule checker, built once from the Go module proxy and cached like the Kafka jars.

``python -m deploy.local.promtool [args...]`` runs it (building it first when missing). The version
is pinned: ``go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0`` into
``<devstack cache>/promtool-v0.316.0/`` (the Go module's tags are ``v0.3xx``; the Prometheus release
is 3.x). The first build compiles its service-discovery dependencies (Kubernetes, cloud SDKs): 77 min measured
on the busy shared 2-core machine (less when idle); after that, nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from deploy.local.devstack import cache_dir

PROMTOOL_VERSION = "v0.316.0"
MODULE = "github.com/prometheus/prometheus/cmd/promtool"


def promtool_path() -> Path:
    """The cached promtool binary, built with ``go install`` when it is not there yet."""
    target = cache_dir() / f"promtool-{PROMTOOL_VERSION}"
    binary = target / "promtool"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("promtool is built with Go (`go install`): install Go 1.24 or newer")
    target.mkdir(parents=True, exist_ok=True)
    print(f"building promtool {PROMTOOL_VERSION} into {target} (once; long: see the module docstring)", file=sys.stderr)
    env = {**os.environ, "GOBIN": str(target), "CGO_ENABLED": "0"}
    subprocess.run([go, "install", f"{MODULE}@{PROMTOOL_VERSION}"], check=True, env=env)
    return binary


def main() -> int:
    return subprocess.call([str(promtool_path()), *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
