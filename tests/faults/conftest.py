"""An isolated Kafka broker that fault tests may stop and start at will, without
disturbing the shared local stack. Its state lives under the repository's
`.turnlog/test-stacks/` and is removed at the end of the session."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import unique
from turnlog.infra.stack.config import REPO_ROOT, StackSettings
from turnlog.infra.stack.kafka import Kafka
from turnlog.infra.stack.process import port_open
from turnlog.infra.stack.topics import ensure_topics
from turnlog.schemas import EVENTS_TOPIC, topic_specs

TEST_STACKS = REPO_ROOT / ".turnlog" / "test-stacks"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class IsolatedBroker:
    """A single-node broker of our own: `stop()` and `start()` are the faults."""

    kafka: Kafka
    state_dir: Path

    @property
    def bootstrap(self) -> str:
        return self.kafka.address

    def stop(self) -> float:
        """Stop the broker; returns the seconds it took."""
        began = time.monotonic()
        self.kafka.stop()
        return time.monotonic() - began

    def start(self) -> float:
        """Start the broker and wait until it answers metadata; returns the seconds."""
        began = time.monotonic()
        self.kafka.start()
        return time.monotonic() - began

    def is_up(self) -> bool:
        return port_open(self.kafka.settings.host, self.kafka.settings.kafka_port)

    def new_topic(self) -> str:
        """A fresh copy of the events topic (12 partitions, 2 MiB messages)."""
        prefix = unique("fault-") + "."
        spec = next(s for s in topic_specs(prefix) if s.name == prefix + EVENTS_TOPIC)
        asyncio.run(ensure_topics(self.bootstrap, [spec]))
        return spec.name


@pytest.fixture(scope="session")
def isolated_kafka(stack_settings: StackSettings) -> Iterator[IsolatedBroker]:
    state_dir = TEST_STACKS / unique("faults-")
    settings = StackSettings(
        state_dir=state_dir,
        cache_dir=stack_settings.cache_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        kafka_heap="512m",
    )
    broker = IsolatedBroker(Kafka(settings), state_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def broker(isolated_kafka: IsolatedBroker) -> IsolatedBroker:
    """The isolated broker, running when the test begins (the test may stop it)."""
    if not isolated_kafka.is_up():
        isolated_kafka.start()
    return isolated_kafka


@pytest.fixture
def topic(broker: IsolatedBroker) -> str:
    """A fresh events topic on the isolated broker."""
    return broker.new_topic()


@pytest.fixture
def spool_dir(isolated_kafka: IsolatedBroker) -> Iterator[Path]:
    """A spool folder of this test, under the isolated stack's state folder."""
    path = isolated_kafka.state_dir / unique("spool-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
