"""Local infrastructure without Docker: a real Apache Kafka (KRaft) broker and a MongoDB-protocol server.

Kafka's jars come from Maven Central (resolved once with Maven into a cache directory);
the MongoDB-protocol server is SecantusDB from PyPI, run as its own process. Every port is
free-picked so two stacks can run side by side. ``up`` returns only when a client can
produce with ``acks=all`` and idempotence and can commit a MongoDB transaction.

    python deploy/local/devstack.py up [--dir .devstack] [--brokers 1]
    python deploy/local/devstack.py down [--dir .devstack]

The same functions back the pytest session fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
KAFKA_POM = HERE / "kafka" / "pom.xml"
KAFKA_LOG4J = HERE / "kafka" / "log4j2.properties"
READY_TIMEOUT_S = float(os.environ.get("DEVSTACK_READY_TIMEOUT", "90"))
MARKER = "homework-devstack"


class DevstackError(RuntimeError):
    """The local stack could not be started; the message says which part and where its log is."""


@dataclass
class Stack:
    """Addresses and processes of one running local stack."""

    root: Path
    kafka_bootstrap: str
    mongodb_uri: str
    pids: dict[str, int] = field(default_factory=dict)
    broker_ports: dict[int, tuple[int, int]] = field(default_factory=dict)
    # A SASL_PLAINTEXT/PLAIN listener of a single-broker stack (user SASL_USER, password SASL_PASSWORD).
    kafka_sasl_bootstrap: str = ""

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "MONGODB_URI": self.mongodb_uri}


def log(msg: str) -> None:
    print(f"[devstack] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "homework-devstack"


def require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if not path:
        raise DevstackError(
            f"{name} not found on PATH: {why}. Install it (Java 17+ and Maven), "
            "or point KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI at existing servers."
        )
    return path


def check_java() -> str:
    java = require_tool("java", "the Kafka broker runs on Java 17+")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    for token in out.replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and token[0].isdigit():
            if int(head) < 17:
                raise DevstackError(f"Java 17+ is needed for Kafka 4, found: {out.splitlines()[0]}")
            return java
    return java


def kafka_libs() -> Path:
    """Resolve the broker's jars with Maven into a cache directory (once; later runs reuse it)."""
    pom_text = KAFKA_POM.read_text()
    stamp = _digest(pom_text)
    libs = cache_dir() / f"kafka-libs-{stamp}"
    if (libs / ".complete").exists():
        return libs
    mvn = require_tool("mvn", "Maven resolves the Kafka broker's jars from Maven Central")
    log(f"resolving Apache Kafka jars from Maven Central into {libs} (first run only)")
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    if os.environ.get("DEVSTACK_MAVEN_REPO"):
        cmd.append(f"-Dmaven.repo.local={os.environ['DEVSTACK_MAVEN_REPO']}")
    # No -q: the first download prints Maven's progress lines to the console.
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        raise DevstackError(
            f"Maven could not resolve the Kafka jars (exit {proc.returncode}); command: {' '.join(cmd)}"
        )
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _spawn(cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> int:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    out = open(logfile, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    out.close()
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _wait_port(port: int, pid: int, name: str, logfile: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise DevstackError(f"{name} exited during start-up; see its log: {logfile}\n{_tail(logfile)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise DevstackError(
        f"{name} did not open port {port} within {READY_TIMEOUT_S:.0f}s; see its log: {logfile}\n{_tail(logfile)}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


SASL_USER, SASL_PASSWORD = "homework", "homework-secret"


def broker_properties(
    node_id: int,
    port: int,
    cport: int,
    voters: list[tuple[int, int]],
    data: Path,
    replication: int,
    sasl_port: int | None = None,
) -> str:
    bootstrap = ",".join(f"127.0.0.1:{cp}" for _, cp in voters)
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if sasl_port:
        listeners += f",SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
        protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.bootstrap.servers": bootstrap,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(data),
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min(2, replication)),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min(2, replication)),
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min(2, replication)),
        "group.initial.rebalance.delay.ms": "0",
        "log.flush.interval.messages": "9223372036854775807",
    }
    if sasl_port:
        props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] = "PLAIN"
        props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{SASL_USER}" password="{SASL_PASSWORD}" user_{SASL_USER}="{SASL_PASSWORD}";'
        )
    return "".join(f"{k}={v}\n" for k, v in props.items())


