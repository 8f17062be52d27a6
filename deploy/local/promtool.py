"""promtool, the Prometheus rule checker, fetched once and cached like the Kafka jars.

``python -m deploy.local.promtool [args...]`` runs it (fetching it first when missing). Where it comes
from, first found wins:

1. ``PROMTOOL`` (a path) in the environment: an operator's own promtool.
2. The cache, ``<devstack cache>/promtool-<source>/promtool``, filled by 3 or 4 below.
3. Debian's ``prometheus`` package, pinned (``apt-get download prometheus=2.42.0+ds-5+deb12u1``, the
   bookworm release; the unpinned package if that version has left the mirror), unpacked with
   ``dpkg-deb -x``: 19 MB, about 3 s. No root needed, nothing installed system-wide.
4. Where there is no ``apt-get``, or the package cannot be fetched: ``go install
   github.com/prometheus/prometheus/cmd/promtool@v0.316.0`` (the Go module's tags are ``v0.3xx``;
   the Prometheus release is 3.x). It compiles the service-discovery dependencies (Kubernetes, cloud
   SDKs): over 20 min cold on 2 cores, so it is the fallback, not the first choice.

The rules use nothing newer than Prometheus 2.x PromQL, so either version checks them the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy.local.devstack import cache_dir

PROMTOOL_VERSION = "v0.316.0"
MODULE = "github.com/prometheus/prometheus/cmd/promtool"
DEBIAN_PACKAGE = "prometheus"
DEBIAN_VERSION = "2.42.0+ds-5+deb12u1"


def promtool_path() -> Path:
    """A promtool binary: ``PROMTOOL``, the cached one, or one fetched now (Debian package, else ``go install``)."""
    if given := os.environ.get("PROMTOOL"):
        return Path(given)
    debian = cache_dir() / "promtool-debian" / "promtool"
    built = cache_dir() / f"promtool-{PROMTOOL_VERSION}" / "promtool"
    for binary in (debian, built):
        if binary.is_file():
            return binary
    if _from_debian(debian):
        return debian
    return _go_install(built)


def _from_debian(binary: Path) -> bool:
    """Unpack promtool from Debian's ``prometheus`` package into ``binary``'s folder; False if that is not possible."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        for spec in (f"{DEBIAN_PACKAGE}={DEBIAN_VERSION}", DEBIAN_PACKAGE):
            fetched = subprocess.run(["apt-get", "download", spec], cwd=tmp, capture_output=True, text=True)
            debs = list(Path(tmp).glob("*.deb"))
            if fetched.returncode == 0 and debs:
                break
        else:
            print(f"apt-get download {DEBIAN_PACKAGE} failed: {fetched.stderr.strip()[-300:]}", file=sys.stderr)
            return False
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        source = unpacked / "usr" / "bin" / "promtool"
        if not source.is_file():
            return False
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        shutil.copy2(source, partial)
        partial.replace(binary)  # atomic: a concurrent caller never runs half a binary
    return True


def _go_install(binary: Path) -> Path:
    """Build the pinned promtool with ``go install`` into ``binary``'s folder (long: see the module docstring)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("promtool: no PROMTOOL, no apt-get to fetch Debian's package, and no Go to build it")
    binary.parent.mkdir(parents=True, exist_ok=True)
    print(f"building promtool {PROMTOOL_VERSION} into {binary.parent} (once; over 20 min cold)", file=sys.stderr)
    env = {**os.environ, "GOBIN": str(binary.parent), "CGO_ENABLED": "0"}
    subprocess.run([go, "install", f"{MODULE}@{PROMTOOL_VERSION}"], check=True, env=env)
    return binary


def main() -> int:
    return subprocess.call([str(promtool_path()), *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
