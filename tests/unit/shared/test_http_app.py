"""The app factory: health, readiness, metrics by route template, and one error body shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from homework_shared.errors import Conflict, NotFound, Unprocessable
from homework_shared.http import add_readiness_check, create_app
from homework_shared.settings import ServiceSettings


class Schedule(BaseModel):
    timezone: str


class AssignmentCreate(BaseModel):
    title: str
    schedule: Schedule


router = APIRouter()


@router.get("/v1/assignments/{assignment_id}")
async def get_assignment(assignment_id: str) -> dict[str, str]:
    if assignment_id == "missing":
        raise NotFound("assignment_not_found", f"no assignment {assignment_id}")
    if assignment_id == "done":
        raise Conflict("assignment_closed", "the assignment is closed")
    if assignment_id == "bad":
        raise Unprocessable("schedule_invalid", "20:00 does not exist on that day")
    return {"id": assignment_id}


@router.post("/v1/assignments", status_code=201)
async def create_assignment(payload: AssignmentCreate) -> dict[str, str]:
    return {"title": payload.title}


DATABASE_ERRORS = {
    "selection": ServerSelectionTimeoutError("no servers"),
    "reconnect": AutoReconnect("connection reset"),
    "network": NetworkTimeout("timed out"),
    "execution": ExecutionTimeout("operation exceeded time limit"),
}


@router.get("/db/{kind}")
async def database_call(kind: str) -> None:
    raise DATABASE_ERRORS[kind]


@router.get("/db-write/{labels}")
async def conflicting_write(labels: str) -> None:
    error_labels = [] if labels == "none" else [labels]
    raise OperationFailure("WriteConflict error", 112, {"code": 112, "errorLabels": error_labels})


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("something unexpected")


def settings() -> ServiceSettings:
    return ServiceSettings(
        service_name="http-test", kafka_bootstrap_servers="k:9092", mongodb_uri="mongodb://m", mongodb_database="d"
    )


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(settings(), title="t", version="1", routers=[router])) as http:
        yield http


async def test_healthz_is_ok_without_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_validation_error_names_the_field_at_fault(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/assignments", json={"title": "Breathing", "schedule": {}})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_failed"
    assert [item["field"] for item in body["detail"]] == ["body.schedule.timezone"]
    assert body["detail"][0]["message"]


@pytest.mark.parametrize(
    ("assignment_id", "status", "code"),
    [("missing", 404, "assignment_not_found"), ("done", 409, "assignment_closed"), ("bad", 422, "schedule_invalid")],
)
async def test_domain_errors_answer_their_status_and_code(
    client: httpx.AsyncClient, assignment_id: str, status: int, code: str
) -> None:
    response = await client.get(f"/v1/assignments/{assignment_id}")
    assert response.status_code == status
    assert response.json()["error"] == code
    assert response.json()["message"]


async def test_an_unknown_path_uses_the_same_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/path")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Not Found"}


@pytest.mark.parametrize("kind", sorted(DATABASE_ERRORS))
async def test_an_unreachable_database_is_503_with_retry_after(client: httpx.AsyncClient, kind: str) -> None:
    response = await client.get(f"/db/{kind}")
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0


async def test_a_write_conflict_left_after_the_retries_is_503_database_busy(client: httpx.AsyncClient) -> None:
    # E.g. the orphaned transaction of a SIGKILLed replica holding the documents until its lifetime ends.
    response = await client.get("/db-write/TransientTransactionError")
    assert response.status_code == 503
    assert response.json()["error"] == "database_busy"
    assert int(response.headers["Retry-After"]) > 0


async def test_another_database_error_is_still_a_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/db-write/none")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"


async def test_an_unexpected_error_is_a_json_500_with_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert response.headers["X-Request-ID"] == "req-500"


async def test_metrics_are_labelled_by_route_template_not_raw_path(client: httpx.AsyncClient) -> None:
    await client.get("/v1/assignments/a-123")
    await client.get("/v1/assignments/missing")
    await client.get("/no/such/path")
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/v1/assignments/{assignment_id}",status="200"} 1.0' in text
    assert 'http_requests_total{method="GET",route="/v1/assignments/{assignment_id}",status="404"} 1.0' in text
    assert 'route="unmatched"' in text
    assert "a-123" not in text
    assert 'http_request_duration_seconds_count{method="GET",route="/v1/assignments/{assignment_id}"} 2.0' in text


async def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = (create_app(settings(), title="t", version="1", routers=[router]) for _ in range(2))
    async with client_for(first) as one, client_for(second) as two:
        await one.get("/healthz")
        text = (await two.get("/metrics")).text
    assert 'route="/healthz"' not in text
    assert first.state.metrics_registry is not second.state.metrics_registry


async def test_service_metrics_are_exposed_on_the_app_registry(client: httpx.AsyncClient) -> None:
    app = create_app(settings(), title="t", version="1")
    created = app.state.metrics.counter("assignments_created_total", "Assignments created", ["practice"])
    assert app.state.metrics.counter("assignments_created_total", "Assignments created", ["practice"]) is created
    created.labels("p1").inc(3)
    async with client_for(app) as http:
        text = (await http.get("/metrics")).text
    assert 'assignments_created_total{practice="p1"} 3.0' in text


def check_returning(value: bool, delay_s: float = 0.0) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await asyncio.sleep(delay_s)
        return value

    return check


async def failing_check() -> bool:
    raise ConnectionError("refused")


async def test_readyz_is_200_when_every_check_passes() -> None:
    app = create_app(settings(), title="t", version="1", readiness_checks={"mongodb": check_returning(True)})
    async with client_for(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"mongodb": "ok"}}


async def test_readyz_is_503_naming_the_checks_that_failed() -> None:
    app = create_app(
        settings(),
        title="t",
        version="1",
        readiness_checks={"mongodb": check_returning(True), "kafka": check_returning(False)},
        readiness_timeout_s=0.2,
    )
    add_readiness_check(app, "slow", check_returning(True, delay_s=5))
    add_readiness_check(app, "raises", failing_check)
    async with client_for(app) as http:
        started = asyncio.get_running_loop().time()
        response = await http.get("/readyz")
        elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 503
    assert response.json() == {
        "status": "not_ready",
        "checks": {"mongodb": "ok", "kafka": "failed", "slow": "timeout", "raises": "failed"},
    }
    assert elapsed < 2


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/assignments/{assignment_id}" in schema["paths"]
    assert "/metrics" not in schema["paths"]
