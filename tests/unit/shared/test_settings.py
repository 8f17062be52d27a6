"""Settings come from environment variables only, and bad ones are refused with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from homework_shared.settings import (
    DEV_JWT_SECRET,
    ConfigError,
    ConsumerSettings,
    ServiceSettings,
    load_settings,
    mongodb_uri_uses_tls,
)

STRONG_SECRET = "a-production-secret-that-is-long-enough-0123"


class DemoSettings(ServiceSettings):
    service_name: str = "demo"
    mongodb_database: str = "homework_demo"


class DemoConsumerSettings(ConsumerSettings):
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


@pytest.fixture
def development(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")


@pytest.fixture
def encrypted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka over TLS and MongoDB over TLS, as production needs."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9093")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example:27017/?replicaSet=rs0&tls=true")


def test_settings_are_read_from_environment_variables(development: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "8123")
    monkeypatch.setenv("INCLUDE_FREE_TEXT", "true")
    settings = load_settings(DemoSettings)
    assert settings.http_port == 8123
    assert settings.include_free_text is True
    assert settings.service_name == "demo"
    assert settings.mongodb_database == "homework_demo"
    assert settings.topic_retention_ms == 7 * 24 * 3600 * 1000


def test_a_dotenv_file_is_not_read(development: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HTTP_PORT=9999\n")
    assert load_settings(DemoSettings).http_port == 8000


def test_development_falls_back_to_the_dev_secret_when_no_key_source_is_set(development: None) -> None:
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
    [
        ("short-secret", "JWT_SECRET: at least 32 characters"),
        (DEV_JWT_SECRET, "JWT_SECRET: the public development default"),
    ],
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


def test_production_refuses_hs256_alone_unless_allowed(encrypted: None, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_production_with_a_jwks_url_does_not_accept_hs256(encrypted: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    settings = load_settings(DemoSettings)
    assert not settings.hs256_allowed


def test_a_pem_with_escaped_newlines_is_unescaped(development: None, monkeypatch: pytest.MonkeyPatch) -> None:
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


# ---- fail closed: production unless ENVIRONMENT=development is said ------------------------


def test_environment_defaults_to_production_and_refuses_the_development_secret(
    required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", DEV_JWT_SECRET)
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings)
    assert (
        "configuration error: JWT_SECRET: the public development default is accepted only with "
        "ENVIRONMENT=development (ENVIRONMENT is production)"
    ) in str(raised.value).splitlines()
    assert DemoSettings.model_fields["environment"].default == "production"


def test_without_an_environment_no_key_source_is_a_missing_setting_named_at_startup(
    encrypted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings)
    assert str(raised.value).startswith(
        "configuration error: JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL: set at least one JWT key source"
    )


@pytest.mark.parametrize("environment", [None, "production", "test"])
def test_time_compression_is_refused_unless_development(
    encrypted: None, monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    if environment:
        monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("CLOCK_SPEED", "720")
    monkeypatch.setenv("CLOCK_ORIGIN", "2026-01-01T00:00:00Z")
    monkeypatch.setenv("CLOCK_REAL_ORIGIN", "2026-01-01T00:00:00Z")
    with pytest.raises(ConfigError, match="CLOCK_SPEED: time compression is accepted only with ENVIRONMENT=dev"):
        load_settings(DemoSettings)
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings(DemoSettings).clock_speed == 720


def test_production_refuses_plain_text_kafka_and_mongodb_naming_each_setting(
    required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings)
    lines = str(raised.value).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("configuration error: KAFKA_SECURITY_PROTOCOL: PLAINTEXT sends records unencrypted")
    assert lines[1].startswith("configuration error: MONGODB_URI: connects without TLS")
    assert all("ALLOW_INSECURE_TRANSPORT=true" in line for line in lines)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_production_refuses_kafka_without_tls(encrypted: None, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    with pytest.raises(ConfigError, match=f"KAFKA_SECURITY_PROTOCOL: {protocol} sends records unencrypted"):
        load_settings(DemoSettings)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert load_settings(DemoSettings).kafka_security_protocol == "SASL_SSL"


def test_allow_insecure_transport_accepts_plain_text_in_production(
    required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("ALLOW_INSECURE_TRANSPORT", "true")
    settings = load_settings(DemoSettings)
    assert settings.environment == "production"
    assert settings.allow_insecure_transport


def test_development_accepts_plain_text_transport_and_the_dev_secret(
    development: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", DEV_JWT_SECRET)
    settings = load_settings(DemoSettings)
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.hs256_allowed


@pytest.mark.parametrize(
    ("uri", "tls"),
    [
        ("mongodb://h:27017/?replicaSet=rs0", False),
        ("mongodb://h:27017/?replicaSet=rs0&tls=true", True),
        ("mongodb://h:27017/?ssl=true", True),
        ("mongodb://h:27017/?TLS=TRUE", True),
        ("mongodb://h:27017/?tls=false", False),
        ("mongodb+srv://cluster0.example.mongodb.net/db", True),
        ("mongodb+srv://cluster0.example.mongodb.net/db?tls=false", False),
    ],
)
def test_mongodb_tls_is_read_from_the_uri(uri: str, tls: bool) -> None:
    assert mongodb_uri_uses_tls(uri) is tls


def test_a_dedupe_window_shorter_than_the_topic_retention_is_refused(
    development: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPIC_RETENTION_MS", str(7 * 24 * 3600 * 1000))
    monkeypatch.setenv("PROCESSED_EVENT_TTL_S", str(7 * 24 * 3600 - 1))
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoConsumerSettings)
    assert str(raised.value).startswith(
        "configuration error: PROCESSED_EVENT_TTL_S: 604799 s is shorter than TOPIC_RETENTION_MS (604800000 ms)"
    )
    monkeypatch.setenv("PROCESSED_EVENT_TTL_S", str(7 * 24 * 3600))
    assert load_settings(DemoConsumerSettings).processed_event_ttl_s == 7 * 24 * 3600


def test_the_default_dedupe_window_covers_the_default_retention(development: None) -> None:
    settings = load_settings(DemoConsumerSettings)
    assert settings.processed_event_ttl_s * 1000 >= settings.topic_retention_ms


def test_unlimited_topic_retention_is_refused(development: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_RETENTION_MS", "-1")
    with pytest.raises(ConfigError, match="TOPIC_RETENTION_MS: input should be greater than 0"):
        load_settings(DemoConsumerSettings)
