"""`python -m homework_shared.auth.mint` prints a token the services accept."""

from __future__ import annotations

import os
import subprocess
import sys

from homework_shared.auth.jwt import Principal, Role, TokenVerifier
from homework_shared.settings import DEV_JWT_SECRET


def run_mint(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    return subprocess.run(
        [sys.executable, "-m", "homework_shared.auth.mint", *args],
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_prints_a_dev_token_the_default_settings_accept() -> None:
    result = run_mint("--role", "therapist", "--sub", "t1", "--practice", "p1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    verifier = TokenVerifier(issuer="homework-dev", audience="homework", secret=DEV_JWT_SECRET)
    assert verifier.verify(result.stdout.strip()) == Principal("t1", Role.THERAPIST, "p1")


def test_the_cli_signs_with_jwt_secret_from_the_environment() -> None:
    secret = "a-secret-from-the-environment-0123456789"
    result = run_mint("--role", "client", "--sub", "c1", "--practice", "p2", env={"JWT_SECRET": secret})
    assert result.returncode == 0, result.stderr
    verifier = TokenVerifier(issuer="homework-dev", audience="homework", secret=secret)
    assert verifier.verify(result.stdout.strip()).sub == "c1"


def test_the_cli_refuses_an_unknown_role() -> None:
    result = run_mint("--role", "janitor", "--sub", "x", "--practice", "p1")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
