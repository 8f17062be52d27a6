"""Mint a development JWT: ``python -m homework_shared.auth.mint --role therapist --sub t1 --practice p1``."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from homework_shared.auth.jwt import Role
from homework_shared.settings import DEV_JWT_SECRET, ServiceSettings

DEFAULT_ISSUER: str = ServiceSettings.model_fields["jwt_issuer"].default
DEFAULT_AUDIENCE: str = ServiceSettings.model_fields["jwt_audience"].default


def mint_token(
    *,
    sub: str,
    role: Role | str,
    practice_id: str,
    key: str | bytes = DEV_JWT_SECRET,
    algorithm: str = "HS256",
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    ttl_s: int = 3600,
    now: float | None = None,
    headers: Mapping[str, Any] | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed token for ``sub`` with the claims the services require (HS256 with the dev secret by default)."""
    issued_at = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": str(role),
        "practice_id": practice_id,
        "iss": issuer,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + ttl_s,
        **(extra_claims or {}),
    }
    return jwt.encode(claims, key, algorithm=algorithm, headers=dict(headers) if headers else None)


def main(argv: Sequence[str] | None = None) -> None:
    """Print one HS256 token for the given role, subject and practice."""
    parser = argparse.ArgumentParser(prog="python -m homework_shared.auth.mint", description=__doc__)
    parser.add_argument("--role", required=True, choices=[role.value for role in Role])
    parser.add_argument("--sub", required=True, help="subject: the therapist, client or admin id")
    parser.add_argument("--practice", required=True, help="practice (tenant) id")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires (default 3600)")
    parser.add_argument("--secret", help="HS256 secret (default: JWT_SECRET, else the development secret)")
    parser.add_argument("--issuer", default=os.environ.get("JWT_ISSUER") or DEFAULT_ISSUER)
    parser.add_argument("--audience", default=os.environ.get("JWT_AUDIENCE") or DEFAULT_AUDIENCE)
    args = parser.parse_args(argv)
    print(
        mint_token(
            sub=args.sub,
            role=args.role,
            practice_id=args.practice,
            key=args.secret or os.environ.get("JWT_SECRET") or DEV_JWT_SECRET,
            issuer=args.issuer,
            audience=args.audience,
            ttl_s=args.ttl,
        )
    )


if __name__ == "__main__":
    main()
