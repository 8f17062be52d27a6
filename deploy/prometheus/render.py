"""Render deploy/k8s/monitoring/prometheus-rule.yaml (a prometheus-operator ``PrometheusRule``) from rules.yml.

One source for the alert rules: ``rules.yml`` is what plain Prometheus loads and what promtool tests;
the manifest wraps the same groups. ``python -m deploy.prometheus.render`` rewrites it
(``make monitoring``); ``--check`` exits 1 when the committed manifest is out of step.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules.yml"
MANIFEST = ROOT / "deploy/k8s/monitoring/prometheus-rule.yaml"
HEADER = "# Generated from deploy/prometheus/rules.yml by `make monitoring`: edit that file, not this one.\n"


def manifest() -> str:
    """The PrometheusRule manifest text for the current rules file."""
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "homework",
            "labels": {"app.kubernetes.io/part-of": "homework", "role": "alert-rules"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=200)


def main(argv: list[str]) -> int:
    text = manifest()
    if "--check" in argv:
        if not MANIFEST.is_file() or MANIFEST.read_text() != text:
            print(f"{MANIFEST} is out of step with {RULES}: run `make monitoring`", file=sys.stderr)
            return 1
        return 0
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
