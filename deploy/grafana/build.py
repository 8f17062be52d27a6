# ruff: noqa: E501 - PromQL queries read best unbroken
"""Build the Grafana dashboards (deploy/grafana/*.json) from the panel lists below: one per service and an overview.

``python -m deploy.grafana.build`` rewrites them (``make monitoring``); ``--check`` exits 1 when a
committed file is out of step. Every query reads only metrics the services export: the test
``tests/integration/observability/test_tracing.py`` scrapes the running services and checks each name.
Import the JSON in Grafana (Dashboards > Import) or ship it with a dashboard provisioning sidecar;
each dashboard asks for a Prometheus data source and filters by the ``job`` label of the scrape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
JOB = 'job=~"$job"'


def panel(title: str, exprs: dict[str, str], *, unit: str = "short", kind: str = "timeseries") -> dict[str, Any]:
    """A panel drawing each ``legend: expression`` pair."""
    return {
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(exprs.items())
        ],
    }


def red() -> list[dict[str, Any]]:
    """Rate, errors and duration of HTTP requests, per route."""
    return [
        panel(
            "Requests per second by route",
            {"{{route}} {{status}}": f"sum by (route, status) (rate(http_requests_total{{{JOB}}}[5m]))"},
            unit="reqps",
        ),
        panel(
            "Error ratio (5xx) by route",
            {
                "{{route}}": f'sum by (route) (rate(http_requests_total{{{JOB}, status=~"5.."}}[5m])) / sum by (route) (rate(http_requests_total{{{JOB}}}[5m]))'
            },
            unit="percentunit",
        ),
        panel(
            "Duration p50 / p99 by route",
            {
                "p50 {{route}}": f"histogram_quantile(0.5, sum by (route, le) (rate(http_request_duration_seconds_bucket{{{JOB}}}[5m])))",
                "p99 {{route}}": f"histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{{{JOB}}}[5m])))",
            },
            unit="s",
        ),
    ]


def outbox() -> list[dict[str, Any]]:
    return [
        panel("Outbox backlog", {"{{instance}}": f"outbox_backlog{{{JOB}}}"}),
        panel("Oldest unsent outbox record", {"{{instance}}": f"outbox_oldest_unsent_age_seconds{{{JOB}}}"}, unit="s"),
        panel(
            "Relay lag p99 (staged to acknowledged) and publish failures",
            {
                "lag p99": f"histogram_quantile(0.99, sum by (le) (rate(outbox_relay_lag_seconds_bucket{{{JOB}}}[5m])))",
                "failures/s": f"sum(rate(outbox_publish_failures_total{{{JOB}}}[5m]))",
            },
        ),
    ]


def consumer() -> list[dict[str, Any]]:
    return [
        panel(
            "Consumer lag by partition (committed)",
            {
                "{{group}} {{topic}}/{{partition}}": f"max by (group, topic, partition) (kafka_consumer_group_lag_records{{{JOB}}})"
            },
        ),
        panel(
            "Events applied per second by type",
            {"{{type}}": f"sum by (type) (rate(events_applied_total{{{JOB}}}[5m]))"},
            unit="ops",
        ),
        panel(
            "Dead-letter parks and transient failures",
            {
                "parked {{reason}}": f"sum by (reason) (increase(events_parked_total{{{JOB}}}[5m]))",
                "transient failures": f"sum(increase(events_transient_failures_total{{{JOB}}}[5m]))",
            },
        ),
        panel(
            "Consumer group members and partitions",
            {
                "members": f"sum by (group) (kafka_consumer_group_member{{{JOB}}})",
                "partitions": f"sum by (group) (kafka_consumer_group_assigned_partitions{{{JOB}}})",
            },
        ),
    ]


def readiness() -> list[dict[str, Any]]:
    return [panel("Readiness checks failing", {"{{instance}} {{check}}": f"1 - readiness_check_up{{{JOB}}}"})]


def lateness() -> dict[str, Any]:
    return panel(
        "Reminder lateness p50 / p90 / p99",
        {
            f"p{q}": f"histogram_quantile(0.{q}, sum by (le) (rate(reminder_lateness_seconds_bucket{{{JOB}}}[5m])))"
            for q in ("50", "90", "99")
        },
        unit="s",
    )


def reminder() -> list[dict[str, Any]]:
    return [
        lateness(),
        panel(
            "Reminders pending and fired",
            {
                "pending": f"max(reminders_pending{{{JOB}}})",
                "fired/s": f"sum(rate(reminders_fired_total{{{JOB}}}[5m]))",
            },
        ),
        panel(
            "Webhook failure ratio",
            {
                "{{job}}": f"sum by (job) (rate(webhook_failures_total{{{JOB}}}[10m])) / (sum by (job) (rate(webhook_failures_total{{{JOB}}}[10m])) + sum by (job) (rate(webhook_deliveries_total{{{JOB}}}[10m])))"
            },
            unit="percentunit",
        ),
        panel(
            "Reminders cancelled by reason",
            {"{{reason}}": f"sum by (reason) (rate(reminders_cancelled_total{{{JOB}}}[5m]))"},
            unit="ops",
        ),
    ]


def assignment() -> list[dict[str, Any]]:
    return [
        panel(
            "Completions and skips recorded",
            {"{{type}}": f"sum by (type) (rate(homework_resolutions_total{{{JOB}}}[5m]))"},
            unit="ops",
        ),
        panel(
            "Resolutions per transaction (p50)",
            {"p50": f"histogram_quantile(0.5, sum by (le) (rate(resolution_batch_size_bucket{{{JOB}}}[5m])))"},
        ),
    ]


def insights() -> list[dict[str, Any]]:
    return [
        panel(
            "Summaries and alerts",
            {
                "summaries/s": f"sum(rate(insights_summaries_generated_total{{{JOB}}}[5m]))",
                "alerts/s": f"sum(rate(insights_alerts_raised_total{{{JOB}}}[5m]))",
            },
            unit="ops",
        ),
    ]


def overview() -> list[dict[str, Any]]:
    return [
        panel(
            "Requests per second by service and route",
            {"{{job}} {{route}}": f"sum by (job, route) (rate(http_requests_total{{{JOB}}}[5m]))"},
            unit="reqps",
        ),
        panel(
            "5xx ratio by service and route",
            {
                "{{job}} {{route}}": f'sum by (job, route) (rate(http_requests_total{{{JOB}, status=~"5.."}}[5m])) / sum by (job, route) (rate(http_requests_total{{{JOB}}}[5m]))'
            },
            unit="percentunit",
        ),
        panel(
            "p99 duration by service and route",
            {
                "{{job}} {{route}}": f"histogram_quantile(0.99, sum by (job, route, le) (rate(http_request_duration_seconds_bucket{{{JOB}}}[5m])))"
            },
            unit="s",
        ),
        panel("Outbox backlog by service", {"{{job}}": f"sum by (job) (outbox_backlog{{{JOB}}})"}),
        panel(
            "Oldest unsent outbox record by service",
            {"{{job}}": f"max by (job) (outbox_oldest_unsent_age_seconds{{{JOB}}})"},
            unit="s",
        ),
        panel(
            "Consumer lag by group",
            {
                "{{group}}": f"sum by (group) (max by (group, topic, partition) (kafka_consumer_group_lag_records{{{JOB}}}))"
            },
        ),
        lateness(),
        panel(
            "Dead-letter parks per minute by group",
            {"{{job}} {{reason}}": f"sum by (job, reason) (rate(events_parked_total{{{JOB}}}[5m])) * 60"},
        ),
        *readiness(),
    ]


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], default_job: str) -> dict[str, Any]:
    """A Grafana dashboard (schema 39) laying ``panels`` out two to a row."""
    laid = []
    for i, p in enumerate(panels):
        laid.append({**p, "id": i + 1, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}})
    return {
        "uid": uid,
        "title": title,
        "tags": ["homework"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "job",
                    "type": "query",
                    "label": "job",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(http_requests_total, job)",
                    "regex": "",
                    "includeAll": True,
                    "multi": True,
                    "allValue": default_job,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": laid,
    }


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        "overview.json": dashboard("homework-overview", "Homework: overview", overview(), ".*"),
        "assignment.json": dashboard("homework-assignment", "Homework: assignment service", [*red(), *outbox(), *readiness(), *assignment()], ".*assignment.*"),
        "reminder.json": dashboard("homework-reminder", "Homework: reminder service", [*red(), *reminder(), *consumer(), *outbox(), *readiness()], ".*reminder.*"),
        "insights.json": dashboard("homework-insights", "Homework: insights service", [*red(), *consumer(), *outbox(), *readiness(), *insights()], ".*insights.*"),
    }  # fmt: skip


def main(argv: list[str]) -> int:
    stale = []
    for name, doc in dashboards().items():
        text = json.dumps(doc, indent=2) + "\n"
        path = HERE / name
        if "--check" in argv:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of step with deploy/grafana/build.py: {', '.join(stale)} (run `make monitoring`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
