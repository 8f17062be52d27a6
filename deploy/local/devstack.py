"""Local infrastructure without Docker: a real Apache Kafka (KRaft) broker and a MongoDB-protocol server.

Kafka's jars come from Maven Central (resolved once with Maven into a cache directory). The
MongoDB-protocol server is SecantusDB, run as its own process: its Rust server (crates.io
``secantus-mdb``, built once with cargo into the cache, see :func:`rust_server_binary`), or its
Python server from PyPI where there is no cargo (``MONGO_SERVER=rust|python|auto``, default
``auto``). The cache is ``~/.cache/homework-devstack`` (``HOMEWORK_DEVSTACK_CACHE`` overrides it)
and survives ``make clean``. Every port is free-picked so two stacks can run side by side.
``up`` returns only when a client can produce with ``acks=all`` and idempotence and can commit
a MongoDB transaction.

    python deploy/local/devstack.py up [--dir .devstack] [--brokers 1]
    python deploy/local/devstack.py down [--dir .devstack]
    python deploy/local/devstack.py prepare   # only build/fetch the servers (a first build: ~9 min)

The same functions back the pytest session fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
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
    # Which MongoDB-protocol server runs: "rust" or "python" (a restart starts the same one).
    mongo_server: str = ""
    # Whether the server fsyncs its journal before it acknowledges a commit (see ``start_mongo``).
    mongo_sync_on_commit: bool = False

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "MONGODB_URI": self.mongodb_uri}


def log(msg: str) -> None:
    print(f"[devstack] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cache_dir() -> Path:
    """Where built and downloaded servers are kept across clones and ``make clean``."""
    if os.environ.get("HOMEWORK_DEVSTACK_CACHE"):
        return Path(os.environ["HOMEWORK_DEVSTACK_CACHE"])
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


RUST_CRATE, RUST_VERSION, RUST_BINARY = "secantus-mdb", "0.5.3-beta.196", "secantusd-rs"
RUST_BUILD_MINUTES = 9  # measured: 8 min on this project's 2-core machines
MONGO_SERVERS = ("auto", "rust", "python")
_failed_builds: list[str] = []  # a failed build is not retried by the same process (auto mode)


@dataclass(frozen=True)
class MongoServerChoice:
    """Which MongoDB-protocol server a stack runs, and why."""

    kind: str  # "rust" or "python"
    reason: str

    def describe(self) -> str:
        name = (
            f"SecantusDB Rust server ({RUST_BINARY} {RUST_VERSION})"
            if self.kind == "rust"
            else "SecantusDB Python server (secantusd-py, the slow fallback)"
        )
        return f"MongoDB-protocol server: {name}; {self.reason}"


def rust_server_root() -> Path:
    return cache_dir() / f"secantus-rs-{RUST_VERSION}"


def _built_binary() -> Path | None:
    """The cached Rust server if it is complete and answers ``--version`` with the pinned version."""
    binary = rust_server_root() / "bin" / RUST_BINARY
    if not os.access(binary, os.X_OK):
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
        if RUST_VERSION in out:
            return binary
    return None


def _build_tools_missing() -> list[str]:
    """The tools a first build of the Rust server needs (cargo; gcc and cmake compile WiredTiger)."""
    return [tool for tool in ("cargo", "cc", "cmake") if not shutil.which(tool)]


def choose_mongo_server() -> MongoServerChoice:
    """The server to run: ``MONGO_SERVER`` if set, else Rust when it is built or can be, else Python."""
    wanted = os.environ.get("MONGO_SERVER", "auto").strip().lower() or "auto"
    if wanted not in MONGO_SERVERS:
        raise DevstackError(f"MONGO_SERVER={wanted!r} is not one of {', '.join(MONGO_SERVERS)}")
    if wanted == "python":
        return MongoServerChoice("python", "chosen with MONGO_SERVER=python")
    if _built_binary():
        return MongoServerChoice("rust", f"cached in {rust_server_root()}")
    if _failed_builds and wanted == "auto":
        return MongoServerChoice("python", "the Rust server's build failed earlier in this process")
    missing = _build_tools_missing()
    if not missing:
        how = "MONGO_SERVER=rust" if wanted == "rust" else "cargo found"
        return MongoServerChoice("rust", f"{how}; not built yet: building it once")
    if wanted == "rust":
        raise DevstackError(
            f"MONGO_SERVER=rust, but {', '.join(missing)} not found on PATH: the first build of "
            f"{RUST_CRATE} {RUST_VERSION} needs cargo (rustup.rs), a C compiler and cmake"
        )
    return MongoServerChoice("python", f"no {', '.join(missing)} on PATH to build the Rust server (MONGO_SERVER=auto)")


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (two first runs at once build once, the second waits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building the MongoDB-protocol server; waiting for it (lock {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rust_server_binary() -> Path:
    """The Rust server's binary, built once with ``cargo install`` into the cache and reused after that.

    Built rather than downloaded because crates.io is the registry that serves it (no release
    binaries can be fetched here). The build installs into a ``.partial`` root that is renamed
    into place only when complete, under a file lock, so an interrupted or concurrent first
    build never leaves a broken binary behind; the ~600 MB build folder is deleted afterwards.
    """
    if binary := _built_binary():
        return binary
    root = rust_server_root()
    with _build_lock(root.with_name(root.name + ".lock")):
        if binary := _built_binary():
            return binary  # built by the process we waited for
        missing = _build_tools_missing()
        if missing:
            raise DevstackError(f"cannot build {RUST_CRATE}: {', '.join(missing)} not found on PATH")
        partial = root.with_name(root.name + ".partial")
        target = cache_dir() / "build" / root.name
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        cmd = [
            shutil.which("cargo") or "cargo",
            "install",
            f"{RUST_CRATE}@{RUST_VERSION}",  # pinned: a bare name picks an empty 0.0.0 placeholder
            "--locked",
            "--ignore-rust-version",  # it declares rust 1.98 and builds and passes on older toolchains
            "--root",
            str(partial),
        ]
        log(
            f"building the MongoDB-protocol server once, ~{RUST_BUILD_MINUTES} min on 2 cores "
            f"({RUST_CRATE} {RUST_VERSION} with cargo into {root}; later runs reuse it)"
        )
        started = time.monotonic()
        try:
            code = _stream(cmd, {"CARGO_TARGET_DIR": str(target)}, cache_dir() / f"{root.name}.build.log")
            if code != 0 or not os.access(partial / "bin" / RUST_BINARY, os.X_OK):
                raise DevstackError(
                    f"building {RUST_CRATE} {RUST_VERSION} failed (exit {code}); its output is in "
                    f"{cache_dir() / f'{root.name}.build.log'}; command: {' '.join(cmd)}"
                )
            partial.rename(root)
        finally:
            shutil.rmtree(target, ignore_errors=True)
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # only if no other version is being built
            shutil.rmtree(partial, ignore_errors=True)
        elapsed = time.monotonic() - started
        log(f"built {RUST_BINARY} in {elapsed // 60:.0f} min {elapsed % 60:.0f} s; build folder removed")
    binary = _built_binary()
    if binary is None:
        raise DevstackError(f"{root / 'bin' / RUST_BINARY} was built but does not answer --version")
    return binary


def _stream(cmd: list[str], env: dict[str, str], logfile: Path) -> int:
    """Run ``cmd`` with its output shown line by line (and kept in ``logfile``), with a heartbeat
    every minute of silence: cargo prints nothing while WiredTiger compiles for minutes."""
    started = time.monotonic()
    last_line = [started]
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(15):
            if time.monotonic() - last_line[0] >= 60:
                elapsed = (time.monotonic() - started) / 60
                log(f"still building ({elapsed:.0f} of ~{RUST_BUILD_MINUTES} min)")
                last_line[0] = time.monotonic()

    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        text=True,
        errors="replace",
    )
    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with open(logfile, "w") as out:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
                last_line[0] = time.monotonic()
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        done.set()


def python_server_command() -> list[str]:
    """SecantusDB's Python daemon, started through ``secantus_server.py`` (adds mongod's transaction reaper)."""
    if importlib.util.find_spec("secantus") is None:
        raise DevstackError(
            "SecantusDB (the secantusdb package) is not installed: install the workspace first "
            "(`make install`), or point MONGODB_URI at an existing MongoDB replica set."
        )
    return [sys.executable, str(Path(__file__).resolve().with_name("secantus_server.py"))]


def mongo_server_command(kind: str, root: Path) -> list[str]:
    """The daemon of server ``kind`` without its address flags (builds the Rust one if needed)."""
    if kind == "python":
        return python_server_command()
    # An explicit (empty) config file: the server would otherwise read ./secantusd.toml or
    # ~/.secantus/secantusd.toml, so a stray file on the machine could change the dev stack.
    config = root / "secantusd.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# The dev stack sets everything with flags (deploy/local/devstack.py).\n")
    return [
        str(rust_server_binary()),
        "--config",
        str(config),
        "--log-file-max",
        "16MB",  # an empty store takes 17 MB instead of 129 MB
        "--cache-size",
        "256M",  # WiredTiger's cache; the default 4G is far more than a dev stack needs
    ]


def start_mongo(
    root: Path, port: int | None = None, server: str | None = None, *, sync_on_commit: bool = False
) -> tuple[str, int, int]:
    """Start the MongoDB-protocol server (``server``: "rust"/"python", else chosen) on a free port.

    ``sync_on_commit``: fsync the journal before a commit is acknowledged (``--sync-on-commit``). Without it
    SecantusDB acknowledges a commit, even one with ``w: "majority"`` or ``j: true``, before its journal
    record is on disk: a SIGKILLed server comes back without the last few acknowledged transactions
    (1-5 of ~600 in 3 s, measured 2026-12-02; ``tests/integration/deploy/test_durable_commits.py``).
    mongod journals a majority commit before it answers, so a stack whose server a test kills needs it;
    it costs throughput, so the other stacks go without.
    """
    kind = server or choose_mongo_server().kind
    port = port or free_port()
    data = root / "mongo-data"
    logfile = root / "logs" / "mongo.log"
    cmd = [
        *mongo_server_command(kind, root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data),
        "--log-level",
        "WARNING",
        *(["--sync-on-commit"] if sync_on_commit else []),
    ]
    pid = _spawn(cmd, logfile, env={"DEVSTACK": MARKER})
    _wait_port(port, pid, f"MongoDB-protocol server (SecantusDB, {kind})", logfile, time.monotonic() + READY_TIMEOUT_S)
    return f"mongodb://127.0.0.1:{port}/?directConnection=true", pid, port


def restart_mongo(stack: Stack) -> int:
    """Start the stack's MongoDB-protocol server again on its old port and data."""
    port = int(stack.mongodb_uri.split(":")[2].split("/")[0])
    _, pid, _ = start_mongo(stack.root, port, stack.mongo_server or None, sync_on_commit=stack.mongo_sync_on_commit)
    stack.pids["mongo"] = pid
    _save(stack)
    return pid


