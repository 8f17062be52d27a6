"""One completion's whole trace, and what operators scrape, from the three services running together.

Design: the three services run *in this process* (their real apps and lifespans, against the real
Kafka broker and MongoDB server), so the SDK's ``InMemorySpanExporter`` on the process's tracer
provider sees every span of every service; as subprocesses they would each need an exporter of
their own and a receiver in the test. What crosses between the services still crosses Kafka and
MongoDB only: the trace context travels in the outbox record and the ``traceparent`` header.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from homework_assignment.app import create as create_assignment
from homework_insights.app import create as create_insights
from homework_insights.config import InsightsSettings
from homework_reminder.app import create as create_reminder
from homework_reminder.config import ReminderSettings
from homework_shared.clock import ManualClock
from homework_shared.events import Topics
from homework_shared.service import Runtime
from tests.conftest import unique, wait_for
from tests.infra import Infra
from tests.integration.assignment.conftest import T0, bearer, daily_mood_log, evening, settings_for
from tests.tracing import SpanRecorder, span_recorder

ROOT = Path(__file__).resolve().parents[3]
COMPLETION_ROUTE = "/v1/assignments/{assignment_id}/occurrences/{occurrence_id}/completion"


@dataclass
class System:
    assignment: FastAPI
    reminder: FastAPI
    insights: FastAPI
    topics: Topics
    clock: ManualClock
    recorder: SpanRecorder
    reminder_group: str
    insights_group: str

    def http(self, app: FastAPI) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


@pytest.fixture(scope="module")
async def system(infra: Infra) -> AsyncIterator[System]:
    recorder = span_recorder()  # before the apps: PyMongo's listener applies to clients made afterwards
    prefix = unique("otel")
    clock = ManualClock(T0)
    common: dict[str, Any] = {
        "environment": "development",
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "topic_prefix": prefix,
        "topic_partitions": 1,
        "log_format": "console",
        # One record per transaction: records applied together (group commit) get one span in a trace of its
        # own, linked to each producer (test_observability covers that), and this test follows one trace.
        "consumer_group_size": 1,
    }
    reminder_group, insights_group = f"{prefix}-reminder", f"{prefix}-insights"
    apps = [
        create_assignment(settings_for(infra.kafka_bootstrap, infra.mongodb_uri, topic_prefix=prefix), clock=clock),
        create_reminder(
            ReminderSettings(
                **common, mongodb_database=unique("reminder"), consumer_group=reminder_group, poll_interval_s=0.1
            ),
            clock=clock,
        ),
        create_insights(
            InsightsSettings(**common, mongodb_database=unique("insights"), service_name=insights_group), clock=clock
        ),
    ]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        for app in apps:
            rt: Runtime = app.state.runtime
            await wait_for(lambda rt=rt: _true(rt.kafka_ready.is_set()), timeout=60, message="Kafka connected")
        yield System(*apps, Topics(prefix=prefix), clock, recorder, reminder_group, insights_group)


async def _true(value: bool) -> bool:
    return value


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _is_mongo(span: ReadableSpan) -> bool:
    attributes = _attrs(span)
    return "mongodb" in (attributes.get("db.system"), attributes.get("db.system.name"))


def _tree(spans: list[ReadableSpan]) -> str:
    """The spans as an indented tree, for failure messages."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent and s.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in by_parent.get(parent, []):
            lines.append(
                "  " * depth + f"{s.name} [{s.kind.name}] {_attrs(s).get('messaging.consumer.group.name', '')}"
            )
            assert s.context is not None
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


