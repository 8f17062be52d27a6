"""Auth shared by the services: JWT verification and FastAPI dependencies (dev tokens: ``auth.mint``)."""

from homework_shared.auth.deps import (
    ClientDep,
    PrincipalDep,
    TherapistDep,
    can_see_client,
    get_principal,
    require_role,
)
from homework_shared.auth.jwt import AuthError, Principal, Role, TokenVerifier

__all__ = [
    "AuthError",
    "ClientDep",
    "Principal",
    "PrincipalDep",
    "Role",
    "TherapistDep",
    "TokenVerifier",
    "can_see_client",
    "get_principal",
    "require_role",
]