def start_kafka(root: Path, brokers: int = 1) -> tuple[str, dict[str, int], dict[int, tuple[int, int]], str]:
    """Format fresh data directories and start ``brokers`` combined broker/controller nodes."""
    java = check_java()
    libs = kafka_libs()
    cp = f"{libs}/*"
    cluster_id = uuid.uuid4().hex[:22]
    ports = {n: (free_port(), free_port()) for n in range(1, brokers + 1)}
    voters = [(n, cport) for n, (_, cport) in ports.items()]
    sasl_port = free_port() if brokers == 1 else None
    logs = root / "logs"
    pids: dict[str, int] = {}
    for n, (port, cport) in ports.items():
        data = root / f"kafka-{n}" / "data"
        shutil.rmtree(data.parent, ignore_errors=True)
        data.mkdir(parents=True)
        conf = data.parent / "server.properties"
        conf.write_text(broker_properties(n, port, cport, voters, data, min(3, brokers), sasl_port))
        fmt = [
            java,
            "-cp",
            cp,
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            f"-Dkafka.logs.dir={logs / f'kafka-{n}'}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(conf),
        ]
        if brokers == 1:
            fmt.append("--standalone")
        else:
            fmt += [
                "--initial-controllers",
                ",".join(f"{vn}@127.0.0.1:{vc}:{_dir_uuid(vn, cluster_id)}" for vn, vc in voters),
            ]
        res = subprocess.run(fmt, capture_output=True, text=True)
        if res.returncode != 0:
            raise DevstackError(f"Kafka storage format failed for node {n}: {res.stdout}{res.stderr}")
    for n in ports:
        conf = root / f"kafka-{n}" / "server.properties"
        pids[f"kafka-{n}"] = _spawn(
            kafka_command(java, cp, logs / f"kafka-{n}", conf), logs / f"kafka-{n}.out", env={"DEVSTACK": MARKER}
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    for n, (port, _) in ports.items():
        _wait_port(port, pids[f"kafka-{n}"], f"Kafka broker {n}", logs / f"kafka-{n}" / "kafka.log", deadline)
    bootstrap = ",".join(f"127.0.0.1:{p}" for p, _ in ports.values())
    return bootstrap, pids, ports, f"127.0.0.1:{sasl_port}" if sasl_port else ""


def kafka_command(java: str, cp: str, logdir: Path, conf: Path) -> list[str]:
    return [
        java,
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        f"-Dkafka.logs.dir={logdir}",
        f"-Ddevstack={MARKER}",
        "-cp",
        cp,
        "kafka.Kafka",
        str(conf),
    ]


def restart_broker(stack: Stack, node: int) -> int:
    """Start broker ``node`` of ``stack`` again on its old ports and data (for failover tests)."""
    java = check_java()
    cp = f"{kafka_libs()}/*"
    logs = stack.root / "logs"
    conf = stack.root / f"kafka-{node}" / "server.properties"
    pid = _spawn(kafka_command(java, cp, logs / f"kafka-{node}", conf), logs / f"kafka-{node}.out")
    stack.pids[f"kafka-{node}"] = pid
    _wait_port(
        stack.broker_ports[node][0],
        pid,
        f"Kafka broker {node}",
        logs / f"kafka-{node}" / "kafka.log",
        time.monotonic() + READY_TIMEOUT_S,
    )
    _save(stack)
    return pid


def _dir_uuid(node: int, cluster_id: str) -> str:
    import base64

    raw = uuid.uuid5(uuid.NAMESPACE_OID, f"{cluster_id}-{node}").bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def secantus_command() -> list[str]:
    """SecantusDB's daemon, started through ``secantus_server.py`` (adds mongod's transaction reaper)."""
    if importlib.util.find_spec("secantus") is None:
        raise DevstackError(
            "SecantusDB (the secantusdb package) is not installed: install the workspace first "
            "(`make install`), or point MONGODB_URI at an existing MongoDB replica set."
        )
    return [sys.executable, str(Path(__file__).resolve().with_name("secantus_server.py"))]


def start_mongo(root: Path, port: int | None = None) -> tuple[str, int, int]:
    """Start SecantusDB on a free port with a fresh storage directory."""
    port = port or free_port()
    data = root / "mongo-data"
    logfile = root / "logs" / "mongo.log"
    cmd = [
        *secantus_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data),
        "--log-level",
        "WARNING",
    ]
    pid = _spawn(cmd, logfile, env={"DEVSTACK": MARKER})
    _wait_port(port, pid, "MongoDB-protocol server (SecantusDB)", logfile, time.monotonic() + READY_TIMEOUT_S)
    return f"mongodb://127.0.0.1:{port}/?directConnection=true", pid, port