async def test_one_completion_is_one_trace_from_the_request_through_both_consumers_and_what_they_publish(
    system: System,
) -> None:
    therapist_practice = unique("practice")
    client_id = unique("client")
    therapist = bearer("therapist", unique("therapist"), therapist_practice)
    client = bearer("client", client_id, therapist_practice)
    rec = system.recorder
    async with system.http(system.assignment) as http:
        # A second reminder an hour before the window closes: still waiting at the completion, so it is cancelled
        # and the reminder service publishes that (homework.reminder.cancelled.v1).
        reminders = [
            {"anchor": "opens", "offset_minutes": 0, "channels": ["push"]},
            {"anchor": "closes", "offset_minutes": -60, "channels": ["push"]},
        ]
        body = daily_mood_log(client_id, reminders=reminders)
        created = await http.post("/v1/assignments", json=body, headers=therapist)
        assert created.status_code == 201, created.text
        assignment = created.json()

        def processed_created(group: str) -> bool:
            return any(
                s.name == f"process {system.topics.assignment}"
                and _attrs(s).get("messaging.consumer.group.name") == group
                for s in rec.ended()
            )

        for group in (system.reminder_group, system.insights_group):
            await wait_for(lambda g=group: _true(processed_created(g)), timeout=60, message=f"{group} applied creation")
        system.clock.set(T0.replace(day=21, hour=19, minute=30))
        rec.clear()
        done = await http.post(
            f"/v1/assignments/{assignment['id']}/occurrences/{evening(assignment, 21)}/completion",
            json={"data": {"mood": 6}},
            headers=client,
        )
        assert done.status_code in (200, 201), done.text

    (server,) = [s for s in rec.ended() if s.kind is SpanKind.SERVER and s.name == f"POST {COMPLETION_ROUTE}"]
    assert server.context is not None
    trace_id = server.context.trace_id

    def in_trace() -> list[ReadableSpan]:
        return [s for s in rec.ended() if s.context is not None and s.context.trace_id == trace_id]

    def consumed_by(group: str, topic: str) -> list[ReadableSpan]:
        return [
            s
            for s in in_trace()
            if s.name == f"process {topic}" and _attrs(s).get("messaging.consumer.group.name") == group
        ]

    async def chain_complete() -> bool:
        return bool(
            consumed_by(system.reminder_group, system.topics.assignment)
            and consumed_by(system.insights_group, system.topics.assignment)
            and consumed_by(system.insights_group, system.topics.reminder)
        )

    try:
        await wait_for(chain_complete, timeout=60, message="the completion's trace reached both consumers")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_tree(in_trace())}") from None
    await wait_for(lambda: _true(not rec.open_spans(trace_id)), timeout=30, message="every span of the trace ended")
    spans = in_trace()
    by_id = {s.context.span_id: s for s in spans if s.context}
    tree = _tree(spans)

    def parent_of(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, f"{span.name} has no parent\n{tree}"
        return by_id[span.parent.span_id]

    # POST completion -> its MongoDB transaction (group commit: one request alone in its batch), in the request's trace.
    (write,) = [s for s in spans if s.name == "write resolutions"]
    assert parent_of(write) is server, tree
    assert _attrs(write)["homework.batch.size"] == 1
    commits = [s for s in spans if _is_mongo(s) and "commitTransaction" in s.name]
    assert any(parent_of(c) is write for c in commits), tree
    # -> the outbox relay's send of the completion event, a PRODUCER child of the request.
    (sent,) = [s for s in spans if s.name == f"send {system.topics.assignment}"]
    assert sent.kind is SpanKind.PRODUCER
    assert parent_of(sent) is server, tree
    assert _attrs(sent)["messaging.system"] == "kafka"
    message_id = _attrs(sent)["messaging.message.id"]
    # -> each consumer group processes it: a CONSUMER child of the send, linked to it, with its group and id.
    for group in (system.reminder_group, system.insights_group):
        (process,) = consumed_by(group, system.topics.assignment)
        assert process.kind is SpanKind.CONSUMER
        assert parent_of(process) is sent, tree
        assert [link.context.span_id for link in process.links] == [sent.context.span_id]  # type: ignore[union-attr]
        attributes = _attrs(process)
        assert attributes["messaging.message.id"] == message_id
        assert attributes["messaging.destination.name"] == system.topics.assignment
        assert any(_is_mongo(s) and parent_of(s) is process for s in spans), tree
    # -> what the reminder service published (its reminders cancelled) is sent in the reminder consumer's trace
    #    and processed by insights there.
    (reminder_process,) = consumed_by(system.reminder_group, system.topics.assignment)
    reminder_sends = [s for s in spans if s.name == f"send {system.topics.reminder}"]
    assert reminder_sends, tree
    assert all(parent_of(s) is reminder_process for s in reminder_sends), tree
    for process in consumed_by(system.insights_group, system.topics.reminder):
        assert any(parent_of(process) is sent for sent in reminder_sends), tree
    assert rec.open_spans(trace_id) == []


async def test_readiness_reports_each_consumer_groups_membership_and_lag(system: System) -> None:
    for app, group in ((system.reminder, system.reminder_group), (system.insights, system.insights_group)):
        async with system.http(app) as http:

            async def sampled(http: httpx.AsyncClient = http, group: str = group) -> bool:
                body = (await http.get("/readyz")).json()
                return body["consumers"][group]["sampled_seconds_ago"] is not None

            await wait_for(sampled, timeout=60, message=f"{group} lag sampled")
            response = await http.get("/readyz")
        body = response.json()
        assert response.status_code == 200, body
        assert body["checks"][f"consumer:{group}"] == "ok"
        state = body["consumers"][group]
        assert state["running"] is True
        assert state["member"] is True
        assert state["assigned_partitions"] >= 1
        assert state["lag"] >= 0
        assert set(state["lag_by_partition"]) <= {f"{system.topics.assignment}/0", f"{system.topics.reminder}/0"}


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "max", "min", "avg", "count", "by", "without",
    "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "deriv", "delta", "clamp_min",
    "max_over_time", "min_over_time", "avg_over_time", "absent", "time", "vector", "bool", "offset", "le",
    "topk", "label_replace", "e", "inf", "nan", "changes", "resets", "sort_desc", "abs", "count_over_time",
}  # fmt: skip


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label matchers, groupings and strings."""
    text = re.sub(r'"[^"]*"', " ", expression)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in METRIC_NAME.finditer(text):
        word = match.group(0)
        after = text[match.end() :].lstrip()
        if word.lower() in PROMQL_WORDS or after.startswith("(") or re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        if text[max(0, match.start() - 1)].isdigit():
            continue
        names.add(word)
    return names


def used_metrics() -> dict[str, set[str]]:
    """Every metric name a dashboard panel or an alert rule reads, with where it is read."""
    used: dict[str, set[str]] = {}
    for path in sorted((ROOT / "deploy/grafana").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                for name in metric_names(target["expr"]):
                    used.setdefault(name, set()).add(f"{path.name}: {panel['title']}")
    import yaml

    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                used.setdefault(name, set()).add(f"rules.yml: {rule.get('alert') or rule.get('record')}")
    return used


def test_the_metric_name_reader_finds_names_and_skips_functions_labels_and_ranges() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(reminder_lateness_seconds_bucket{job="x"}[5m]))) > 5'
    assert metric_names(expr) == {"reminder_lateness_seconds_bucket"}
    assert metric_names("max by (group, topic) (kafka_consumer_group_lag_records) - up offset 5m") == {
        "kafka_consumer_group_lag_records",
        "up",
    }


async def test_every_metric_a_dashboard_panel_or_alert_rule_uses_is_exported(system: System) -> None:
    exported: set[str] = set()
    for app in (system.assignment, system.reminder, system.insights):
        async with system.http(app) as http:
            text = (await http.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                name, kind = line.split()[2:4]
                exported.add(name)
                if kind == "histogram":
                    exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                if kind == "counter":
                    exported |= {f"{name}_total", f"{name}_created"}
            elif line and not line.startswith("#"):
                exported.add(line.split("{")[0].split(" ")[0])
    exported.add("up")  # written by Prometheus itself, for every target
    used = used_metrics()
    assert len(used) >= 10, sorted(used)
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert missing == {}
