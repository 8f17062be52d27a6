"""uvicorn runs with our logging, no duplicate access log, and a bounded graceful shutdown."""

from __future__ import annotations

from homework_shared.http import create_app
from homework_shared.runner import server_config
from homework_shared.settings import ServiceSettings


def test_the_server_keeps_our_logging_and_drains_on_shutdown() -> None:
    settings = ServiceSettings(
        service_name="runner-test",
        kafka_bootstrap_servers="k:9092",
        mongodb_uri="mongodb://m",
        mongodb_database="d",
        http_port=8765,
        shutdown_timeout_s=12.5,
    )
    config = server_config(create_app(settings, title="t", version="1"), settings)
    assert config.log_config is None
    assert config.access_log is False
    assert config.timeout_graceful_shutdown == 13
    # Longer than httpx's 5 s and a load balancer's 60 s idle timeout: the client closes an idle connection first.
    assert config.timeout_keep_alive == 75
    assert (config.host, config.port) == ("0.0.0.0", 8765)


def test_the_server_limits_concurrency_per_process_from_the_settings() -> None:
    settings = ServiceSettings(
        service_name="runner-test",
        kafka_bootstrap_servers="k:9092",
        mongodb_uri="mongodb://m",
        mongodb_database="d",
        http_limit_concurrency=37,
    )
    config = server_config(create_app(settings, title="t", version="1"), settings)
    assert config.limit_concurrency == 37
    assert ServiceSettings.model_fields["http_limit_concurrency"].default == 200
