"""Request ids, OpenTelemetry trace context (W3C ``traceparent``), Kafka spans and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.trace import SpanKind, StatusCode

from homework_shared.http import create_app
from homework_shared.observability import (
    JsonFormatter,
    _otlp_wanted,
    configure_logging,
    consumer_span,
    current_request_id,
    current_span_id,
    current_trace_id,
    current_traceparent,
    end_span,
    producer_span,
    trace_context,
    traceparent_of,
)
from homework_shared.settings import ServiceSettings
from tests.tracing import SpanRecorder, span_recorder

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = int("4bf92f3577b34da6a3ce929d0e0e4736", 16)


def parts(traceparent: str | None) -> tuple[str, str]:
    """The trace id and span id of a well-formed ``traceparent``."""
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    assert int(flags, 16) & 1, "sampled"
    return trace_id, span_id


router = APIRouter()


@router.get("/context")
async def context() -> dict[str, str | None]:
    logging.getLogger("test.route").info("inside the route")
    return {"traceparent": current_traceparent(), "request_id": current_request_id()}


def settings() -> ServiceSettings:
    return ServiceSettings(
        service_name="obs-test", kafka_bootstrap_servers="k:9092", mongodb_uri="mongodb://m", mongodb_database="d"
    )


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = create_app(settings(), title="t", version="1", routers=[router])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("obs-test"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.fixture(autouse=True)
def recorder() -> SpanRecorder:
    """The process's tracer provider as a service sets it up, recording what each test ends."""
    recorder = span_recorder()
    recorder.clear()
    return recorder


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(value: str) -> None:
    with trace_context(value):
        trace_id, _ = parts(current_traceparent())
    assert trace_id not in ("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32)


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
    ],
)
def test_spans_are_exported_only_when_an_otlp_endpoint_is_set(env: dict[str, str], wanted: bool) -> None:
    assert _otlp_wanted(env) is wanted


def test_a_record_is_sent_in_a_producer_span_and_processed_in_a_linked_child_consumer_span(
    recorder: SpanRecorder,
) -> None:
    send = producer_span("p.assignment", {"traceparent": INCOMING}, message_id="evt-1", key="client-1")
    header = traceparent_of(send)
    end_span(send)

    class Record:
        topic, partition, offset = "p.assignment", 2, 41
        headers = [("ce_id", b"evt-1"), ("traceparent", (header or "").encode())]

    with consumer_span(Record(), "reminder"):
        inner_trace, inner_span = current_trace_id(), current_span_id()
    sent, processed = recorder.ended()
    assert sent.name == "send p.assignment"
    assert sent.kind is SpanKind.PRODUCER
    assert sent.context is not None
    assert sent.context.trace_id == TRACE_ID
    assert sent.parent is not None
    assert sent.parent.span_id == int("00f067aa0ba902b7", 16)
    assert dict(sent.attributes or {})["messaging.message.id"] == "evt-1"
    assert processed.name == "process p.assignment"
    assert processed.kind is SpanKind.CONSUMER
    assert processed.parent is not None
    assert processed.parent.span_id == sent.context.span_id
    assert [link.context.span_id for link in processed.links] == [sent.context.span_id]
    attributes = dict(processed.attributes or {})
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.consumer.group.name"] == "reminder"
    assert attributes["messaging.destination.partition.id"] == "2"
    assert attributes["messaging.message.id"] == "evt-1"
    assert processed.context is not None
    assert (inner_trace, inner_span) == (f"{TRACE_ID:032x}", f"{processed.context.span_id:016x}")


def test_a_failed_send_marks_its_span_failed(recorder: SpanRecorder) -> None:
    end_span(producer_span("t", {}, message_id="e", key=None), TimeoutError("no ack"))
    (span,) = recorder.ended()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "TimeoutError"


async def test_the_callers_trace_is_continued_with_a_new_span(client: httpx.AsyncClient) -> None:
    async with client:
        body = (await client.get("/context", headers={"traceparent": INCOMING, "X-Request-ID": "req-1"})).json()
    trace_id, span_id = parts(body["traceparent"])
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span_id != "00f067aa0ba902b7"
    assert body["request_id"] == "req-1"


async def test_a_request_is_a_server_span_named_by_its_route(client: httpx.AsyncClient, recorder: SpanRecorder) -> None:
    async with client:
        await client.get("/context", headers={"traceparent": INCOMING})
        await client.get("/healthz")
    (server,) = [s for s in recorder.ended() if s.kind is SpanKind.SERVER]
    assert server.name == "GET /context"
    assert server.context is not None
    assert server.context.trace_id == TRACE_ID
    assert dict(server.attributes or {})["http.route"] == "/context"
    assert recorder.open_spans(TRACE_ID) == []


async def test_a_request_without_trace_or_id_gets_fresh_ones(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.get("/context", headers={"X-Request-ID": "bad id with spaces"})
    body = response.json()
    parts(body["traceparent"])
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["request_id"] != "bad id with spaces"


async def test_context_does_not_leak_out_of_the_request(client: httpx.AsyncClient) -> None:
    async with client:
        await client.get("/context", headers={"traceparent": INCOMING})
    assert current_traceparent() is None
    assert current_request_id() is None


async def test_log_lines_carry_request_and_trace_ids(client: httpx.AsyncClient, log_lines: io.StringIO) -> None:
    async with client:
        await client.get("/context", headers={"traceparent": INCOMING, "X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    inside = next(line for line in lines if line["message"] == "inside the route")
    assert inside["request_id"] == "req-42"
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["service"] == "obs-test"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "test.route"
    assert inside["timestamp"].endswith("+00:00")
    request = next(line for line in lines if line["logger"] == "homework.http")
    assert request["route"] == "/context"
    assert request["status"] == 200
    assert request["request_id"] == "req-42"
    assert request["duration_ms"] >= 0


def test_trace_context_binds_ids_for_an_event_handler(log_lines: io.StringIO) -> None:
    with trace_context(INCOMING, request_id="evt-1") as span:
        assert current_trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert current_traceparent() == traceparent_of(span)
        span_id = current_span_id()
        logging.getLogger("test.consumer").warning("handled", extra={"event_id": "e1"})
    assert current_traceparent() is None
    line = json.loads(log_lines.getvalue().splitlines()[-1])
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["span_id"] == span_id
    assert line["request_id"] == "evt-1"
    assert line["event_id"] == "e1"


def test_an_exception_is_logged_with_its_traceback(log_lines: io.StringIO) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("test").exception("failed")
    line = json.loads(log_lines.getvalue().splitlines()[-1])
    assert "ValueError: broken" in line["exception"]


def test_configure_logging_sends_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # as an earlier configuration may leave it
        logging.getLogger("uvicorn.error").disabled = True
        configure_logging(settings())
        logging.getLogger("uvicorn.error").info("from uvicorn")
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["logger"] == "uvicorn.error"
        assert line["service"] == "obs-test"
        assert logging.getLogger("uvicorn.access").disabled
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("uvicorn.access").disabled = False
