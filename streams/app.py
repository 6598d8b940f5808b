"""The Faust app of the streams worker: the service container of the projections.

`create_app(settings, projections)` builds it without connecting to anything. Start it
with `python -m turnlog.streams worker [--projection NAME ...]`, or the Faust way,
`faust -A turnlog.streams.app worker --without-web` (every projection; the module's `app`
attribute is created on first access from the environment's settings).

Each projection runs as a `ProjectionEngine` with its own consumer group, so one process
may hold one projection (scale them apart) or all three (the default). Faust is used as
the service container only (start, stop, signals, logging): its stream machinery costs
about 100 µs an event, its producer and consumer are left out (each engine has its own
aiokafka consumer; dead letters go through `delivery`), and per-session state lives in
the derived projection's own changelog (see `derived_projector`), not in Faust tables.

Choices: `topic_allow_declare=False` (the launcher creates the topics), `web_enabled=False`
(Faust's web server binds every interface; the worker serves its own loopback metrics
and query endpoints), in-memory table store.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from typing import Any, Final

import faust
import mode
from faust.app.base import BootStrategy

from turnlog.projections.clickhouse.store import ChdbStore, exit_past_chdb_teardown
from turnlog.streams.config import StreamsSettings, load_streams_settings
from turnlog.streams.delivery import Delivery
from turnlog.streams.engine import ProjectionEngine
from turnlog.streams.errors import ConfigurationError
from turnlog.streams.metrics import StreamsMetrics
from turnlog.streams.projector import Projector
from turnlog.streams.retry import until_available
from turnlog.streams.startup import start_metrics_server, start_query_endpoint

logger = logging.getLogger("turnlog.streams.app")

PROJECTIONS: Final = ("postgres", "clickhouse", "derived", "keys")


def make_projector(name: str, settings: StreamsSettings) -> Projector:
    """The projector of `name`, configured from `settings`; connects to nothing."""
    s = settings
    if name == "postgres":
        from turnlog.streams.postgres_projector import PostgresProjector

        return PostgresProjector(
            dsn=s.postgres_dsn.get_secret_value(), schema=s.postgres_schema,
            group=s.group("postgres"), dlq_topic=s.dlq_topic,
        )  # fmt: skip
    if name == "clickhouse":
        from turnlog.streams.clickhouse_projector import ClickHouseProjector

        return ClickHouseProjector(
            url=s.analytics_url, database=s.clickhouse_database,
            group=s.group("clickhouse"), dlq_topic=s.dlq_topic,
            retention_days=s.retention_analytics_days,
        )  # fmt: skip
    if name == "derived":
        from turnlog.streams.derived_projector import DerivedProjector

        return DerivedProjector(
            bootstrap=s.kafka_bootstrap, group=s.group("derived"),
            events_topic=s.events_topic, turns_topic=s.turns_topic,
            sessions_topic=s.sessions_topic, state_topic=s.derived_state_topic,
            transactional_id=f"{s.group('derived')}-{s.instance}",
        )  # fmt: skip
    if name == "keys":
        from turnlog.streams.keys_projector import KeysProjector

        return KeysProjector(
            dsn=s.postgres_dsn.get_secret_value(), schema=s.postgres_schema,
            group=s.group("keys"), topic=s.keys_topic, dlq_topic=s.dlq_topic,
        )  # fmt: skip
    raise ConfigurationError(
        f"unknown projection {name!r}; choose from {', '.join(PROJECTIONS)}",
        variables=("--projection",),
    )


class WorkerRuntime(mode.Service):
    """The projections of one process, their producer, metrics and query endpoint."""

    def __init__(self, settings: StreamsSettings, projections: tuple[str, ...],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = StreamsMetrics()
        self.delivery = Delivery(settings.kafka_bootstrap)
        self.engines = [
            ProjectionEngine(make_projector(name, settings), settings, metrics=self.metrics,
                             deliver=self.delivery, beacon=self.beacon)
            for name in projections
        ]
        self._metrics_server: Any = None
        self._endpoint: Any = None
        self._chdb = False

    async def on_start(self) -> None:
        logger.info("starting projections %s: %s", [e.name for e in self.engines],
                    self.settings.describe())  # fmt: skip
        await until_available("starting the producer", self.delivery.start)
        for engine in self.engines:
            await self.add_runtime_dependency(engine)
        self.add_future(self._when_started())

    async def _when_started(self) -> None:
        """Serve metrics (the launcher's health check) once every engine consumes, and
        the analysts' endpoint once the ClickHouse projection owns its store."""
        await asyncio.gather(*(engine.consuming.wait() for engine in self.engines))
        for engine in self.engines:
            store = getattr(engine.projector, "store", None)
            if store is not None:
                self._chdb = isinstance(store, ChdbStore)
                self._endpoint = start_query_endpoint(self.settings, store)
        self._metrics_server = start_metrics_server(self.settings, self.metrics.registry)
        logger.info("the streams worker is consuming: %s", [e.name for e in self.engines])

    async def on_stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        await self.delivery.stop()
        if self._chdb:
            # chDB's background threads may crash while its engine is destroyed at
            # interpreter exit: end the process before that, whichever entry point.
            atexit.register(exit_past_chdb_teardown, 1 if self.crashed else 0)
        logger.info("the streams worker stopped")


class StreamsApp(faust.App):
    """A Faust app that knows its runtime (`app.runtime`)."""

    runtime: WorkerRuntime

    async def on_first_start(self) -> None:
        # Faust creates its data folder without parents, before any dependency starts.
        self.conf.datadir.parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()


def create_app(settings: StreamsSettings, projections: tuple[str, ...] = PROJECTIONS) -> StreamsApp:
    """The Faust app running `projections`; connects to nothing until started."""
    unknown = [p for p in projections if p not in PROJECTIONS]
    if unknown or not projections:
        raise ConfigurationError(
            f"unknown projection {unknown!r}; choose from {', '.join(PROJECTIONS)}",
            variables=("--projection",),
        )
    app = StreamsApp(
        settings.consumer_group,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        web_bind="127.0.0.1",  # `faust ... worker` turns the web server on unless
        web_host="127.0.0.1",  # given --without-web: then it binds loopback, at least
        datadir=str(settings.data_dir / "faust"),
    )
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False,
                                     enable_kafka_producer=False)  # fmt: skip
    runtime = WorkerRuntime(settings, tuple(dict.fromkeys(projections)))
    app.runtime = runtime
    app.add_dependency(runtime)
    return app


def __getattr__(name: str) -> Any:
    """`streams.app.app`: the app of the environment's settings, for `faust -A`."""
    if name == "app":
        app = create_app(load_streams_settings())
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
