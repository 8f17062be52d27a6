"""docker-compose.yml: valid against the compose spec, health-gated start-up, and consistent with the services."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import compose_spec
import jsonschema  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from tests.unit.deploy.files import (
    CONTAINER_PORT,
    SERVICES,
    build_settings,
    compose,
    compose_env,
    compose_raw,
    compose_variables,
    dockerfile_stages,
    env_example,
    env_fields,
    required_vars,
    seconds,
)

INFRASTRUCTURE = ("kafka", "mongo", "mongo-init", "topics")


def compose_schema() -> dict[str, Any]:
    """The compose-spec JSON schema, as vendored by check-jsonschema."""
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_file_validates_against_the_compose_spec_schema_before_and_after_interpolation() -> None:
    for document in (compose_raw(), compose()):
        assert not schema_errors(document), "\n".join(schema_errors(document))


def test_the_schema_check_catches_a_misspelt_key_and_an_unknown_condition() -> None:
    document = compose()
    document["services"]["kafka"]["helthcheck"] = {}
    document["services"]["assignment"]["depends_on"]["topics"]["condition"] = "service_done"
    errors = "\n".join(schema_errors(document))
    assert "'helthcheck' was unexpected" in errors
    assert "services/assignment/depends_on" in errors


def test_the_file_parses_as_a_typed_compose_model() -> None:
    parsed = compose_spec.PyCompose.from_json(json.dumps(compose()))
    assert set(parsed.service_names()) == {*INFRASTRUCTURE, *SERVICES, "kafka-ui"}
    with pytest.raises(ValueError, match="extension key"):
        compose_spec.PyCompose.from_json(json.dumps({"services": {"x": {"image": "a", "unknown": 1}}}))


def test_every_variable_is_documented_in_env_example_with_the_same_default() -> None:
    used = compose_variables()
    documented = env_example()
    assert set(used) == set(documented), "variables used in docker-compose.yml == those in .env.example"
    for name, default in used.items():
        assert default is not None, f"{name}: give it a default so `docker compose up` works without .env"
        assert documented[name] == default, name


def test_every_dependency_exists_and_waits_on_health_or_completion() -> None:
    spec = compose()["services"]
    for name, service in spec.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in spec, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dependency)
            if condition == "service_healthy":
                assert "healthcheck" in spec[dependency], f"{dependency} has no healthcheck for {name} to wait on"
            else:
                assert spec[dependency].get("restart") == "no", f"{dependency} is a one-shot"


def start_order() -> list[str]:
    """A start order compose could use: each service after its dependencies."""
    spec = {k: v for k, v in compose()["services"].items() if not v.get("profiles")}
    order: list[str] = []
    while len(order) < len(spec):
        ready = [n for n, s in spec.items() if n not in order and set(s.get("depends_on") or {}) <= set(order)]
        assert ready, f"dependency cycle among {set(spec) - set(order)}"
        order.extend(sorted(ready))
    return order


def test_the_services_start_after_kafka_topics_and_an_initiated_replica_set() -> None:
    spec = compose()["services"]
    order = start_order()
    for service in SERVICES:
        for before in INFRASTRUCTURE:
            assert order.index(before) < order.index(service), (before, service)
    assert spec["assignment"]["depends_on"] == {
        "mongo-init": {"condition": "service_completed_successfully"},
        "topics": {"condition": "service_completed_successfully"},
    }
    for consumer in ("reminder", "insights"):
        assert spec[consumer]["depends_on"] == {"assignment": {"condition": "service_healthy"}}


def test_kafka_runs_in_kraft_mode_from_the_official_image_without_topic_auto_creation() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = compose_env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_mongodb_is_a_one_node_replica_set_initiated_once_with_the_name_the_services_use() -> None:
    spec = compose()["services"]
    command = spec["mongo"]["command"]
    replica_set = command[command.index("--replSet") + 1]
    script = " ".join(spec["mongo-init"]["entrypoint"])
    assert f"rs.initiate({{_id: '{replica_set}'" in script
    assert "try { rs.status() }" in script, "initiating twice must not fail"
    assert "isWritablePrimary" in script, "done only once there is a primary"
    for service in SERVICES:
        uri = compose_env(spec[service])["MONGODB_URI"]
        assert f"replicaSet={replica_set}" in uri
        assert uri.startswith("mongodb://mongo:27017/")


def test_the_topics_job_creates_the_topics_with_the_services_settings() -> None:
    spec = compose()["services"]
    topics = spec["topics"]
    assert topics["entrypoint"][:3] == ["python", "-m", "homework_shared.topics_cli"]
    assert topics["build"]["target"] in SERVICES
    topic_env = compose_env(topics)
    for service in SERVICES:
        env = compose_env(spec[service])
        for name in ("KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX", "TOPIC_PARTITIONS", "TOPIC_REPLICATION_FACTOR"):
            assert topic_env[name] == env[name], name


def test_the_kafka_ui_is_optional() -> None:
    ui = compose()["services"]["kafka-ui"]
    assert ui["profiles"] == ["ui"]
    assert (
        compose_env(ui)["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
        == compose_env(compose()["services"]["assignment"])["KAFKA_BOOTSTRAP_SERVERS"]
    )


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_built_from_its_dockerfile_target_and_named_after_it(service: str) -> None:
    spec = compose()["services"][service]
    assert spec["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert spec["build"]["context"] == "."
    assert spec["build"]["target"] == service
    assert service in dockerfile_stages()
    assert spec["image"].split(":")[0] == f"homework-{service}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_gets_every_required_variable_and_only_variables_it_reads(service: str) -> None:
    env = compose_env(compose()["services"][service])
    assert required_vars(service) <= set(env), f"unset: {required_vars(service) - set(env)}"
    unknown = set(env) - set(env_fields(service))
    assert not unknown, f"{service} reads no {sorted(unknown)}: a typo, or a setting that does not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_accepts_its_compose_configuration(service: str) -> None:
    env = compose_env(compose()["services"][service])
    settings = build_settings(service, env)
    assert settings.http_port == CONTAINER_PORT
    assert settings.topic_replication_factor == 1, "one broker"


@pytest.mark.parametrize("service", SERVICES)
def test_production_mode_refuses_the_development_secret_of_the_defaults(service: str) -> None:
    env = compose_env(compose({**env_example(), "ENVIRONMENT": "production"})["services"][service])
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        build_settings(service, env)


@pytest.mark.parametrize("service", SERVICES)
def test_ports_health_checks_and_shutdown_match_what_the_service_serves(service: str) -> None:
    spec = compose()["services"][service]
    env = compose_env(spec)
    assert [p.rsplit(":", 1)[1] for p in spec["ports"]] == [str(CONTAINER_PORT)] == [env["HTTP_PORT"]]
    assert all(p.startswith("127.0.0.1:") for p in spec["ports"]), "published on loopback only"
    check = " ".join(spec["healthcheck"]["test"])
    assert re.search(rf"http://127\.0\.0\.1:{CONTAINER_PORT}/readyz", check)
    assert seconds(spec["stop_grace_period"]) > float(env["SHUTDOWN_TIMEOUT_S"])
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
