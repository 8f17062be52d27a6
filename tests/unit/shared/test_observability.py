"""Request ids, W3C trace context and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter

from homework_shared.http import create_app
from homework_shared.observability import (
    JsonFormatter,
    TraceContext,
    configure_logging,
    current_request_id,
    current_trace_id,
    current_traceparent,
    parse_traceparent,
    trace_context,
)
from homework_shared.settings import ServiceSettings

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

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


def test_a_valid_traceparent_is_parsed() -> None:
    assert parse_traceparent(INCOMING) == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ],
)
def test_a_malformed_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


async def test_the_callers_trace_is_continued_with_a_new_span(client: httpx.AsyncClient) -> None:
    async with client:
        body = (await client.get("/context", headers={"traceparent": INCOMING, "X-Request-ID": "req-1"})).json()
    trace = parse_traceparent(body["traceparent"])
    assert trace is not None
    assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.span_id != "00f067aa0ba902b7"
    assert body["request_id"] == "req-1"


async def test_a_request_without_trace_or_id_gets_fresh_ones(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.get("/context", headers={"X-Request-ID": "bad id with spaces"})
    body = response.json()
    assert parse_traceparent(body["traceparent"]) is not None
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
    with trace_context(INCOMING, request_id="evt-1") as trace:
        assert current_trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert current_traceparent() == trace.traceparent
        logging.getLogger("test.consumer").warning("handled", extra={"event_id": "e1"})
    assert current_traceparent() is None
    line = json.loads(log_lines.getvalue().splitlines()[-1])
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
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
