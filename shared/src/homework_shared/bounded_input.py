"""Bounded input, before anything else reads it: body size, media type, encoding, nesting and number range.

:class:`BoundedBodyMiddleware` is a pure ASGI middleware, so it runs before FastAPI parses a body
and before any dependency authenticates the caller. For a request with a body it:

1. refuses a ``Content-Length`` over ``max_body_bytes`` with 413 ``payload_too_large`` without
   reading a byte of the body, and a body sent without one (chunked) as soon as the bytes read
   pass the limit. What the client still sends is discarded by the server as it arrives (uvicorn
   drops the body of a request already answered), so the process buffers nothing more and the
   client reads its 413: closing the socket on unread data would reset the connection, and the
   client would see a reset instead of the answer. Cap body size and time at the ingress too;
2. refuses a method with a body (POST, PUT, PATCH) whose ``Content-Type`` is not JSON
   (``application/json`` or ``application/*+json``, UTF-8) with 415 ``unsupported_media_type``;
3. refuses a body that is not UTF-8, nests arrays or objects deeper than ``max_json_depth``, or
   holds a number no field can take (``NaN``, ``Infinity``, a float that overflows to infinity
   such as ``1e400``, an integer beyond 64 bits such as a 100,000-digit one) with 400
   ``invalid_json``. Python's parser would otherwise fail late and unevenly on these: a
   ``RecursionError``, an integer that BSON cannot store, or an infinity that the response
   encoder refuses, each a 500.

A body that is merely malformed JSON is passed on, so FastAPI answers it as before (422 naming
``body``). The body read here (at most ``max_body_bytes``) is handed to the app as it was
received. Written by hand rather than taken from a library: Starlette and uvicorn have no body
limit, and the small ASGI limiters on PyPI check ``Content-Length`` only, not a chunked body.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have; the API's own bodies nest at most 5 deep."""
MAX_INTEGER = 2**63 - 1
"""Largest integer accepted: MongoDB (BSON) stores 64-bit integers."""
MAX_NUMBER_LENGTH = 100
"""Longest number literal, in characters: nothing in the API needs more than 20 digits."""
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class BodyRefused(Exception):
    """A request body refused before the app sees it: an HTTP status, a stable code and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class BoundedBodyMiddleware:
    """Pure ASGI middleware that bounds request bodies before parsing and authentication (see the module)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, read and vet the body of an HTTP request, then hand it to the app unchanged."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        try:
            declared = _content_length(headers)
            if declared is not None and declared > self.max_body_bytes:
                raise self._too_large()
            if scope["method"] in METHODS_WITH_BODY and declared != 0:
                check_media_type(headers.get("content-type"))
            body, disconnected = await self._read(receive)
            if disconnected:
                return
            if body and scope["method"] in METHODS_WITH_BODY:
                vet_json(body, self.max_json_depth)
        except BodyRefused as refused:
            await _refuse(send, refused)
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> BodyRefused:
        return BodyRefused(413, "payload_too_large", f"the request body is larger than {self.max_body_bytes} bytes")

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The whole body, refused as soon as it passes the limit; ``(b"", True)`` if the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", True
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


def check_media_type(content_type: str | None) -> None:
    """415 unless ``content_type`` is JSON (``application/json`` or ``application/*+json``) in UTF-8."""
    media_type, _, parameters = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    kind, _, subtype = media_type.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        shown = media_type or "none"
        raise BodyRefused(
            415, "unsupported_media_type", f"Content-Type {shown!r} is not accepted; send application/json"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BodyRefused(415, "unsupported_media_type", "only the UTF-8 charset is accepted")


def vet_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """400 ``invalid_json`` for a body that is not UTF-8, nests too deep, or holds a number no field can take.

    Syntax errors are left alone: FastAPI reports them (422 naming ``body``).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyRefused(
            400, "invalid_json", f"body: not valid UTF-8 (byte {error.start}); JSON bodies must be UTF-8"
        ) from None
    depth = json_depth(body)
    if depth > max_depth:
        raise BodyRefused(400, "invalid_json", f"body: nested {depth} levels deep; at most {max_depth} are accepted")
    try:
        json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except BodyRefused:
        raise
    except RecursionError:
        raise BodyRefused(400, "invalid_json", f"body: nested too deep; at most {max_depth} levels") from None
    except ValueError:
        return  # malformed JSON: FastAPI answers it (422 naming the body)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (brackets inside strings do not count).

    Strings are cut out with one regular expression and everything but brackets deleted with
    ``bytes.translate``, both in C; only the brackets are walked in Python.
    """
    brackets = _STRING.sub(b"", body).translate(None, delete=_NOT_A_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _bounded_int(literal: str) -> int:
    digits = literal.lstrip("-")
    if len(digits) > 19 or abs(value := int(literal)) > MAX_INTEGER:
        raise BodyRefused(400, "invalid_json", f"body: the integer {_shown(literal)} is out of range (64 bits)")
    return value


def _finite_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_LENGTH or not math.isfinite(value := float(literal)):
        raise BodyRefused(400, "invalid_json", f"body: the number {_shown(literal)} is out of range")
    return value


def _no_constant(literal: str) -> Any:
    raise BodyRefused(400, "invalid_json", f"body: {literal} is not a JSON number")


def _shown(literal: str) -> str:
    return literal if len(literal) <= 24 else f"{literal[:12]}...({len(literal)} characters)"


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def _has_body(headers: dict[str, str]) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() != "0"


def _content_length(headers: dict[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise BodyRefused(400, "invalid_content_length", "Content-Length must be a whole number of bytes")
    return int(raw)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then whatever the connection says next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refused: BodyRefused) -> None:
    """Answer ``refused`` in the shared error shape; uvicorn discards the rest of the body as it arrives."""
    payload = json.dumps({"error": refused.code, "message": refused.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
