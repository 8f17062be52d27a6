"""deploy/k8s: each overlay renders to valid Kubernetes objects that run the services as they expect to be run."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.unit.deploy.files import (
    CONTAINER_PORT,
    DEPLOY_DOC,
    NON_ROOT_UID,
    OVERLAYS,
    SERVICES,
    build_settings,
    compose,
    config_maps,
    container_env,
    env_fields,
    image_repository,
    objects,
    rendered,
    required_vars,
    secret_vars,
    selects,
)

KUBERNETES_VERSIONS = ("1.29", "1.33")
# What docs/deploy.md asks the prod Secrets to hold: a replica set, over TLS.
PLACEHOLDER_MONGODB_URI = "mongodb://user:password@mongodb-0.mongodb:27017/?replicaSet=rs0&tls=true"
PLACEHOLDER_FERNET_KEY = "cHJvZHVjdGlvbi1wbGFjZWhvbGRlci1rZXktMDAwMDA="
POD_KINDS = ("Deployment", "Job")


def deployment(overlay: str, service: str) -> dict[str, Any]:
    return objects(overlay, "Deployment")[service]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def container(overlay: str, service: str) -> dict[str, Any]:
    [only] = pod_spec(deployment(overlay, service))["containers"]
    found: dict[str, Any] = only
    return found


def common(overlay: str) -> dict[str, str]:
    return config_maps(overlay)["homework-common"]


def settings_env(overlay: str, service: str) -> dict[str, str]:
    """The variables the container gets, as strings; external Secrets (prod) filled with placeholders."""
    env: dict[str, str] = {}
    for name, source in container_env(overlay, container(overlay, service)).items():
        if source.value is not None:
            env[name] = source.value
        elif source.kind == "secret" and not source.optional:
            assert name in ("MONGODB_URI", "WEBHOOK_SECRET_KEYS"), f"no placeholder for the external secret {name}"
            env[name] = PLACEHOLDER_MONGODB_URI if name == "MONGODB_URI" else PLACEHOLDER_FERNET_KEY
    return env


# ---- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_for_kubernetes(overlay: str, version: str) -> None:
    for obj in rendered(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}: {error}") from None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lands_in_the_overlays_namespace(overlay: str) -> None:
    namespaces = {obj["metadata"].get("namespace") for obj in rendered(overlay)}
    assert namespaces == {"homework-dev" if overlay == "dev" else "homework"}


# ---- images -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_runs_the_image_compose_builds_for_it(overlay: str, service: str) -> None:
    image = container(overlay, service)["image"]
    assert image_repository(image) == image_repository(compose()["services"][service]["image"])
    assert ":" in image.rsplit("/", 1)[-1], "a pinned tag, never latest"
    assert not image.endswith(":latest")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_topics_job_runs_the_topics_command_from_a_service_image(overlay: str) -> None:
    job = objects(overlay, "Job")["homework-topics"]
    [topics] = pod_spec(job)["containers"]
    assert topics["command"][:3] == ["python", "-m", "homework_shared.topics_cli"]
    assert topics["image"] == container(overlay, "assignment")["image"]
    env = container_env(overlay, topics)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX", "TOPIC_PARTITIONS", "TOPIC_REPLICATION_FACTOR"):
        assert env[name].ref == "homework-common", name


# ---- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_gets_every_required_variable_and_only_variables_it_reads(overlay: str, service: str) -> None:
    env = container_env(overlay, container(overlay, service))
    assert required_vars(service) <= set(env), f"unset: {required_vars(service) - set(env)}"
    unknown = set(env) - set(env_fields(service))
    assert not unknown, f"{service} reads no {sorted(unknown)}: a typo, or a setting that does not exist"
    for name in required_vars(service):
        assert not env[name].optional, f"{name} is required: its Secret key must not be optional"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_secrets_come_from_kubernetes_secrets_only(overlay: str, service: str) -> None:
    env = container_env(overlay, container(overlay, service))
    for name in secret_vars(service) & set(env):
        assert env[name].kind == "secret", f"{name} is a secret: read it from a Secret, not a {env[name].kind}"
    for name, source in env.items():
        if source.kind == "configmap":
            assert name not in secret_vars(service), name


@pytest.mark.parametrize("service", SERVICES)
def test_the_dev_overlay_generates_every_secret_key_it_references(service: str) -> None:
    for name, source in container_env("dev", container("dev", service)).items():
        if source.kind == "secret" and not source.optional:
            assert source.value is not None, f"{name}: Secret {source.ref} has no key {source.key}"


def test_the_prod_overlay_ships_no_secret_and_the_docs_list_each_one_it_needs() -> None:
    assert not objects("prod", "Secret")
    doc = DEPLOY_DOC.read_text()
    for service in SERVICES:
        for source in container_env("prod", container("prod", service)).values():
            if source.kind == "secret":
                assert f"`{source.ref}`" in doc, source.ref
                assert f"`{source.key}`" in doc, source.key


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_accepts_the_overlays_configuration(overlay: str, service: str) -> None:
    settings = build_settings(service, settings_env(overlay, service))
    assert settings.http_port == CONTAINER_PORT
    assert settings.environment == ("development" if overlay == "dev" else "production")


def test_production_talks_to_kafka_over_tls_and_never_allows_insecure_transport() -> None:
    config = common("prod")
    assert config["KAFKA_SECURITY_PROTOCOL"] in ("SSL", "SASL_SSL")
    assert "ALLOW_INSECURE_TRANSPORT" not in config
    assert "PLAINTEXT" not in config.get("KAFKA_SECURITY_PROTOCOL", "")


def test_only_the_dev_overlay_says_development() -> None:
    assert common("dev")["ENVIRONMENT"] == "development"
    assert common("prod")["ENVIRONMENT"] == "production"


def test_production_topics_survive_a_broker_loss() -> None:
    config = common("prod")
    assert int(config["TOPIC_REPLICATION_FACTOR"]) == 3
    assert int(config["TOPIC_MIN_INSYNC_REPLICAS"]) == 2
    assert config["ENVIRONMENT"] == "production"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_mongodb_uris_name_a_replica_set(overlay: str) -> None:
    for service in SERVICES:
        uri = settings_env(overlay, service)["MONGODB_URI"]
        assert "replicaSet=" in uri, "transactions need a replica set"


# ---- ports and probes ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_ports_and_probes_match_what_the_service_serves(overlay: str, service: str) -> None:
    spec = container(overlay, service)
    port = int(settings_env(overlay, service)["HTTP_PORT"])
    assert port == CONTAINER_PORT
    assert spec["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {p["port"] for p in probes.values()} == {"http"}
    [svc_port] = objects(overlay, "Service")[service]["spec"]["ports"]
    assert svc_port["targetPort"] == "http"
    assert selects(
        {"matchLabels": objects(overlay, "Service")[service]["spec"]["selector"]}, pod_labels(overlay, service)
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_grace_period_outlasts_the_preStop_pause_and_the_graceful_shutdown(overlay: str, service: str) -> None:
    settings = build_settings(service, settings_env(overlay, service))
    pre_stop = container(overlay, service)["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(pre_stop[1]) if pre_stop[0] == "sleep" else 0.0
    grace = pod_spec(deployment(overlay, service))["terminationGracePeriodSeconds"]
    assert grace > pause + settings.shutdown_timeout_s + 10, "room to stop consumers and flush the outbox too"


# ---- security and resources ---------------------------------------------------------------


def workloads(overlay: str) -> list[dict[str, Any]]:
    return [o for o in rendered(overlay) if o["kind"] in POD_KINDS]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_the_images_non_root_user_with_a_read_only_root(overlay: str) -> None:
    for obj in workloads(overlay):
        spec = pod_spec(obj)
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == NON_ROOT_UID
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            [tmp] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_requests_and_limits_cpu_and_memory(overlay: str) -> None:
    for obj in workloads(overlay):
        for c in pod_spec(obj)["containers"]:
            assert set(c["resources"]["requests"]) == {"cpu", "memory"}, obj["metadata"]["name"]
            assert set(c["resources"]["limits"]) == {"cpu", "memory"}, obj["metadata"]["name"]


# ---- availability and scaling -------------------------------------------------------------


def pod_labels(overlay: str, service: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(overlay, service)["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_disruption_budget_that_still_lets_a_node_drain(overlay: str, service: str) -> None:
    budgets = [
        p
        for p in objects(overlay, "PodDisruptionBudget").values()
        if selects(p["spec"]["selector"], pod_labels(overlay, service))
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"] == {"maxUnavailable": 1, "selector": budgets[0]["spec"]["selector"]}


@pytest.mark.parametrize("service", SERVICES)
def test_production_autoscales_each_service_up_to_the_partition_count(service: str) -> None:
    hpa = objects("prod", "HorizontalPodAutoscaler")[service]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    partitions = int(common("prod")["TOPIC_PARTITIONS"])
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    assert deployment("prod", service)["spec"]["replicas"] == hpa["spec"]["minReplicas"]
    strategy = deployment("prod", service)["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_development_runs_one_replica_of_each_without_autoscaling() -> None:
    assert not objects("dev", "HorizontalPodAutoscaler")
    for service in SERVICES:
        assert deployment("dev", service)["spec"]["replicas"] == 1


# ---- network policies ---------------------------------------------------------------------


def policies_for(overlay: str, labels: dict[str, str], policy_type: str) -> list[dict[str, Any]]:
    return [
        p["spec"]
        for p in objects(overlay, "NetworkPolicy").values()
        if policy_type in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]


def egress_ports(overlay: str, labels: dict[str, str]) -> dict[int, list[dict[str, Any]]]:
    """Destination port -> the peers allowed on it, over every egress rule that applies to the pod."""
    allowed: dict[int, list[dict[str, Any]]] = {}
    for spec in policies_for(overlay, labels, "Egress"):
        for rule in spec.get("egress") or []:
            for port in rule.get("ports") or []:
                allowed.setdefault(int(port["port"]), []).extend(rule.get("to") or [{}])
    return allowed


def host_port(address: str, default: int) -> int:
    return urlsplit(f"//{address}").port or default


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_denied_unless_a_policy_allows_it(overlay: str) -> None:
    deny = objects(overlay, "NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_reach_dns_kafka_and_mongodb_and_be_reached_on_its_port(overlay: str, service: str) -> None:
    labels = pod_labels(overlay, service)
    env = settings_env(overlay, service)
    ports = egress_ports(overlay, labels)
    kafka_ports = {host_port(b, 9092) for b in env["KAFKA_BOOTSTRAP_SERVERS"].split(",")}
    mongodb_port = urlsplit(env["MONGODB_URI"]).port or 27017
    assert 53 in ports
    assert kafka_ports <= set(ports)
    assert mongodb_port in ports
    ingress = [rule for spec in policies_for(overlay, labels, "Ingress") for rule in spec.get("ingress") or []]
    assert ingress, "someone must be able to call the API"
    for rule in ingress:
        assert [p["port"] for p in rule["ports"]] == ["http"], "only the service port"
        assert rule.get("from"), "from named sources only"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_reminder_may_call_out_and_never_to_private_addresses(overlay: str) -> None:
    for service in SERVICES:
        https = egress_ports(overlay, pod_labels(overlay, service)).get(443, [])
        if service != "reminder":
            assert not https, f"{service} has no webhooks to deliver"
            continue
        [peer] = https
        block = peer["ipBlock"]
        assert block["cidr"] == "0.0.0.0/0"
        excepted = [ipaddress.ip_network(c) for c in block["except"]]
        for private in ("10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254"):
            assert any(ipaddress.ip_address(private) in net for net in excepted), private


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_topics_job_may_reach_only_dns_and_kafka(overlay: str) -> None:
    job = objects(overlay, "Job")["homework-topics"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert set(egress_ports(overlay, labels)) == {53, 9092, 9093}  # 9093: Kafka's TLS listener
    assert not [r for s in policies_for(overlay, labels, "Ingress") for r in s.get("ingress") or []]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_export_fan_out_may_reach_the_reminder_and_insights_services_it_is_pointed_at(overlay: str) -> None:
    env = settings_env(overlay, "assignment")
    peers = egress_ports(overlay, pod_labels(overlay, "assignment"))
    for service, variable in (("reminder", "REMINDER_URL"), ("insights", "INSIGHTS_URL")):
        url = urlsplit(env[variable])
        assert url.hostname == objects(overlay, "Service")[service]["metadata"]["name"], variable
        assert any(selects(peer.get("podSelector", {}), pod_labels(overlay, service)) for peer in peers[url.port or 80])
        ingress = [
            r for s in policies_for(overlay, pod_labels(overlay, service), "Ingress") for r in s.get("ingress") or []
        ]
        assert any(
            selects(peer.get("podSelector", {}), pod_labels(overlay, "assignment"))
            for rule in ingress
            for peer in rule.get("from") or []
        ), f"{service} refuses the assignment service's calls"
