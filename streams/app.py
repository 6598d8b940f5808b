"""The Faust app of the streams worker.

`create_app(settings)` builds it without connecting to anything. Start it with
`python -m turnlog.streams worker`, or the Faust way,
`faust -A turnlog.streams.app worker --without-web`:
the module's `app` attribute is created on first access from the environment's settings
(no import-time singleton).

The app is the service container either way; what consumes the events topic depends on
`TURNLOG_STREAMS_ENGINE`: `batch` (default) runs the batch engine (`streams.engine`) as
a service started after Faust's own (producer first) and stopped before them, and leaves
Faust's consumer out (it would join the same group with another protocol); `faust` runs
the agent of `streams.agents` on Faust's consumer.

Choices, each for a reason:
- `processing_guarantee="at_least_once"`: Faust's exactly-once mode has open duplicate and
  crash bugs; the sinks are idempotent instead, so the effect is exactly once.
- raw key and value serializers: the processor decodes, so a malformed body becomes a
  dead letter instead of a Faust decoding error.
- `topic_allow_declare=False`, no leader topic: the launcher creates the topics from
  `schemas/topics.py`; the worker checks they exist at start.
- `web_enabled=False`: Faust's web server binds every interface; the worker serves its
  own loopback metrics and query endpoints. (Faust's own CLI enables the web server
  unless given `--without-web`; it then binds 127.0.0.1.)
- in-memory table store (no tables, no RocksDB); producer and consumer limits above the
  topics' message limits (events 2 MiB, DLQ 8 MiB).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.app.base import BootStrategy

from turnlog.streams.agents import register_agents
from turnlog.streams.config import StreamsSettings, load_streams_settings
from turnlog.streams.engine import BatchEngine
from turnlog.streams.runtime import StreamsRuntime
from turnlog.streams.startup import FETCH_BYTES, PRODUCE_BYTES


class StreamsApp(faust.App):
    """A Faust app that knows its runtime (`app.runtime`) and, with the batch engine,
    the engine (`app.engine`)."""

    runtime: StreamsRuntime
    engine: BatchEngine | None = None

    async def on_first_start(self) -> None:
        # Faust creates its data folder without parents, before any dependency starts.
        self.conf.datadir.parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()

    async def on_started_init_extra_services(self) -> None:
        await super().on_started_init_extra_services()
        if self.engine is not None:
            # Last to start, so first to stop: the batch in flight still has the
            # producer (its outputs) and the runtime (its sinks).
            await self.add_runtime_dependency(self.engine)


def create_app(settings: StreamsSettings) -> StreamsApp:
    """The Faust app with its agent and runtime; connects to nothing until started."""
    app = StreamsApp(
        settings.consumer_group,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        web_bind="127.0.0.1",  # `faust ... worker` turns the web server on unless
        web_host="127.0.0.1",  # given --without-web: then it binds loopback, at least
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=FETCH_BYTES,
        producer_max_request_size=PRODUCE_BYTES,
        producer_max_batch_size=256 * 1024,
        producer_acks=-1,
        producer_compression_type="lz4",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        datadir=str(settings.data_dir / "faust"),
    )
    runtime = StreamsRuntime(app, settings)
    app.runtime = runtime
    # Started before Faust's own services (producer, consumer, agents), stopped after.
    app.add_dependency(runtime)
    if settings.engine == "batch":
        app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
        app.engine = BatchEngine(runtime)
    else:
        register_agents(app, runtime)
    return app


def __getattr__(name: str) -> Any:
    """`streams.app.app`: the app of the environment's settings, for `faust -A`."""
    if name == "app":
        app = create_app(load_streams_settings())
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
