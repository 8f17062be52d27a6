"""The settings every service shares, read only from environment variables, refusing insecure production setups."""

from __future__ import annotations

import sys
from typing import Any, Literal, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import AwareDatetime, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - public on purpose, refused in production
"""The HS256 secret development uses when no key source is set; refused in production."""

MIN_PRODUCTION_SECRET_LENGTH = 32
SEVEN_DAYS_MS = 7 * 24 * 60 * 60 * 1000
THIRTY_DAYS_S = 30 * 24 * 60 * 60
ONE_MIB = 1024 * 1024
TLS_KAFKA_PROTOCOLS = ("SSL", "SASL_SSL")

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

    # Fail closed: anything but an explicit `development` gets production's checks (no development
    # JWT secret, no time compression, no plain-text transport unless ALLOW_INSECURE_TRANSPORT).
    environment: Literal["development", "test", "production"] = "production"
    # Outside development: accept Kafka without TLS and MongoDB without TLS (e.g. inside a service mesh
    # that encrypts every connection). Say why where you set it.
    allow_insecure_transport: bool = False
    service_name: str
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    # Largest request body accepted, in bytes; a larger one gets 413 before it is read or authenticated.
    max_body_bytes: int = Field(default=ONE_MIB, ge=1024, le=64 * ONE_MIB)
    # Connections and requests one process serves at once; beyond this uvicorn answers 503 at once
    # (with MAX_BODY_BYTES this bounds the memory that request bodies can take).
    http_limit_concurrency: int = Field(default=200, ge=1, le=100_000)

    topic_prefix: str = "homework"
    topic_partitions: int = 6
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    # How long Kafka keeps the records of every topic; -1 (for ever) is refused, since the consumers'
    # dedupe window (PROCESSED_EVENT_TTL_S) must be at least as long.
    topic_retention_ms: int = Field(default=SEVEN_DAYS_MS, gt=0)
    # Health data, minimum necessary: free-text notes stay out of events unless this is set; when set,
    # the assignment service seals them with a per-client key it deletes on erasure (docs/data-rights.md).
    include_free_text: bool = False
    # Record every read of a client's data by a therapist or admin (HIPAA audit controls); off only to measure.
    read_audit_enabled: bool = True

    mongodb_uri: str
    mongodb_database: str
    # Server selection and connect timeout: with MongoDB down, a write fails in this time instead of 30 s.
    mongo_timeout_ms: int = 2000
    # How long an Idempotency-Key is remembered (a TTL index; the server deletes within ~60 s after).
    idempotency_key_ttl_s: int = Field(default=24 * 60 * 60, ge=1)
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
    def _fail_closed(self) -> Self:
        # One validator, so every problem is reported at once, one line each (see describe_validation_error).
        problems = self._clock_problems() + self._transport_problems() + self._jwt_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _clock_problems(self) -> list[str]:
        if self.clock_speed == 1.0:
            return []
        if not self.is_development:
            return [
                "CLOCK_SPEED: time compression is accepted only with ENVIRONMENT=development "
                f"(ENVIRONMENT is {self.environment})"
            ]
        if self.clock_origin is None or self.clock_real_origin is None:
            return ["CLOCK_ORIGIN and CLOCK_REAL_ORIGIN: both are needed when CLOCK_SPEED is not 1"]
        return []

    def _transport_problems(self) -> list[str]:
        if self.is_development or self.allow_insecure_transport:
            return []
        problems = []
        if self.kafka_security_protocol not in TLS_KAFKA_PROTOCOLS:
            problems.append(
                f"KAFKA_SECURITY_PROTOCOL: {self.kafka_security_protocol} sends records unencrypted; use SSL or "
                f"SASL_SSL, or set ALLOW_INSECURE_TRANSPORT=true (ENVIRONMENT is {self.environment})"
            )
        if not mongodb_uri_uses_tls(self.mongodb_uri):
            problems.append(
                "MONGODB_URI: connects without TLS; add tls=true to it (or use mongodb+srv://), "
                f"or set ALLOW_INSECURE_TRANSPORT=true (ENVIRONMENT is {self.environment})"
            )
        return problems

    def _jwt_problems(self) -> list[str]:
        has_asymmetric = bool(self.jwt_public_key or self.jwt_jwks_url)
        if self.is_development:
            if self.jwt_secret is None and not has_asymmetric:
                self.jwt_secret = SecretStr(DEV_JWT_SECRET)
            return []
        if self.jwt_secret is None and not has_asymmetric:
            return [
                "JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL: set at least one JWT key source "
                f"(ENVIRONMENT is {self.environment}; only ENVIRONMENT=development has a default)"
            ]
        if self.jwt_secret is None:
            return []
        secret = self.jwt_secret.get_secret_value()
        if secret == DEV_JWT_SECRET:
            return [
                "JWT_SECRET: the public development default is accepted only with ENVIRONMENT=development "
                f"(ENVIRONMENT is {self.environment})"
            ]
        if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
            return [f"JWT_SECRET: at least {MIN_PRODUCTION_SECRET_LENGTH} characters in production"]
        if not has_asymmetric and not self.jwt_allow_hs256_in_production:
            return [
                "JWT_SECRET: HS256 alone is refused in production; set JWT_PUBLIC_KEY or JWT_JWKS_URL, "
                "or JWT_ALLOW_HS256_IN_PRODUCTION=true"
            ]
        return []

    @property
    def is_development(self) -> bool:
        """Whether ``ENVIRONMENT=development`` was set: the only setting that relaxes the production checks."""
        return self.environment == "development"

    @property
    def hs256_allowed(self) -> bool:
        """Whether HS256 tokens signed with ``jwt_secret`` are accepted."""
        return self.jwt_secret is not None and (self.is_development or self.jwt_allow_hs256_in_production)


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
    # The dedupe window: seconds a consumed event's id is remembered (TTL of processed_events). At least
    # TOPIC_RETENTION_MS, so a record Kafka can still redeliver (a reset or a replay) is still recognised.
    processed_event_ttl_s: int = Field(default=THIRTY_DAYS_S, gt=0)

    @model_validator(mode="after")
    def _dedupe_window_covers_the_retention(self) -> Self:
        if self.processed_event_ttl_s * 1000 < self.topic_retention_ms:
            raise ValueError(
                f"PROCESSED_EVENT_TTL_S: {self.processed_event_ttl_s} s is shorter than TOPIC_RETENTION_MS "
                f"({self.topic_retention_ms} ms): a redelivered event older than the window would be applied "
                "twice; make the window at least as long as the retention"
            )
        return self


def mongodb_uri_uses_tls(uri: str) -> bool:
    """Whether a MongoDB connection string asks for TLS: ``tls``/``ssl`` true, or ``mongodb+srv://`` not turning it off.

    Read from the URI's own options (as the drivers do, case-insensitively) without resolving
    anything: a ``mongodb+srv`` URI may not be resolvable where the settings are checked.
    """
    parts = urlsplit(uri)
    options = {key.lower(): value.lower() for key, value in parse_qsl(parts.query)}
    chosen = options.get("tls", options.get("ssl"))
    if chosen is not None:
        return chosen == "true"
    return parts.scheme == "mongodb+srv"


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, each naming the environment variable at fault."""
    problems = []
    for item in error.errors():
        variable = ".".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        # Model-level checks name their variables themselves, one problem a line; field messages
        # ("Field required") get the name here.
        if variable:
            problems.append(f"{variable}: {message[:1].lower()}{message[1:]}")
        else:
            problems.extend(message.splitlines())
    return problems


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment; on bad configuration print why and raise ``ConfigError`` (exit code 2)."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        failure = ConfigError(describe_validation_error(error))
        print(failure, file=sys.stderr)
        raise failure from None
