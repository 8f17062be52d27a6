"""Bearer-token verification: who is calling (``Principal``), checked against the configured JWT key source."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from homework_shared.settings import ServiceSettings

REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub", "role", "practice_id")
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")


class Role(StrEnum):
    """What a caller is to the practice."""

    THERAPIST = "therapist"
    CLIENT = "client"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: subject id, role and the practice (tenant) they belong to."""

    sub: str
    role: Role
    practice_id: str


class AuthError(Exception):
    """A token that does not verify; ``reason`` says why, in words safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenVerifier:
    """Verifies bearer tokens: HS256 with a shared secret; RS256 or ES256 with a PEM public key or a JWKS URL.

    The algorithm a token names in its header must be the one its key is for: an RSA key verifies
    only RS256, a P-256 key only ES256, a secret only HS256. So no token can pick a key's other
    use (HS256 over a public key's text, or ``alg: none``). PyJWT does the signature checks.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        secret: str | None = None,
        public_key: str | None = None,
        jwks_url: str | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        if not (secret or public_key or jwks_url):
            raise ValueError("a TokenVerifier needs a secret, a public key or a JWKS URL")
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._secret = secret
        self._public_key = load_pem_public_key(public_key.encode()) if public_key else None
        self._public_key_algorithm = _algorithm_of(self._public_key) if self._public_key else None
        self._jwks = jwt.PyJWKClient(jwks_url, timeout=5) if jwks_url else None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        """The verifier a service's settings describe; HS256 only where the settings allow it."""
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret and settings.hs256_allowed else None
        return cls(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            secret=secret,
            public_key=settings.jwt_public_key,
            jwks_url=settings.jwt_jwks_url,
        )

    @property
    def may_block(self) -> bool:
        """True when verifying may fetch keys over the network (JWKS), so callers run it off the event loop."""
        return self._jwks is not None

    def verify(self, token: str) -> Principal:
        """Check signature, issuer, audience, expiry and claims; return the caller or raise ``AuthError``."""
        try:
            key, algorithm = self._key_for(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong issuer") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(f"missing claim: {error.claim}") from None
        except jwt.PyJWKClientError:
            raise AuthError("signing key not found") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        return _principal_from(claims)

    def _key_for(self, token: str) -> tuple[Any, str]:
        algorithm = jwt.get_unverified_header(token).get("alg")
        if algorithm == "HS256" and self._secret:
            return self._secret, algorithm
        if algorithm in ASYMMETRIC_ALGORITHMS and algorithm == self._public_key_algorithm:
            return self._public_key, algorithm
        if algorithm in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            signing_key = self._jwks.get_signing_key_from_jwt(token)
            # The key's own type (or its JWK "alg") decides: an RS256 header over an EC key is refused.
            if signing_key.algorithm_name != algorithm:
                raise AuthError(f"algorithm {algorithm} does not match the signing key")
            return signing_key.key, algorithm
        raise AuthError(f"algorithm not accepted: {algorithm}")


def _algorithm_of(key: object) -> str:
    """The one algorithm a PEM public key verifies: RS256 for RSA, ES256 for P-256; other keys are refused."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("JWT_PUBLIC_KEY: an RSA or EC P-256 public key is required")


def _principal_from(claims: dict[str, Any]) -> Principal:
    sub, role, practice_id = claims["sub"], claims["role"], claims["practice_id"]
    if not (isinstance(sub, str) and sub and isinstance(practice_id, str) and practice_id):
        raise AuthError("sub and practice_id must be non-empty strings")
    try:
        return Principal(sub=sub, role=Role(role), practice_id=practice_id)
    except ValueError:
        raise AuthError(f"unknown role: {role}") from None