async def _check_ready(stack: Stack) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
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
    # A fresh cluster creates __consumer_offsets on the first group coordinator look-up, and until it
    # exists aiokafka logs GroupCoordinatorNotAvailable at ERROR in whichever service asks first. One
    # group committing here makes "ready" mean ready for consumer groups too.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id="devstack.ready",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer.getone()
        await consumer.commit()
    finally:
        await consumer.stop()
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


def up(root: Path, brokers: int = 1, *, mongo_sync_on_commit: bool = False) -> Stack:
    """Start Kafka and MongoDB under ``root`` and wait until both really work.

    ``mongo_sync_on_commit``: for a stack whose MongoDB server will be killed (see ``start_mongo``)."""
    root = root.resolve()
    if (root / "state.json").exists():
        old = load(root)
        if old and any(_alive(p) for p in old.pids.values()):
            raise DevstackError(
                f"a stack is already running from {root} (pids {old.pids}); run `make infra-down` first"
            )
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "logs", ignore_errors=True)
    choice = choose_mongo_server()
    log(choice.describe())
    stack = Stack(root=root, kafka_bootstrap="", mongodb_uri="", mongo_server=choice.kind)
    stack.mongo_sync_on_commit = mongo_sync_on_commit
    try:
        check_java()  # fail on a missing tool before anything is started
        kafka_libs()
        stack.mongo_server = _prepare_mongo_server(choice)
        started = time.monotonic()  # a first build's minutes are reported apart
        stack.mongodb_uri, stack.pids["mongo"], _ = start_mongo(
            root, server=stack.mongo_server, sync_on_commit=mongo_sync_on_commit
        )
        _save(stack)
        stack.kafka_bootstrap, kpids, stack.broker_ports, stack.kafka_sasl_bootstrap = start_kafka(root, brokers)
        stack.pids.update(kpids)
        _save(stack)
        wait_ready(stack)
    except BaseException:
        down(root)
        raise
    (root / "env").write_text("".join(f"{k}={v}\n" for k, v in stack.env().items()))
    log(
        f"ready in {time.monotonic() - started:.1f}s: Kafka {stack.kafka_bootstrap}, "
        f"MongoDB {stack.mongodb_uri} ({stack.mongo_server} server)"
    )
    return stack


