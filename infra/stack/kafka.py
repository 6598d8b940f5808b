"""Apache Kafka, one KRaft node on loopback, from the official jars on Maven Central.

The pieces a broker needs (`BrokerNode`, `broker_properties`, `java_command`,
`format_storage`) are public so that tests can start a multi-broker cluster from the
same jars and the same settings as the stack's single node.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from turnlog.infra.stack.components import ComponentStatus
from turnlog.infra.stack.config import REPO_ROOT, StackSettings
from turnlog.infra.stack.errors import ComponentFailedError, PrerequisiteError
from turnlog.infra.stack.process import (
    PidFile,
    ensure_port_free,
    pid_alive,
    port_open,
    spawn_detached,
    stop_pid,
    wait_until,
)

logger = logging.getLogger("turnlog.stack.kafka")

_KAFKA_DIR = REPO_ROOT / "infra" / "kafka"
_MIN_JAVA = 17


def java_major_version() -> int:
    """The major version of ``java`` on PATH; fails naming the fix when there is none."""
    java = shutil.which("java")
    if java is None:
        raise PrerequisiteError(
            "Java is not installed (the Kafka broker needs Java 17 or newer)",
            "apt-get install -y openjdk-17-jre-headless",
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise PrerequisiteError(
            f"cannot read the Java version from `{java} -version`",
            "install OpenJDK 17: apt-get install -y openjdk-17-jre-headless",
        )
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class Kafka:
    """A single-node broker+controller whose data and logs live in the state folder."""

    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.logs_dir = settings.logs_dir / "kafka"
        self.pidfile = PidFile(settings.run_dir / "kafka.pid")
        self.libs = settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"

    @property
    def address(self) -> str:
        return self.settings.kafka_bootstrap

    # -- jars -------------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Fetch the broker's jars once into the cache with Maven; later starts reuse them."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise PrerequisiteError(
                "Maven is not installed (it fetches the Kafka jars from Maven Central once)",
                "apt-get install -y maven",
            )
        self.libs.mkdir(parents=True, exist_ok=True)
        logger.info("fetching Kafka %s jars into %s", self.settings.kafka_version, self.libs)
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(_KAFKA_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-1500:]
            raise PrerequisiteError(
                f"Maven could not fetch the Kafka {self.settings.kafka_version} jars:\n{output}",
                "check network access to Maven Central (a proxy goes in ~/.m2/settings.xml), "
                "or set TURNLOG_KAFKA_VERSION to a published 4.x release",
            )
        marker.write_text(self.settings.kafka_version + "\n")
        return self.libs

    # -- configuration ----------------------------------------------------------------
    def node(self) -> BrokerNode:
        """This broker as node 1 of a one-voter quorum."""
        s = self.settings
        return BrokerNode(
            node_id=1,
            host=s.host,
            port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            data_dir=self.data_dir,
        )

    def _write_config(self) -> Path:
        node = self.node()
        path = self.home / "server.properties"
        write_properties(path, broker_properties(node, voters=[node]))
        return path

    def _java(self, main: str, *args: str, jvm: tuple[str, ...] = ("-Xmx256m",)) -> list[str]:
        return java_command(self.libs, self.logs_dir, main, *args, jvm=jvm)

    def _format_storage(self, config: Path) -> None:
        format_storage(
            libs=self.libs,
            logs_dir=self.logs_dir,
            config=config,
            data_dir=self.data_dir,
            cluster_id=_cluster_id(),
        )

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> str:
        if (pid := self.pidfile.alive_pid()) is not None and port_open(
            self.settings.host, self.settings.kafka_port
        ):
            self._wait_ready(pid)
            return f"already running (pid {pid})"
        major = java_major_version()
        if major < _MIN_JAVA:
            raise PrerequisiteError(
                f"Java {major} is too old for the Kafka {self.settings.kafka_version} broker",
                "install OpenJDK 17: apt-get install -y openjdk-17-jre-headless",
            )
        self.ensure_jars()
        for port, setting in (
            (self.settings.kafka_port, "TURNLOG_KAFKA_PORT"),
            (self.settings.kafka_controller_port, "TURNLOG_KAFKA_CONTROLLER_PORT"),
        ):
            ensure_port_free(self.settings.host, port, owner="Kafka", setting=setting)
        config = self._write_config()
        self._format_storage(config)
        jvm = broker_jvm_options(self.settings.kafka_heap)
        pid = spawn_detached(
            self._java("kafka.Kafka", str(config), jvm=jvm), log_path=self.logs_dir / "stdout.log"
        )
        self.pidfile.write(pid)
        waited = self._wait_ready(pid)
        return f"started (pid {pid}) in {waited:.1f} s"

    def _wait_ready(self, pid: int) -> float:
        s = self.settings
        waited = wait_until(
            lambda: port_open(s.host, s.kafka_port),
            timeout=s.start_timeout,
            what="Kafka",
            log_path=self.logs_dir / "server.log",
            alive=lambda: pid_alive(pid),
        )
        return waited + asyncio.run(wait_for_metadata(self.address, within=s.start_timeout))

    def stop(self) -> str:
        pid = self.pidfile.alive_pid()
        if pid is None:
            self.pidfile.remove()
            return "not running"
        clean = stop_pid(pid, timeout=45)
        self.pidfile.remove()
        return "stopped" if clean else "killed after 45 s (it did not stop on SIGTERM)"

    def status(self) -> ComponentStatus:
        pid = self.pidfile.alive_pid()
        serving = pid is not None and port_open(self.settings.host, self.settings.kafka_port)
        detail = f"Kafka {self.settings.kafka_version}, data {self.data_dir}"
        return ComponentStatus(self.name, serving, self.address, pid, detail)


@dataclass(frozen=True, kw_only=True)
class BrokerNode:
    """One KRaft node in combined broker+controller mode: its id, ports and data."""

    node_id: int
    host: str
    port: int
    """Client (PLAINTEXT) listener."""
    controller_port: int
    """Controller (quorum) listener."""
    data_dir: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def broker_properties(
    node: BrokerNode, *, voters: Sequence[BrokerNode], extra: dict[str, str] | None = None
) -> dict[str, str]:
    """`server.properties` of `node` in a quorum of `voters` (itself included).

    Internal topics are replicated on every voter, up to three, with a minimum in-sync
    count of one less (a three-node cluster keeps its group offsets with a node down).
    `extra` overrides or adds settings (a test cluster shortens its failure detection).
    """
    if node.node_id not in {v.node_id for v in voters}:
        raise ValueError(
            f"node {node.node_id} is not one of the voters {sorted(v.node_id for v in voters)}"
        )
    replicas = min(len(voters), 3)
    min_isr = max(replicas - 1, 1)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(
            f"{v.node_id}@{v.host}:{v.controller_port}" for v in voters
        ),
        "listeners": f"PLAINTEXT://{node.host}:{node.port},"
        f"CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node.data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        # Consumers may ask for session timeouts of a few seconds (the broker's default
        # floor is 6 s), so a dead projector's partitions move to a live one in <= 5 s.
        "group.min.session.timeout.ms": str(GROUP_MIN_SESSION_TIMEOUT_MS),
        # Our own topics carry up to a few MiB (the DLQ keeps oversized rejects).
        "message.max.bytes": str(8 * 1024 * 1024),
        "socket.request.max.bytes": str(128 * 1024 * 1024),
    }
    return props | dict(extra or {})


GROUP_MIN_SESSION_TIMEOUT_MS = 1000
"""The broker's floor for a consumer's `session.timeout.ms`."""


def write_properties(path: Path, props: dict[str, str]) -> None:
    """Write a Java properties file (values here never need escaping)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def broker_jvm_options(heap: str) -> tuple[str, ...]:
    """JVM flags of a broker with at most `heap` of heap (e.g. `1g`, `384m`)."""
    return (f"-Xmx{heap}", f"-Xms{min_heap(heap)}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20")


