"""The settings every service shares, read only from environment variables, refusing insecure production setups."""

from __future__ import annotations

import sys
from typing import Any, Literal, Self, TypeVar

from pydantic import AwareDatetime, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - public on purpose, refused in production
"""The HS256 secret development uses when no key source is set; refused in production."""

MIN_PRODUCTION_SECRET_LENGTH = 32
SEVEN_DAYS_MS = 7 * 24 * 60 * 60 * 1000

S = TypeVar("S", bound="ServiceSettings")


class ConfigError(SystemExit):
    """Bad configuration: exits the process with code 2; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(2)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(f"configuration error: {problem}" for problem in self.problems)


class EnvOnlySettings(BaseSettings):
    """Settings read from environment variables (and keyword arguments, for tests) only."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False, validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables only (and keyword arguments, for tests): no .env file, no secrets directory."""
        return init_settings, env_settings


class KafkaConnectionSettings(EnvOnlySettings):
    """How to reach Kafka: bootstrap servers and, for managed clusters, TLS and SASL."""

    kafka_bootstrap_servers: str
    # PLAINTEXT for a local broker; SASL_SSL for most managed services (Confluent Cloud, MSK with SCRAM, Aiven).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # SASL mechanism for SASL_PLAINTEXT / SASL_SSL.
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    # SASL user name (required with a SASL protocol).
    kafka_sasl_username: str | None = None
    # SASL password (required with a SASL protocol); keep it in a Secret.
    kafka_sasl_password: SecretStr | None = None
    # CA bundle (PEM file) for TLS; the system's trusted CAs when unset.
    kafka_ssl_cafile: str | None = None

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD: both are needed with "
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (producer, consumer, admin) with this security."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        return options


class ServiceSettings(KafkaConnectionSettings):
    """Base settings of a service; each service subclasses it and sets ``service_name`` and ``mongodb_database``."""

    environment: Literal["development", "test", "production"] = "development"
    service_name: str
    http_host: str = "0.0.0.0"
    http_port: int = 8000

    topic_prefix: str = "homework"
    topic_partitions: int = 6
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    topic_retention_ms: int = SEVEN_DAYS_MS
    # Health data, minimum necessary: free-text notes stay out of events unless this is set.
    include_free_text: bool = False

    mongodb_uri: str
    mongodb_database: str
    # Server selection and connect timeout: with MongoDB down, a write fails in this time instead of 30 s.
    mongo_timeout_ms: int = 2000
    # Most documents one service puts into a client's data export (GET .../export-part); past it the
    # export is refused with 413 export_too_large rather than read into memory (see docs/data-rights.md).
    export_max_documents: int = Field(default=20_000, ge=1, le=1_000_000)

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str = "homework-dev"
    jwt_audience: str = "homework"
    jwt_allow_hs256_in_production: bool = False

    shutdown_timeout_s: float = 20.0
    # Seconds an idle keep-alive HTTP connection stays open. Longer than the idle timeouts of
    # clients and load balancers (httpx 5 s, AWS ALB 60 s): a server that closes first races a
    # client reusing the connection, which then sees a reset request it cannot know was not applied.
    http_keep_alive_s: float = Field(default=75.0, gt=0, le=3600)

    # Time compression for demos and tests (see clock.py): with CLOCK_SPEED=720 one real second is
    # twelve minutes of platform time. All services of one deployment must share these three values.
    clock_speed: float = Field(default=1.0, gt=0)
    clock_origin: AwareDatetime | None = None
    clock_real_origin: AwareDatetime | None = None

    @field_validator("jwt_public_key")
    @classmethod
    def _unescape_pem(cls, value: str | None) -> str | None:
        # A PEM in one environment variable often arrives with literal "\n" for its line breaks.
        return value.replace("\\n", "\n") if value else None

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _clock_is_complete(self) -> Self:
        if self.clock_speed != 1.0 and (self.clock_origin is None or self.clock_real_origin is None):
            raise ValueError("CLOCK_ORIGIN and CLOCK_REAL_ORIGIN: both are needed when CLOCK_SPEED is not 1")
        if self.environment == "production" and self.clock_speed != 1.0:
            raise ValueError("CLOCK_SPEED: time compression is refused in production")
        return self

    @model_validator(mode="after")
    def _secure_jwt_keys(self) -> Self:
        has_asymmetric = bool(self.jwt_public_key or self.jwt_jwks_url)
        if self.environment != "production":
            if self.jwt_secret is None and not has_asymmetric:
                self.jwt_secret = SecretStr(DEV_JWT_SECRET)
            return self
        if self.jwt_secret is None and not has_asymmetric:
            raise ValueError("JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL: set at least one JWT key source")
        if self.jwt_secret is not None:
            secret = self.jwt_secret.get_secret_value()
            if secret == DEV_JWT_SECRET:
                raise ValueError("JWT_SECRET: the development default is refused in production")
            if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(f"JWT_SECRET: at least {MIN_PRODUCTION_SECRET_LENGTH} characters in production")
            if not has_asymmetric and not self.jwt_allow_hs256_in_production:
                raise ValueError(
                    "JWT_SECRET: HS256 alone is refused in production; set JWT_PUBLIC_KEY or JWT_JWKS_URL, "
                    "or JWT_ALLOW_HS256_IN_PRODUCTION=true"
                )
        return self

    @property
    def hs256_allowed(self) -> bool:
        """Whether HS256 tokens signed with ``jwt_secret`` are accepted."""
        return self.jwt_secret is not None and (self.environment != "production" or self.jwt_allow_hs256_in_production)


class ConsumerSettings(ServiceSettings):
    """The settings of a service that consumes events: how its consumer reads and applies them."""

    # Records per poll; the offsets are committed once per batch.
    consumer_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Consecutive records of one partition applied in one transaction (group commit); 1 = each alone.
    consumer_group_size: int = Field(default=20, ge=1, le=200)
    # Partitions of a batch applied at once (one client's events stay in order: one partition).
    consumer_concurrency: int = Field(default=4, ge=1, le=64)
    # Seconds a poll's records retry transient failures (timeouts, write conflicts, connection loss)
    # with capped exponential back-off; then each still failing is parked as transient_exhausted.
    consumer_transient_retry_s: float = Field(default=600.0, gt=0, le=86_400)


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, each naming the environment variable at fault."""
    problems = []
    for item in error.errors():
        variable = ".".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        # Model-level checks name their variables themselves; field messages ("Field required") get the name here.
        problems.append(f"{variable}: {message[:1].lower()}{message[1:]}" if variable else message)
    return problems


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment; on bad configuration print why and raise ``ConfigError`` (exit code 2)."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        failure = ConfigError(describe_validation_error(error))
        print(failure, file=sys.stderr)
        raise failure from None