def _prepare_mongo_server(choice: MongoServerChoice) -> str:
    """Build the chosen server if needed; with ``MONGO_SERVER=auto`` a failed build falls back to Python."""
    if choice.kind != "rust":
        return choice.kind
    try:
        rust_server_binary()
    except DevstackError as exc:
        if os.environ.get("MONGO_SERVER", "auto").strip().lower() == "rust":
            raise
        _failed_builds.append(str(exc))
        log(f"{exc}\nfalling back to the SecantusDB Python server (set MONGO_SERVER=rust to make this an error)")
        return "python"
    return "rust"


def prepare() -> str:
    """Build or fetch what ``up`` needs without starting anything; returns the server that will run."""
    choice = choose_mongo_server()
    log(choice.describe())
    return _prepare_mongo_server(choice)


def _save(stack: Stack) -> None:
    state = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "mongodb_uri": stack.mongodb_uri,
        "pids": stack.pids,
        "broker_ports": {str(k): list(v) for k, v in stack.broker_ports.items()},
        "kafka_sasl_bootstrap": stack.kafka_sasl_bootstrap,
        "mongo_server": stack.mongo_server,
        "mongo_sync_on_commit": stack.mongo_sync_on_commit,
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
        mongo_server=state.get("mongo_server", ""),
        mongo_sync_on_commit=bool(state.get("mongo_sync_on_commit", False)),
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
    (root / "secantusd.toml").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "prepare"])
    parser.add_argument("--dir", default=".devstack", type=Path)
    parser.add_argument("--brokers", default=1, type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            stack = up(args.dir, args.brokers)
            print(f"KAFKA_BOOTSTRAP_SERVERS={stack.kafka_bootstrap}\nMONGODB_URI={stack.mongodb_uri}")
        elif args.command == "down":
            down(args.dir)
        elif args.command == "prepare":
            print(f"MONGO_SERVER={prepare()}")
        else:
            stack = load(args.dir.resolve())
            if not stack:
                print("not running")
                return 1
            for name, pid in stack.pids.items():
                print(f"{name}: pid {pid} {'running' if _alive(pid) else 'stopped'}")
            print(f"MongoDB-protocol server: {stack.mongo_server or 'python'}")
    except DevstackError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
