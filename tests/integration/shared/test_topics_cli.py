"""`python -m homework_shared.topics_cli` creates every topic once, as configured, and says when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from homework_shared.topics_cli import CONSUMERS, topic_names
from tests.conftest import unique
from tests.infra import Infra


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "KAFKA_"))}
    return subprocess.run(
        [sys.executable, "-m", "homework_shared.topics_cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Partition count and topic configuration of each topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for _code, _msg, _type, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
        return partitions, configs
    finally:
        await admin.close()


def test_the_topic_names_are_every_stream_then_a_dead_letter_topic_per_service() -> None:
    assert topic_names("hw") == [
        "hw.assignment.events",
        "hw.reminder.events",
        "hw.insights.events",
        "hw.assignment.dead-letter",
        "hw.reminder.dead-letter",
        "hw.insights.dead-letter",
    ]
    assert CONSUMERS == ("assignment", "reminder", "insights")


async def test_every_topic_is_created_as_configured_and_a_second_run_changes_nothing(infra: Infra) -> None:
    prefix = unique("topics")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": "3",
        "TOPIC_RETENTION_MS": "3600000",
    }
    first = run_cli(env)
    assert first.returncode == 0, first.stderr
    assert "6 created, 0 already there" in first.stdout

    names = topic_names(prefix)
    partitions, configs = await describe(infra.kafka_bootstrap, names)
    assert partitions == dict.fromkeys(names, 3)
    for name in names:
        assert configs[name]["retention.ms"] == "3600000"
        assert configs[name]["min.insync.replicas"] == "1"

    again = run_cli(env)
    assert again.returncode == 0, again.stderr
    assert "0 created, 6 already there" in again.stdout


def test_more_replicas_than_brokers_fails_with_the_topics_named(infra: Infra) -> None:
    prefix = unique("topics")
    result = run_cli(
        {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "TOPIC_PREFIX": prefix, "TOPIC_REPLICATION_FACTOR": "3"}
    )
    assert result.returncode == 1
    assert f"{prefix}.assignment.events" in result.stderr
    assert "TOPIC_REPLICATION_FACTOR=3" in result.stderr


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    missing = run_cli({})
    assert missing.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in missing.stderr
    inconsistent = run_cli(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "TOPIC_REPLICATION_FACTOR": "1", "TOPIC_MIN_INSYNC_REPLICAS": "2"}
    )
    assert inconsistent.returncode == 2
    assert "TOPIC_MIN_INSYNC_REPLICAS" in inconsistent.stderr


def test_an_unreachable_kafka_is_retried_then_reported() -> None:
    result = run_cli({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "--wait-s", "2")
    assert result.returncode == 1
    assert "did not answer" in result.stderr
