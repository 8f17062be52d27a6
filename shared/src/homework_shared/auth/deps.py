"""FastAPI dependencies for the one auth check: who is calling, may their role do this, may they see this client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from homework_shared.auth.jwt import AuthError, Principal, Role, TokenVerifier
from homework_shared.errors import Forbidden, Unauthorized

bearer_scheme = HTTPBearer(auto_error=False, description="JWT with sub, role and practice_id claims")


def token_verifier(request: Request) -> TokenVerifier:
    """The verifier the app factory put on ``app.state.token_verifier``."""
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


async def get_principal(
    verifier: Annotated[TokenVerifier, Depends(token_verifier)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The verified caller, or 401 with ``WWW-Authenticate: Bearer`` when the token is missing or bad."""
    if credentials is None:
        raise Unauthorized("unauthorized", "bearer token required", headers={"WWW-Authenticate": "Bearer"})
    try:
        if verifier.may_block:
            return await run_in_threadpool(verifier.verify, credentials.credentials)
        return verifier.verify(credentials.credentials)
    except AuthError as error:
        raise Unauthorized(
            "unauthorized", error.reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only callers with one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    async def principal_with_role(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden("forbidden", f"role {principal.role.value} may not do this")
        return principal

    return principal_with_role


PrincipalDep = Annotated[Principal, Depends(get_principal)]
TherapistDep = Annotated[Principal, Depends(require_role(Role.THERAPIST, Role.ADMIN))]
ClientDep = Annotated[Principal, Depends(require_role(Role.CLIENT))]


def can_see_client(principal: Principal, client_id: str, practice_id: str) -> bool:
    """Whether ``principal`` may see data of ``client_id`` in ``practice_id``.

    A client sees only their own data in their own practice; a therapist or admin sees every
    client of their own practice. When this is False the service answers 404, not 403, so a
    caller cannot learn that another practice's resource exists.
    """
    if principal.practice_id != practice_id:
        return False
    if principal.role is Role.CLIENT:
        return principal.sub == client_id
    return True
