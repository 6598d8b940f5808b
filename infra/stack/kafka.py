"""Apache Kafka, one KRaft node on loopback, from the official jars on Maven Central."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import uuid
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
        raise PrerequisiteError(f"cannot read the Java version from `{java} -version`",
                                "install OpenJDK 17: apt-get install -y openjdk-17-jre-headless")
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
                mvn, "-B", "-q", "-f", str(_KAFKA_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True, text=True, check=False,
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
    def _write_config(self) -> Path:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{s.host}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{s.host}:{s.kafka_port},"
                         f"CONTROLLER://{s.host}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{s.host}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Our own topics carry up to a few MiB (the DLQ keeps oversized rejects).
            "message.max.bytes": str(8 * 1024 * 1024),
            "socket.request.max.bytes": str(128 * 1024 * 1024),
        }
        path = self.home / "server.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self, main: str, *args: str, jvm: tuple[str, ...] = ("-Xmx256m",)) -> list[str]:
        return [
            "java", *jvm, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_KAFKA_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                       "--config", str(config)),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ComponentFailedError(
                f"formatting Kafka storage in {self.data_dir} failed:\n{result.stdout}"
                f"{result.stderr}"
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
        heap = self.settings.kafka_heap
        jvm = (f"-Xmx{heap}", f"-Xms{min_heap(heap)}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20")
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
            timeout=s.start_timeout, what="Kafka", log_path=self.logs_dir / "server.log",
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
            f"Kafka at {bootstrap} answered no metadata request within {within:.0f} s: "
            f"{last_error}"
        ) from None
