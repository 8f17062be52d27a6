"""The one auth check: 401 without a good token, 403 for the wrong role, and who may see which client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from homework_shared.auth.deps import ClientDep, PrincipalDep, TherapistDep, can_see_client
from homework_shared.auth.jwt import Principal, Role
from homework_shared.auth.mint import mint_token
from homework_shared.http import create_app
from homework_shared.settings import ServiceSettings

router = APIRouter()


@router.get("/whoami")
async def whoami(principal: PrincipalDep) -> dict[str, str]:
    return {"sub": principal.sub, "role": principal.role.value, "practice_id": principal.practice_id}


@router.get("/therapist-only")
async def therapist_only(principal: TherapistDep) -> dict[str, str]:
    return {"sub": principal.sub}


@router.get("/client-only")
async def client_only(principal: ClientDep) -> dict[str, str]:
    return {"sub": principal.sub}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        service_name="auth-test", kafka_bootstrap_servers="k:9092", mongodb_uri="mongodb://m", mongodb_database="d"
    )
    app = create_app(settings, title="auth test", version="0", routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        yield http


def bearer(role: Role, sub: str = "u1", practice_id: str = "p1", **kwargs: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(sub=sub, role=role, practice_id=practice_id, **kwargs)}"}


async def test_a_valid_token_reaches_the_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers=bearer(Role.CLIENT, sub="c7", practice_id="p3"))
    assert response.status_code == 200
    assert response.json() == {"sub": "c7", "role": "client", "practice_id": "p3"}


async def test_no_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


async def test_an_expired_token_is_401_saying_why(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers=bearer(Role.THERAPIST, ttl_s=-600))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"error": "unauthorized", "message": "token expired"}


@pytest.mark.parametrize(
    ("path", "role", "status"),
    [
        ("/therapist-only", Role.THERAPIST, 200),
        ("/therapist-only", Role.ADMIN, 200),
        ("/therapist-only", Role.CLIENT, 403),
        ("/client-only", Role.CLIENT, 200),
        ("/client-only", Role.THERAPIST, 403),
    ],
)
async def test_roles_are_enforced(client: httpx.AsyncClient, path: str, role: Role, status: int) -> None:
    response = await client.get(path, headers=bearer(role))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize(
    ("principal", "client_id", "practice_id", "visible"),
    [
        (Principal("c1", Role.CLIENT, "p1"), "c1", "p1", True),
        (Principal("c1", Role.CLIENT, "p1"), "c2", "p1", False),
        (Principal("c1", Role.CLIENT, "p1"), "c1", "p2", False),
        (Principal("t1", Role.THERAPIST, "p1"), "c2", "p1", True),
        (Principal("t1", Role.THERAPIST, "p1"), "c2", "p2", False),
        (Principal("a1", Role.ADMIN, "p1"), "c9", "p1", True),
        (Principal("a1", Role.ADMIN, "p1"), "c9", "p2", False),
    ],
)
def test_who_may_see_a_client(principal: Principal, client_id: str, practice_id: str, visible: bool) -> None:
    assert can_see_client(principal, client_id, practice_id) is visible
