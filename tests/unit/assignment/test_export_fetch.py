"""How the export's fan-out treats each answer of a part (httpx's mock transport stands in for the other service)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from homework_assignment.export import PartUnavailable, fetch_part
from homework_shared.errors import DomainError
from homework_shared.export import ExportTooLarge
from homework_shared.observability import trace_context, traceparent_of
from tests.tracing import span_recorder

TOKEN = "Bearer the-callers-token"
PART = {"schema_version": 1, "generated_at": "2026-12-02T12:00:00Z", "collections": {"plans": [{"_id": "a-1"}]}}

Handler = Callable[[httpx.Request], httpx.Response]


async def fetch(handler: Handler, client_id: str = "c-1") -> object:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await fetch_part(http, "reminder", "http://reminder:8000/", client_id, TOKEN)


async def test_a_part_is_asked_for_with_the_callers_token_and_the_client_id_escaped() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=PART)

    span_recorder()  # the tracer provider a service sets up
    with trace_context(request_id="req-export-1") as trace:
        part = await fetch(answer, client_id="c/1 ?x")
    assert [r.url.raw_path for r in seen] == [b"/v1/clients/c%2F1%20%3Fx/export-part"]
    assert seen[0].headers["Authorization"] == TOKEN
    assert seen[0].headers["X-Request-ID"] == "req-export-1"
    assert seen[0].headers["traceparent"] == traceparent_of(trace)  # the part's logs join the export's trace
    assert part.collections == {"plans": [{"_id": "a-1"}]}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (lambda r: httpx.Response(500, json={"error": "internal", "message": "boom"}), 502, "export_part_failed"),
        (lambda r: httpx.Response(404, json={"error": "client_not_found"}), 502, "export_part_failed"),
        (lambda r: httpx.Response(200, json={"unexpected": True}), 502, "export_part_failed"),
        (lambda r: httpx.Response(200, text="<html>a proxy page</html>"), 502, "export_part_failed"),
        (lambda r: httpx.Response(413, json={"error": "export_too_large", "message": "too many"}), 413, None),
    ],
    ids=["server error", "refused", "unknown shape", "not json", "too large"],
)
async def test_a_part_that_fails_fails_the_export_naming_the_service(answer: Handler, status: int, code: str) -> None:
    with pytest.raises(DomainError) as failed:
        await fetch(answer)
    assert failed.value.status == status
    assert "reminder" in failed.value.message
    if code:
        assert isinstance(failed.value, PartUnavailable)
        assert failed.value.code == code
    else:
        assert isinstance(failed.value, ExportTooLarge)


async def test_a_service_that_cannot_be_reached_is_503_with_retry_after() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PartUnavailable) as failed:
        await fetch(refuse)
    assert (failed.value.status, failed.value.code) == (503, "export_part_unavailable")
    assert "reminder" in failed.value.message
    assert failed.value.headers["Retry-After"]
