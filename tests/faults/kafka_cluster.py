"""A three-broker KRaft cluster on loopback for fault tests: the stack's jars and broker
settings (`turnlog.infra.stack.kafka`), combined broker+controller nodes in a three-voter
quorum, free ports, data under one folder. `kill()` is the fault (kill -9 of one node);
`stop()` stops and reaps every node still running and removes the folder.

The cluster detects a dead broker in about 3 s (the default is 9 s), so a test's produce
stalls are short; everything else is as in the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.structs import TopicPartition

from tests.faults.conftest import free_port
from turnlog.infra.stack.kafka import (
    BrokerNode,
    broker_jvm_options,
    broker_properties,
    format_storage,
    java_command,
    new_cluster_id,
    write_properties,
)
from turnlog.infra.stack.process import pid_alive, port_open, spawn_detached, stop_pid, wait_until
from turnlog.infra.stack.topics import ensure_topics
from turnlog.schemas.topics import DLQ_TOPIC, TopicSpec, topic_specs

REPLICATION = 3
MIN_INSYNC = 2
T = TypeVar("T")
FAST_FAILURE_DETECTION = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}
"""A killed broker is fenced (its partitions get new leaders, it leaves their ISR) after
3 s instead of 9."""


def replicated_specs(prefix: str) -> list[TopicSpec]:
    """The platform's topics (`topic_specs(prefix)`) with replication 3 and
    `min.insync.replicas=2`, as in production."""
    return [
        replace(spec, replication_factor=REPLICATION,
                configs={**spec.configs, "min.insync.replicas": str(MIN_INSYNC)})
        for spec in topic_specs(prefix)
    ]


@dataclass
class ClusterNode:
    """One node of the cluster and the process running it (None: not running)."""

    broker: BrokerNode
    config: Path
    logs_dir: Path
    pid: int | None = None

    @property
    def node_id(self) -> int:
        return self.broker.node_id

    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)


@dataclass
class KafkaCluster:
    """Three (or `size`) Kafka nodes under `root`, from the jars in `libs`."""

    root: Path
    libs: Path
    size: int = 3
    heap: str = "384m"
    host: str = "127.0.0.1"
    start_timeout: float = 120.0
    nodes: list[ClusterNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a cluster needs at least one node, got size={self.size}")
        brokers = [
            BrokerNode(node_id=n, host=self.host, port=free_port(),
                       controller_port=free_port(), data_dir=self.root / f"node-{n}" / "data")
            for n in range(1, self.size + 1)
        ]
        for broker in brokers:
            home = self.root / f"node-{broker.node_id}"
            config = home / "server.properties"
            write_properties(config, broker_properties(
                broker, voters=brokers, extra=FAST_FAILURE_DETECTION))
            self.nodes.append(ClusterNode(broker, config, home / "logs"))

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients find a live one when some are down."""
        return ",".join(n.broker.address for n in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} in the cluster (nodes {self.node_ids()})")

    def node_ids(self) -> list[int]:
        return [n.node_id for n in self.nodes]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> float:
        """Format every node for one cluster id, start them all, and wait until each is
        registered and the group coordinator's topic exists; returns the seconds taken."""
        began = time.monotonic()
        cluster_id = new_cluster_id()
        for node in self.nodes:
            format_storage(libs=self.libs, logs_dir=node.logs_dir, config=node.config,
                           data_dir=node.broker.data_dir, cluster_id=cluster_id)
        for node in self.nodes:
            node.pid = spawn_detached(
                java_command(self.libs, node.logs_dir, "kafka.Kafka", str(node.config),
                             jvm=broker_jvm_options(self.heap)),
                log_path=node.logs_dir / "stdout.log",
            )
        for node in self.nodes:
            wait_until(
                partial(port_open, self.host, node.broker.port), timeout=self.start_timeout,
                what=f"Kafka node {node.node_id}",
                log_path=node.logs_dir / "server.log", alive=node.running,
            )
        asyncio.run(self._until_registered(self.size))
        # Created now, with every node up: the group offsets and transaction state topics
        # need three live brokers to be created with replication 3, and a consumer group or
        # a transactional producer started with a node down would wait for them forever.
        asyncio.run(self._create_internal_topics())
        return time.monotonic() - began

    def kill(self, node_id: int) -> None:
        """kill -9 of one node (reaped here: no defunct child)."""
        node = self.node(node_id)
        if node.pid is None:
            raise RuntimeError(f"node {node_id} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(node.pid, 0)
        node.pid = None

    def stop(self) -> None:
        """Stop every running node (SIGTERM, then SIGKILL), reap them, remove the data."""
        for node in self.nodes:
            if node.pid is not None:
                # SIGTERM to all first: a node waiting for its peers stops sooner with them.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGTERM)
        for node in self.nodes:
            if node.pid is not None:
                stop_pid(node.pid, timeout=30)
                node.pid = None
        shutil.rmtree(self.root, ignore_errors=True)

    # -- topics and metadata --------------------------------------------------------------
    def create_topics(self, prefix: str) -> list[TopicSpec]:
        """The platform's topics under `prefix`, replicated three times; returns once each
        partition has a leader and every replica in sync."""
        specs = replicated_specs(prefix)
        asyncio.run(ensure_topics(self.bootstrap, specs))
        for spec in specs:
            deadline = time.monotonic() + 30
            while not all(p["leader"] >= 0 and len(p["isr"]) == spec.replication_factor
                          for p in self.partitions(spec.name)):  # (never empty)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{spec.name}: partitions without a leader or a full "
                                       f"ISR after 30 s: {self.partitions(spec.name)}")
                time.sleep(0.2)
        return specs

    def partitions(self, topic: str) -> list[dict[str, Any]]:
        """Per partition: `partition`, `leader`, `replicas`, `isr` (node ids)."""
        return asyncio.run(self._describe(topic))

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> node id of its leader (-1: none)."""
        return {p["partition"]: p["leader"] for p in self.partitions(topic)}

    def broker_config(self, node_id: int, name: str) -> str | None:
        """The value of broker setting `name` as node `node_id` reports it."""
        return asyncio.run(self._broker_config(node_id, name))

    @property
    def live_bootstrap(self) -> str:
        """The addresses of the nodes still running."""
        return ",".join(n.broker.address for n in self.nodes if n.running())

    async def _ask(self, question: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
        """`question` through a fresh admin client, again on failure for up to 30 s: the
        client sends to a random known broker, which may be one just killed and not yet
        fenced."""
        deadline = time.monotonic() + 30
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.live_bootstrap,
                                        request_timeout_ms=5000)
            try:
                await admin.start()
                return await question(admin)
            except (KafkaError, OSError):
                if time.monotonic() > deadline:
                    raise
            finally:
                await admin.close()
            await asyncio.sleep(0.3)

    async def _until_registered(self, count: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        seen: list[int] = []
        while time.monotonic() < deadline:
            try:
                cluster = await self._ask(lambda admin: admin.describe_cluster())
                seen = sorted(b["node_id"] for b in cluster["brokers"])
            except (KafkaError, OSError):  # nodes still electing a controller
                seen = []
            if len(seen) >= count:
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"only brokers {seen} of {self.node_ids()} registered within "
                           f"{self.start_timeout:.0f} s; logs under {self.root}")

    async def _create_internal_topics(self) -> None:
        """Commit one offset for a throwaway group and one transaction, which create
        `__consumer_offsets` and `__transaction_state`."""
        [spec] = [s for s in replicated_specs("warm-up.") if s.name == "warm-up." + DLQ_TOPIC]
        await ensure_topics(self.bootstrap, [spec])
        partition = TopicPartition(spec.name, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id="warm-up",
                                    enable_auto_commit=False)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap,
                                    transactional_id="warm-up", enable_idempotence=True)

        async def commit_offset() -> None:
            await consumer.commit({partition: 0})

        async def commit_transaction() -> None:
            async with producer.transaction():
                await producer.send_and_wait(spec.name, b"warm-up", partition=0)

        await consumer.start()
        try:
            consumer.assign([partition])
            await self._until_done(commit_offset)
        finally:
            await consumer.stop()
        await self._until_done(producer.start)
        try:
            await self._until_done(commit_transaction)
        finally:
            await producer.stop()

    async def _until_done(self, action: Callable[[], Awaitable[None]]) -> None:
        """`action` again until it succeeds (a coordinator's topic is being created)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                await action()
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _describe(self, topic: str) -> list[dict[str, Any]]:
        async def describe(admin: AIOKafkaAdminClient) -> list[dict[str, Any]]:
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] != 0 or not described["partitions"]:
                # This broker has not heard of a topic just created: ask again.
                raise UnknownTopicOrPartitionError(f"{topic}: {described}")
            return list(described["partitions"])

        return sorted(await self._ask(describe), key=lambda p: p["partition"])

    async def _broker_config(self, node_id: int, name: str) -> str | None:
        async def describe(admin: AIOKafkaAdminClient) -> list[Any]:
            resource = ConfigResource(ConfigResourceType.BROKER, str(node_id), {name: None})
            return list(await admin.describe_configs([resource]))

        for response in await self._ask(describe):
            for _code, _message, _type, _name, entries in response.resources:
                for entry in entries:
                    if entry[0] == name:
                        return str(entry[1]) if entry[1] is not None else None
        return None


def most_led(leaders: dict[int, int], candidates: Sequence[int]) -> int:
    """The candidate node leading the most partitions (the lowest id on a tie)."""
    return max(sorted(candidates), key=lambda n: sum(1 for led in leaders.values() if led == n))
