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
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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


# ---------------------------------------------------------------- ES256 (the prod overlay's other algorithm)


@pytest.fixture(scope="module")
def ec_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def jwks_verifier(monkeypatch: pytest.MonkeyPatch, *jwks: dict[str, Any]) -> TokenVerifier:
    """A verifier whose JWKS URL answers ``jwks`` (the HTTP fetch replaced, PyJWKClient's key handling real)."""
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda self: {"keys": list(jwks)})
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url="https://idp.example/jwks.json")


def ec_jwk(public_pem: str, kid: str) -> dict[str, Any]:
    public_key = serialization.load_pem_public_key(public_pem.encode())
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)
    return jwk | {"kid": kid, "use": "sig"}


def test_es256_tokens_verify_with_an_ec_public_key(ec_pair: tuple[str, str]) -> None:
    private_pem, public_pem = ec_pair
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=public_pem)
    token = mint_token(sub="c1", role=Role.CLIENT, practice_id="p1", key=private_pem, algorithm="ES256")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert verifier.verify(token) == Principal(sub="c1", role=Role.CLIENT, practice_id="p1")


def test_es256_tokens_verify_with_ec_keys_from_a_jwks_url(
    ec_pair: tuple[str, str], rsa_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    private_pem, public_pem = ec_pair
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(
        serialization.load_pem_public_key(rsa_pair[1].encode()), as_dict=True
    ) | {"kid": "rsa-1", "use": "sig"}
    verifier = jwks_verifier(monkeypatch, rsa_jwk, ec_jwk(public_pem, "ec-1"))
    token = mint_token(
        sub="t7", role=Role.THERAPIST, practice_id="p2", key=private_pem, algorithm="ES256", headers={"kid": "ec-1"}
    )
    assert verifier.verify(token) == Principal(sub="t7", role=Role.THERAPIST, practice_id="p2")
    # The RSA key of the same set still verifies RS256 tokens beside it.
    rs_token = mint_token(
        sub="t7", role=Role.THERAPIST, practice_id="p2", key=rsa_pair[0], algorithm="RS256", headers={"kid": "rsa-1"}
    )
    assert verifier.verify(rs_token).sub == "t7"


def test_an_es256_token_signed_by_another_key_is_refused(ec_pair: tuple[str, str]) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=ec_pair[1])
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(mint_token(sub="c1", role=Role.CLIENT, practice_id="p1", key=other_pem, algorithm="ES256"))


def test_an_rs256_header_over_an_ec_key_and_an_es256_header_over_an_rsa_key_are_refused(
    ec_pair: tuple[str, str], rsa_pair: tuple[str, str]
) -> None:
    ec_verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=ec_pair[1])
    rsa_verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=rsa_pair[1])
    rs_token = mint_token(sub="x", role=Role.ADMIN, practice_id="p1", key=rsa_pair[0], algorithm="RS256")
    es_token = mint_token(sub="x", role=Role.ADMIN, practice_id="p1", key=ec_pair[0], algorithm="ES256")
    with pytest.raises(AuthError, match="algorithm not accepted: RS256"):
        ec_verifier.verify(rs_token)
    with pytest.raises(AuthError, match="algorithm not accepted: ES256"):
        rsa_verifier.verify(es_token)


def test_an_rs256_header_naming_an_ec_key_of_the_jwks_is_refused(
    ec_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = jwks_verifier(monkeypatch, ec_jwk(ec_pair[1], "ec-1"))
    claims = {"sub": "x", "role": "admin", "practice_id": "p1", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**40}
    header = base64url(json.dumps({"alg": "RS256", "kid": "ec-1", "typ": "JWT"}).encode())
    forged = b".".join([header, base64url(json.dumps(claims).encode()), base64url(b"\x00" * 64)]).decode()
    with pytest.raises(AuthError, match="algorithm RS256 does not match the signing key"):
        verifier.verify(forged)


def test_hs256_signed_with_the_ec_public_key_text_is_refused(ec_pair: tuple[str, str]) -> None:
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=ec_pair[1])
    claims = {"sub": "x", "role": "admin", "practice_id": "p1", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**40}
    signing_input = b".".join(base64url(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT"}, claims))
    signature = hmac.new(ec_pair[1].encode(), signing_input, hashlib.sha256).digest()
    with pytest.raises(AuthError, match="algorithm not accepted: HS256"):
        verifier.verify((signing_input + b"." + base64url(signature)).decode())


def test_an_hs256_key_published_in_the_jwks_is_not_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # A symmetric ("oct") key in the identity provider's key set must not turn into an HMAC secret.
    secret = "a-shared-secret-in-the-key-set-0123456789"
    oct_jwk = {"kty": "oct", "k": base64url(secret.encode()).decode(), "kid": "oct-1", "use": "sig"}
    verifier = jwks_verifier(monkeypatch, oct_jwk)
    token = mint_token(sub="x", role=Role.ADMIN, practice_id="p1", key=secret, headers={"kid": "oct-1"})
    with pytest.raises(AuthError, match="algorithm not accepted: HS256"):
        verifier.verify(token)


@pytest.mark.parametrize("key_source", ["pem", "jwks"])
def test_alg_none_is_refused_with_an_ec_key_or_jwks(
    key_source: str, ec_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = (
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=ec_pair[1])
        if key_source == "pem"
        else jwks_verifier(monkeypatch, ec_jwk(ec_pair[1], "ec-1"))
    )
    claims = {"sub": "x", "role": "admin", "practice_id": "p1", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**40}
    token = jwt.encode(claims, key=None, algorithm="none", headers={"kid": "ec-1"})
    with pytest.raises(AuthError, match="algorithm not accepted: none"):
        verifier.verify(token)


def test_a_public_key_of_another_curve_is_refused_when_the_verifier_is_built() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = p384.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="RSA or EC P-256"):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, public_key=pem)
