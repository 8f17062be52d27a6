"""Where the integration tests find a real Kafka broker and a real MongoDB-protocol server.

Taken in this order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` in the environment: existing servers.
2. A Docker engine that answers: testcontainers with ``apache/kafka`` (KRaft) and ``mongo``
   started as a one-node replica set, so transactions work.
3. Otherwise the local stack of ``deploy/local/devstack.py`` (Kafka jars from Maven Central,
   SecantusDB's Rust server, or its Python one with ``MONGO_SERVER=python`` or without cargo),
   started once for the test session in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import devstack  # noqa: E402


@dataclass
class Infra:
    """Addresses of the servers a test session uses, and how they were obtained."""

    kafka_bootstrap: str
    mongodb_uri: str
    origin: str
    stack: devstack.Stack | None = None
    _closers: list[Any] = field(default_factory=list)


def docker_answers() -> bool:
    try:
        res = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and bool(res.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docker_infra() -> Infra:  # pragma: no cover - only where a Docker engine exists
    from testcontainers.core.container import DockerContainer

    kport = _free_port()
    kafka = (
        DockerContainer("apache/kafka:4.1.1")
        .with_bind_ports(kport, kport)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://0.0.0.0:{kport},CONTROLLER://0.0.0.0:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{kport}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    mport = _free_port()
    mongo = DockerContainer("mongo:8").with_bind_ports(27017, mport).with_command("--replSet rs0 --bind_ip_all")
    kafka.start()
    mongo.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        code, _ = mongo.exec(
            [
                "mongosh",
                "--quiet",
                "--eval",
                "try { rs.status().ok } catch (e) { rs.initiate({_id: 'rs0', members: "
                "[{_id: 0, host: 'localhost:27017'}]}).ok }",
            ]
        )
        if code == 0:
            break
        time.sleep(1)
    infra = Infra(f"127.0.0.1:{kport}", f"mongodb://127.0.0.1:{mport}/?directConnection=true", "docker")
    infra._closers += [kafka.stop, mongo.stop]
    stack = devstack.Stack(root=ROOT, kafka_bootstrap=infra.kafka_bootstrap, mongodb_uri=infra.mongodb_uri)
    devstack.wait_ready(stack)
    return infra


def local_stack_needed() -> bool:
    """Whether this session will start the local stack (no servers in the environment, no Docker)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"):
        return False
    return os.environ.get("HOMEWORK_TESTS_NO_DOCKER") == "1" or not docker_answers()


def prepare_local_stack() -> None:
    """Build (first run: ~9 min) or find the local servers before the first test starts, so the
    build is not counted against one test's timeout; its progress is shown as it goes."""
    if local_stack_needed():
        devstack.kafka_libs()
        devstack.prepare()


@contextlib.contextmanager
def session_infra(tmp_root: Path) -> Iterator[Infra]:
    """Yield the servers for one test session, stopping whatever this function started."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Infra(kafka, mongo, "environment")
        return
    if os.environ.get("HOMEWORK_TESTS_NO_DOCKER") != "1" and docker_answers():
        infra = _docker_infra()
        try:
            yield infra
        finally:
            for close in infra._closers:
                with contextlib.suppress(Exception):
                    close()
        return
    root = tmp_root / "devstack"
    stack = devstack.up(root)
    try:
        yield Infra(stack.kafka_bootstrap, stack.mongodb_uri, "local", stack=stack)
    finally:
        devstack.down(root)
