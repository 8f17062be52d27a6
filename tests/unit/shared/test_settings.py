"""Settings come from environment variables only, and bad ones are refused with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from homework_shared.settings import DEV_JWT_SECRET, ConfigError, ServiceSettings, load_settings

STRONG_SECRET = "a-production-secret-that-is-long-enough-0123"


class DemoSettings(ServiceSettings):
    service_name: str = "demo"
    mongodb_database: str = "homework_demo"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.lower() in ServiceSettings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:27017")


def test_settings_are_read_from_environment_variables(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "8123")
    monkeypatch.setenv("INCLUDE_FREE_TEXT", "true")
    settings = load_settings(DemoSettings)
    assert settings.http_port == 8123
    assert settings.include_free_text is True
    assert settings.service_name == "demo"
    assert settings.mongodb_database == "homework_demo"
    assert settings.topic_retention_ms == 7 * 24 * 3600 * 1000


def test_a_dotenv_file_is_not_read(required: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HTTP_PORT=9999\n")
    assert load_settings(DemoSettings).http_port == 8000


def test_development_falls_back_to_the_dev_secret_when_no_key_source_is_set(required: None) -> None:
    settings = load_settings(DemoSettings)
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert settings.hs256_allowed


def test_a_missing_variable_is_named_in_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings)
    assert raised.value.code == 2
    assert str(raised.value) == "configuration error: MONGODB_URI: field required"


def test_each_wrong_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "eighty")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings)
    lines = str(raised.value).splitlines()
    assert all(line.startswith("configuration error: ") for line in lines)
    named = {line.removeprefix("configuration error: ").split(":")[0] for line in lines}
    assert named == {"HTTP_PORT", "LOG_FORMAT", "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"}


@pytest.mark.parametrize(
    ("secret", "complaint"),
    [("short-secret", "JWT_SECRET: at least 32 characters"), (DEV_JWT_SECRET, "JWT_SECRET: the development default")],
)
def test_production_refuses_a_weak_secret(
    required: None, monkeypatch: pytest.MonkeyPatch, secret: str, complaint: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", secret)
    monkeypatch.setenv("JWT_ALLOW_HS256_IN_PRODUCTION", "true")
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings)
    assert complaint in str(raised.value)


def test_production_refuses_hs256_alone_unless_allowed(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    with pytest.raises(ConfigError, match="HS256 alone is refused in production"):
        load_settings(DemoSettings)
    monkeypatch.setenv("JWT_ALLOW_HS256_IN_PRODUCTION", "true")
    assert load_settings(DemoSettings).hs256_allowed


def test_production_needs_a_key_source(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ConfigError, match="set at least one JWT key source"):
        load_settings(DemoSettings)


def test_production_with_a_jwks_url_does_not_accept_hs256(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    settings = load_settings(DemoSettings)
    assert not settings.hs256_allowed


def test_a_pem_with_escaped_newlines_is_unescaped(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----")
    assert load_settings(DemoSettings).jwt_public_key == "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"


def test_the_process_exits_with_code_2_and_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ServiceSettings.model_fields}
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9092"
    script = (
        "from homework_shared.settings import ServiceSettings, load_settings\n"
        "class S(ServiceSettings):\n"
        "    service_name: str = 's'\n"
        "    mongodb_database: str = 'd'\n"
        "load_settings(S)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration error: MONGODB_URI: field required"