def java_command(
    libs: Path, logs_dir: Path, main: str, *args: str, jvm: tuple[str, ...] = ("-Xmx256m",)
) -> list[str]:
    """argv running `main` of the Kafka jars in `libs`, logging into `logs_dir`."""
    return [
        "java",
        *jvm,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_KAFKA_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def format_storage(
    *, libs: Path, logs_dir: Path, config: Path, data_dir: Path, cluster_id: str
) -> None:
    """Format a node's storage for `cluster_id` (every node of a cluster shares it);
    a formatted folder is left as it is."""
    if (data_dir / "meta.properties").exists():
        return
    result = subprocess.run(
        java_command(
            libs,
            logs_dir,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "--config",
            str(config),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ComponentFailedError(
            f"formatting Kafka storage in {data_dir} failed:\n{result.stdout}{result.stderr}"
        )


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return _cluster_id()


def min_heap(heap: str) -> str:
    """Initial heap: a quarter of the maximum, so a small machine is not claimed at once."""
    match = re.fullmatch(r"(\d+)([mMgG])", heap)
    if match is None:
        return heap
    megabytes = int(match.group(1)) * (1024 if match.group(2) in "gG" else 1)
    return f"{max(megabytes // 4, 64)}m"


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def wait_for_metadata(bootstrap: str, *, within: float) -> float:
    """Wait until the broker answers a metadata request; return the seconds waited."""
    from aiokafka.admin import AIOKafkaAdminClient

    loop = asyncio.get_running_loop()
    start = loop.time()
    last_error: Exception | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
                try:
                    await admin.start()
                    await admin.describe_cluster()
                    return loop.time() - start
                except Exception as exc:  # the broker may still be electing itself
                    last_error = exc
                finally:
                    await admin.close()
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise ComponentFailedError(
            f"Kafka at {bootstrap} answered no metadata request within {within:.0f} s: {last_error}"
        ) from None
