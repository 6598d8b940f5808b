"""Settings of the publisher: where to send, where to spool, and the tuning knobs.

Every default works for the local stack; the worker passes an absolute `spool_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from turnlog.schemas.topics import EVENTS_TOPIC, MAX_MESSAGE_BYTES

Compression = Literal["zstd", "lz4", "gzip", "none"]


@dataclass(frozen=True, kw_only=True)
class PublisherSettings:
    """Configuration of one `Publisher`. Times are in seconds, sizes in bytes."""

    bootstrap_servers: str = "127.0.0.1:19092"
    """Kafka bootstrap servers, `host:port[,host:port...]`."""
    topic: str = EVENTS_TOPIC
    """Topic every event goes to."""
    spool_dir: Path = Path(".turnlog/spool")
    """Folder of the disk spool, shared by every publisher of the host (each owns its
    files through an flock)."""
    queue_size: int = 10_000
    """Events held in memory between `publish()` and the sender thread; beyond it,
    `publish()` writes to the spool itself."""
    compression: Compression = "zstd"
    """Batch compression. Measured on our events (bench/publish_throughput.py): zstd
    compresses 14.5x for 0.6 us per event; lz4, through aiokafka's frame encoder, only
    6.8x for 4.7 us; none saves 0.3 us but sends 14 times the bytes."""
    linger: float = 0.05
    """How long events gather in the queue after the sender last took some (unless 512
    are waiting, or the publisher is closing): the longest an event waits there, and the
    window in which the hooks of a conversation become one produce request. Measured on
    the voice pattern (bench/record_cost.py): 5 ms made batches of one or two events and
    cost about 200 us of CPU per event; 50 ms, about 80."""
    idle_linger: float = 0.05
    """How often the sender looks at the queue after a second without events. `publish()`
    wakes it early only when the queue is half full (waking costs the hook a syscall)."""
    batch_bytes: int = 256 * 1024
    """Uncompressed size of one record batch; a larger event gets a batch of its own."""
    max_request_bytes: int = MAX_MESSAGE_BYTES
    """Producer `max_request_size`; aiokafka's 1 MiB default cannot carry a maximum-size
    event with its key, headers and batch overhead."""
    request_timeout: float = 5.0
    """aiokafka's request timeout (metadata, produce requests, waiting for batch room)."""
    delivery_timeout: float = 10.0
    """A batch not acknowledged within this time marks the producer as wedged: it is
    torn down, its unacknowledged events are spooled, and a new one is built."""
    connect_timeout: float = 5.0
    """Upper bound of starting a producer (bootstrap, producer id, topic metadata)."""
    stop_timeout: float = 2.0
    """Upper bound of stopping a producer (aiokafka may hang there with the broker down)."""
    reconnect_backoff: float = 0.25
    """First wait before building a new producer after a failure; doubles each time."""
    reconnect_backoff_max: float = 5.0
    """Longest wait between producer builds: how often a down broker is probed."""
    fsync_interval: float = 0.05
    """Spool appends are fsync'd together at most this long after being written."""
    segment_bytes: int = 64 * 1024 * 1024
    """A spool segment is sealed (and a new one started) beyond this size."""
    drain_window: int = 4096
    """Spooled events in flight at once while the spool drains."""
    drain_read_bytes: int = 4 * 1024 * 1024
    """Bytes read from a segment at once while draining."""
    adopt_interval: float = 30.0
    """How often a running publisher looks for spool files whose owner has died."""
    client_id: str = "turnlog-gateway"
    """Kafka client id of the producer."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"PublisherSettings.{field.name} must be positive, got {value}")
        if not self.bootstrap_servers.strip():
            raise ValueError("PublisherSettings.bootstrap_servers must not be empty")
        if not self.topic:
            raise ValueError("PublisherSettings.topic must not be empty")
        if self.batch_bytes >= self.max_request_bytes:
            raise ValueError(
                f"PublisherSettings.batch_bytes ({self.batch_bytes}) must be below "
                f"max_request_bytes ({self.max_request_bytes})"
            )
