"""deploy/k8s/jobs/dlq-replay-job.yaml: a valid Job that runs the replay command as the services run, reaching Kafka."""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from homework_shared.dlq_replay import ReplaySettings, parser
from tests.unit.deploy.files import K8S, NON_ROOT_UID, config_maps, objects

JOB = K8S / "jobs" / "dlq-replay-job.yaml"


def job() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(JOB.read_text())
    return found


@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_the_replay_job_is_a_valid_kubernetes_job(version: str) -> None:
    kubernetes_validate.validate(job(), version, strict=True)


def test_the_replay_job_runs_the_replay_module_with_arguments_it_accepts() -> None:
    [container] = job()["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "homework_shared.dlq_replay"]
    args = parser().parse_args(container["args"])
    assert args.group == "reminder"
    assert args.dry_run, "the example lists before it publishes"
    env = {e["name"] for e in container["env"]}
    assert env <= {name.upper() for name in ReplaySettings.model_fields}


def test_the_replay_job_reads_kafka_from_the_common_config_and_may_reach_it() -> None:
    spec = job()["spec"]["template"]
    [container] = spec["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "homework-common"}}]
    for overlay in ("dev", "prod"):
        common = config_maps(overlay)["homework-common"]
        assert {"KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX"} <= set(common)
        kafka = objects(overlay, "NetworkPolicy")["allow-kafka"]["spec"]["podSelector"]["matchLabels"]
        assert kafka.items() <= spec["metadata"]["labels"].items(), f"{overlay}: the Job's pods may not reach Kafka"


def test_the_replay_job_runs_unprivileged_with_a_read_only_root() -> None:
    pod = job()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == NON_ROOT_UID
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"]
