"""The alert rules and dashboards shipped in deploy/, checked offline: promtool, their generated copies, runbooks."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.grafana import build as grafana
from deploy.local.promtool import promtool_path
from deploy.prometheus import render

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy/prometheus/rules.yml"
RULE_TESTS = ROOT / "deploy/prometheus/tests.yml"
REQUIRED_ALERTS = {
    "HomeworkOutboxStuck",
    "HomeworkConsumerLagGrowing",
    "HomeworkDeadLetterParked",
    "HomeworkReminderLatenessHigh",
    "HomeworkNotReady",
    "HomeworkWebhookFailureRatio",
}


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


BUILD_TIMEOUT = pytest.mark.timeout(3600)
"""The first test that needs promtool fetches it (seconds), or builds it (``go install``) without apt-get."""


@pytest.fixture(scope="module")
def promtool() -> Path:
    return promtool_path()  # fetched (Debian package) or built (go install) when the cache has none


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@BUILD_TIMEOUT
def test_the_alert_rules_pass_promtool_check(promtool: Path) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout + result.stderr


@BUILD_TIMEOUT
def test_every_alert_has_a_promtool_unit_test_and_they_all_pass(promtool: Path) -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {str(rule["alert"]) for rule in alerts()} == REQUIRED_ALERTS
    assert tested == REQUIRED_ALERTS
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@BUILD_TIMEOUT
def test_promtool_test_rules_would_fail_a_rule_that_does_not_fire(promtool: Path, tmp_path: Path) -> None:
    broken = RULES.read_text().replace(
        "outbox_oldest_unsent_age_seconds) > 300", "outbox_oldest_unsent_age_seconds) > 3000"
    )
    (tmp_path / "rules.yml").write_text(broken)
    (tmp_path / "tests.yml").write_text(RULE_TESTS.read_text())
    result = run(promtool, "test", "rules", str(tmp_path / "tests.yml"))
    assert result.returncode != 0
    assert "HomeworkOutboxStuck" in result.stdout + result.stderr


def test_the_prometheus_rule_manifest_is_generated_from_the_rules_file() -> None:
    assert render.MANIFEST.read_text() == render.manifest(), "run `make monitoring`"
    doc = yaml.safe_load(render.MANIFEST.read_text())
    assert doc["kind"] == "PrometheusRule"
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_every_alert_has_a_runbook_paragraph_in_the_deploy_docs() -> None:
    docs = (ROOT / "docs/deploy.md").read_text()
    for rule in alerts():
        name = str(rule["alert"])
        anchor = str(rule["annotations"]["runbook"]).split("#", 1)[1]  # type: ignore[index]
        assert anchor == f"runbook-{name.lower()}"
        match = re.search(rf"^#+ Runbook: {name}\n+(.+?)(?=^#|\Z)", docs, re.M | re.S)
        assert match is not None, f"docs/deploy.md has no '### Runbook: {name}' section"
        assert len(match.group(1).split()) >= 40, f"the runbook of {name} is too short to act on"


def test_the_dashboards_are_generated_valid_and_cover_what_operators_watch() -> None:
    built = grafana.dashboards()
    assert sorted(built) == ["assignment.json", "insights.json", "overview.json", "reminder.json"]
    for name, doc in built.items():
        assert json.loads((ROOT / "deploy/grafana" / name).read_text()) == doc, "run `make monitoring`"
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in doc["panels"])
    overview = " ".join(t["expr"] for p in built["overview.json"]["panels"] for t in p["targets"])
    for needed in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "outbox_backlog",
        "kafka_consumer_group_lag_records",
        "reminder_lateness_seconds_bucket",
        "events_parked_total",
    ):
        assert needed in overview
