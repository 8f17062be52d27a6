"""Bodies are bounded before FastAPI parses them and before authentication: size, media type, UTF-8, depth, numbers.

The app here is the shared app factory with a route behind a bearer-token dependency that records
every call, so a test can show that a refused body never reached authentication or the handler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header

from homework_shared.bounded_input import MAX_JSON_DEPTH, json_depth, vet_json
from homework_shared.errors import Unauthorized
from homework_shared.http import create_app
from homework_shared.settings import ServiceSettings

LIMIT = 256 * 1024
calls: list[str] = []


def authenticated(authorization: Annotated[str | None, Header()] = None) -> str:
    calls.append("auth")
    if authorization != "Bearer ok":
        raise Unauthorized("unauthorized", "a bearer token is required")
    return "caller"


router = APIRouter()


@router.post("/v1/things", status_code=201)
async def create_thing(payload: dict[str, Any], caller: Annotated[str, Depends(authenticated)]) -> dict[str, Any]:
    calls.append("handler")
    return {"keys": sorted(payload)}


@router.post("/v1/things/{thing_id}/pause")
async def pause_thing(thing_id: str, caller: Annotated[str, Depends(authenticated)]) -> dict[str, str]:
    return {"paused": thing_id}


def app() -> FastAPI:
    settings = ServiceSettings(
        service_name="bounds-test",
        kafka_bootstrap_servers="k:9092",
        mongodb_uri="mongodb://m",
        mongodb_database="d",
        max_body_bytes=LIMIT,
    )
    return create_app(settings, title="t", version="1", routers=[router])


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    calls.clear()
    transport = httpx.ASGITransport(app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


AUTH = {"Authorization": "Bearer ok"}
JSON = {"Content-Type": "application/json"}


async def chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    """A body streamed in chunks: httpx sends it chunked, without Content-Length."""
    sent = 0
    yield b'{"a": "'
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert body["message"]
    assert calls == [], "the body was refused before authentication and the handler"
    return body


async def test_a_body_within_the_limit_reaches_the_handler_unchanged(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/things", json={"b": 1, "a": "x" * (LIMIT - 100)}, headers=AUTH)
    assert response.status_code == 201, response.text
    assert response.json() == {"keys": ["a", "b"]}
    assert calls == ["auth", "handler"]


async def test_a_declared_length_over_the_limit_is_413_before_authentication(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/things", content=b"{" + b" " * LIMIT + b"}", headers=JSON)
    body = assert_refused(response, 413, "payload_too_large")
    assert str(LIMIT) in body["message"]


async def test_a_chunked_body_is_413_once_it_passes_the_limit(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/things", content=chunks(4 * LIMIT), headers={**JSON, **AUTH})
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "payload_too_large")


async def test_a_chunked_body_within_the_limit_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/things", content=chunks(LIMIT // 2), headers={**JSON, **AUTH})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None, "application/xml"],
)
async def test_a_body_that_is_not_json_is_415(http: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    response = await http.post("/v1/things", content=b'{"a": 1}', headers=headers)
    body = assert_refused(response, 415, "unsupported_media_type")
    assert "application/json" in body["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
async def test_json_media_types_are_accepted(http: httpx.AsyncClient, content_type: str) -> None:
    response = await http.post("/v1/things", content=b'{"a": 1}', headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 201, response.text


async def test_a_charset_other_than_utf8_is_415(http: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Content-Type": "application/json; charset=latin-1"}
    response = await http.post("/v1/things", content=b'{"a": 1}', headers=headers)
    assert_refused(response, 415, "unsupported_media_type")


async def test_a_post_without_a_body_needs_no_content_type(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/things/t1/pause", headers=AUTH)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b'{"a": "\xff\xfe"}', "not valid UTF-8"),
        (b"[" * 10_000 + b"]" * 10_000, "nested 10000 levels deep"),
        (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, "nested 10000 levels deep"),
        (b'{"a": 1e400}', "the number 1e400 is out of range"),
        (b'{"a": -1e400}', "out of range"),
        (b'{"a": ' + b"9" * 100_000 + b"}", "the integer 999999999999...(100000 characters) is out of range"),
        (b'{"a": 9223372036854775808}', "out of range (64 bits)"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
    ],
    ids=["invalid utf-8", "10000 arrays", "10000 objects", "1e400", "-1e400", "100000 digits", "2**63", "NaN", "Inf"],
)
async def test_a_body_no_field_can_take_is_a_clear_400(http: httpx.AsyncClient, body: bytes, complaint: str) -> None:
    response = await http.post("/v1/things", content=body, headers={**JSON, **AUTH})
    refused = assert_refused(response, 400, "invalid_json")
    assert complaint in refused["message"]


async def test_the_largest_64_bit_integer_and_a_large_finite_float_are_accepted(http: httpx.AsyncClient) -> None:
    body = b'{"a": 9223372036854775807, "b": -9223372036854775807, "c": 1.7e308}'
    response = await http.post("/v1/things", content=body, headers={**JSON, **AUTH})
    assert response.status_code == 201, response.text


async def test_malformed_json_is_left_to_fastapi_which_names_the_body(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/things", content=b'{"a": ', headers={**JSON, **AUTH})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"].startswith("body")


async def test_an_unparseable_content_length_is_400_without_reading_the_body() -> None:
    calls.clear()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/things",
        "raw_path": b"/v1/things",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1e3")],
    }
    await app()(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "invalid_content_length"
    assert calls == []


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert json_depth(json.dumps({"a": "[[[[{{{{" * 100, "b": [[1]]}).encode()) == 3
    assert json_depth(b'{"a": "\\"[[[["}') == 1
    vet_json(json.dumps({"text": "[" * 10_000}).encode())


def test_nesting_at_the_limit_is_accepted_and_one_deeper_is_not() -> None:
    vet_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(Exception, match="nested 33 levels deep"):
        vet_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
