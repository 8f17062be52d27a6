"""Bearer tokens verify only with the right key, issuer, audience, expiry and claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from homework_shared.auth.jwt import AuthError, Principal, Role, TokenVerifier
from homework_shared.auth.mint import mint_token
from homework_shared.settings import DEV_JWT_SECRET, ServiceSettings

ISSUER, AUDIENCE = "homework-dev", "homework"


def hs256_verifier() -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, secret=DEV_JWT_SECRET)


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def test_a_valid_token_gives_the_principal() -> None:
    token = mint_token(sub="t1", role=Role.THERAPIST, practice_id="p1")
    assert hs256_verifier().verify(token) == Principal(sub="t1", role=Role.THERAPIST, practice_id="p1")


@pytest.mark.parametrize(
    ("token_args", "reason"),
    [
        ({"ttl_s": -3600}, "token expired"),
        ({"audience": "someone-else"}, "wrong audience"),
        ({"issuer": "evil-issuer"}, "wrong issuer"),
        ({"key": "another-secret-another-secret-another-secret"}, "invalid token"),
        ({"extra_claims": {"role": "superuser"}}, "unknown role: superuser"),
    ],
)
def test_a_bad_token_is_refused_with_a_reason(token_args: dict[str, Any], reason: str) -> None:
    token = mint_token(sub="t1", role=Role.THERAPIST, practice_id="p1", **token_args)
    with pytest.raises(AuthError) as raised:
        hs256_verifier().verify(token)
    assert raised.value.reason == reason


@pytest.mark.parametrize("claim", ["exp", "sub", "role", "practice_id"])
def test_a_token_missing_a_required_claim_is_refused(claim: str) -> None:
    now = int(time.time())
    claims = {"sub": "c1", "role": "client", "practice_id": "p1", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}
    del claims[claim]
    token = jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")
    with pytest.raises(AuthError) as raised:
        hs256_verifier().verify(token)
    assert raised.value.reason == f"missing claim: {claim}"


def test_garbage_is_an_invalid_token() -> None:
    with pytest.raises(AuthError, match="invalid token"):
        hs256_verifier().verify("not-a-jwt")


def test_an_unsigned_token_is_refused() -> None:
    token = jwt.encode({"sub": "t1", "role": "admin", "practice_id": "p1"}, key=None, algorithm="none")
    with pytest.raises(AuthError, match="algorithm not accepted: none"):
        hs256_verifier().verify(token)


def test_rs256_tokens_verify_with_the_public_key(rsa_pair: tuple[str, str]) -> None:
    private_pem, public_pem = rsa_pair
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=public_pem)
    token = mint_token(sub="c1", role=Role.CLIENT, practice_id="p1", key=private_pem, algorithm="RS256")
    assert verifier.verify(token).role is Role.CLIENT
    assert not verifier.may_block


def test_an_hs256_token_is_refused_where_only_a_public_key_is_configured(rsa_pair: tuple[str, str]) -> None:
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=rsa_pair[1])
    with pytest.raises(AuthError, match="algorithm not accepted: HS256"):
        verifier.verify(mint_token(sub="t1", role=Role.THERAPIST, practice_id="p1"))


def test_the_public_key_cannot_be_used_as_an_hmac_secret(rsa_pair: tuple[str, str]) -> None:
    # The classic algorithm-confusion attack: sign HS256 with the public key's text.
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=rsa_pair[1])
    claims = {"sub": "x", "role": "admin", "practice_id": "p1", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**40}
    signing_input = b".".join(base64url(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT"}, claims))
    signature = hmac.new(rsa_pair[1].encode(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64url(signature)).decode()
    with pytest.raises(AuthError, match="algorithm not accepted: HS256"):
        verifier.verify(forged)


def base64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def test_rs256_tokens_verify_with_keys_from_a_jwks_url(
    rsa_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    private_pem, public_pem = rsa_pair
    public_key = serialization.load_pem_public_key(public_pem.encode())
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True) | {"kid": "key-1", "use": "sig"}
    fetched: list[str] = []

    def fetch_data(self: jwt.PyJWKClient) -> dict[str, Any]:
        fetched.append(self.uri)
        return {"keys": [jwk]}

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fetch_data)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url="https://idp.example/jwks.json")
    token = mint_token(
        sub="a1", role=Role.ADMIN, practice_id="p9", key=private_pem, algorithm="RS256", headers={"kid": "key-1"}
    )
    assert verifier.verify(token) == Principal(sub="a1", role=Role.ADMIN, practice_id="p9")
    assert verifier.may_block
    assert fetched == ["https://idp.example/jwks.json"]

    unknown_kid = mint_token(
        sub="a1", role=Role.ADMIN, practice_id="p9", key=private_pem, algorithm="RS256", headers={"kid": "key-2"}
    )
    with pytest.raises(AuthError, match="signing key not found"):
        verifier.verify(unknown_kid)


def test_the_verifier_from_production_settings_ignores_the_secret_when_hs256_is_not_allowed(
    rsa_pair: tuple[str, str],
) -> None:
    settings = ServiceSettings(
        environment="production",
        allow_insecure_transport=True,
        service_name="s",
        kafka_bootstrap_servers="k:9092",
        mongodb_uri="mongodb://m",
        mongodb_database="d",
        jwt_secret="a-production-secret-that-is-long-enough-0123",
        jwt_public_key=rsa_pair[1],
    )
    verifier = TokenVerifier.from_settings(settings)
    token = mint_token(
        sub="t1", role=Role.THERAPIST, practice_id="p1", key="a-production-secret-that-is-long-enough-0123"
    )
    with pytest.raises(AuthError, match="algorithm not accepted: HS256"):
        verifier.verify(token)