def restart_mongo(stack: Stack) -> int:
    """Start the stack's MongoDB-protocol server again on its old port and data."""
    port = int(stack.mongodb_uri.split(":")[2].split("/")[0])
    _, pid, _ = start_mongo(stack.root, port)
    stack.pids["mongo"] = pid
    _save(stack)
    return pid


async def _check_ready(stack: Stack) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pymongo import AsyncMongoClient

    topic = "devstack.ready"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        rf = len(stack.broker_ports) if len(stack.broker_ports) < 3 else 3
        with contextlib.suppress(Exception):
            await admin.create_topics([NewTopic(topic, 1, rf)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"ready", key=b"devstack")
    finally:
        await producer.stop()
    client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        async with client.start_session() as session, await session.start_transaction():
            await client.devstack.ready.insert_one({"at": time.time()}, session=session)
    finally:
        await client.close()


def wait_ready(stack: Stack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # In a thread with its own event loop, so callers inside a running loop (the demo, benchmarks) can wait too.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, asyncio.wait_for(_check_ready(stack), timeout=20)).result()
            return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            last = exc
            time.sleep(0.5)
    raise DevstackError(
        f"the stack did not become ready within {READY_TIMEOUT_S:.0f}s: {last!r}; logs under {stack.root / 'logs'}"
    )


def up(root: Path, brokers: int = 1) -> Stack:
    """Start Kafka and MongoDB under ``root`` and wait until both really work."""
    root = root.resolve()
    if (root / "state.json").exists():
        old = load(root)
        if old and any(_alive(p) for p in old.pids.values()):
            raise DevstackError(
                f"a stack is already running from {root} (pids {old.pids}); run `make infra-down` first"
            )
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "logs", ignore_errors=True)
    started = time.monotonic()
    stack = Stack(root=root, kafka_bootstrap="", mongodb_uri="")
    try:
        check_java()  # fail on a missing tool before anything is started
        kafka_libs()
        stack.mongodb_uri, stack.pids["mongo"], _ = start_mongo(root)
        _save(stack)
        stack.kafka_bootstrap, kpids, stack.broker_ports, stack.kafka_sasl_bootstrap = start_kafka(root, brokers)
        stack.pids.update(kpids)
        _save(stack)
        wait_ready(stack)
    except BaseException:
        down(root)
        raise
    (root / "env").write_text("".join(f"{k}={v}\n" for k, v in stack.env().items()))
    log(f"ready in {time.monotonic() - started:.1f}s: Kafka {stack.kafka_bootstrap}, MongoDB {stack.mongodb_uri}")
    return stack


def _save(stack: Stack) -> None:
    state = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "mongodb_uri": stack.mongodb_uri,
        "pids": stack.pids,
        "broker_ports": {str(k): list(v) for k, v in stack.broker_ports.items()},
        "kafka_sasl_bootstrap": stack.kafka_sasl_bootstrap,
    }
    (stack.root / "state.json").write_text(json.dumps(state, indent=2))


def load(root: Path) -> Stack | None:
    path = root / "state.json"
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    return Stack(
        root=root,
        kafka_bootstrap=state["kafka_bootstrap"],
        mongodb_uri=state["mongodb_uri"],
        pids={k: int(v) for k, v in state["pids"].items()},
        broker_ports={int(k): (v[0], v[1]) for k, v in state.get("broker_ports", {}).items()},
        kafka_sasl_bootstrap=state.get("kafka_sasl_bootstrap", ""),
    )


def stop_pid(pid: int, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Stop one process we started (and its process group), escalating to SIGKILL."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def down(root: Path) -> None:
    """Stop exactly the processes recorded for the stack under ``root``."""
    root = root.resolve()
    stack = load(root)
    if stack is None:
        log(f"no stack recorded under {root}")
        return
    for name, pid in stack.pids.items():
        if _alive(pid):
            log(f"stopping {name} (pid {pid})")
        stop_pid(pid)
    (root / "state.json").unlink(missing_ok=True)
    (root / "env").unlink(missing_ok=True)
    for sub in root.glob("kafka-*"):
        shutil.rmtree(sub, ignore_errors=True)
    shutil.rmtree(root / "mongo-data", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", default=".devstack", type=Path)
    parser.add_argument("--brokers", default=1, type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            stack = up(args.dir, args.brokers)
            print(f"KAFKA_BOOTSTRAP_SERVERS={stack.kafka_bootstrap}\nMONGODB_URI={stack.mongodb_uri}")
        elif args.command == "down":
            down(args.dir)
        else:
            stack = load(args.dir.resolve())
            if not stack:
                print("not running")
                return 1
            for name, pid in stack.pids.items():
                print(f"{name}: pid {pid} {'running' if _alive(pid) else 'stopped'}")
    except DevstackError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
