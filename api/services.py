"""What the routes use, made once per app from the settings: the PostgreSQL pool, the
key ring, the console sessions, the issuance record, the analytics reader, Kafka
metadata, the live hub, the rate limits, the metrics and the LiveKit server API. Started and stopped
by the app's lifespan."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from livekit import api as lkapi

from turnlog.api.analytics import Analytics
from turnlog.api.console_sessions import ConsoleSessions
from turnlog.api.db import Database
from turnlog.api.issuance import IssuanceLog
from turnlog.api.keys import KeyRing
from turnlog.api.live import KafkaMetadata
from turnlog.api.live_hub import LiveHub
from turnlog.api.middleware import ApiMetrics
from turnlog.api.privacy import Opener
from turnlog.api.ratelimit import RateLimits
from turnlog.api.retention import RetentionJob
from turnlog.api.settings import ApiSettings
from turnlog.projections.clickhouse.store import AnalyticsStore

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: ApiSettings
    db: Database
    keys: KeyRing
    console_sessions: ConsoleSessions
    issuance: IssuanceLog
    analytics: Analytics
    kafka: KafkaMetadata
    live_hub: LiveHub
    limits: RateLimits
    metrics: ApiMetrics
    opener: Opener
    retention: RetentionJob
    live_streams: int = 0
    """Live event streams open now."""
    _livekit: Any = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        settings: ApiSettings,
        *,
        metrics: ApiMetrics,
        analytics_store: AnalyticsStore | None = None,
    ) -> Services:
        schema = settings.postgres_schema
        db = Database(
            settings.postgres_dsn.get_secret_value(), schema=schema,
            size=settings.postgres_pool_size,
        )  # fmt: skip
        kafka = KafkaMetadata(settings.kafka_bootstrap)
        return cls(
            settings=settings,
            db=db,
            keys=KeyRing(schema=schema),
            console_sessions=ConsoleSessions(schema=schema),
            issuance=IssuanceLog(db.pool, schema=schema),
            analytics=Analytics(
                settings.analytics_url,
                database=settings.clickhouse_database,
                store=analytics_store,
            ),
            kafka=kafka,
            live_hub=LiveHub(
                bootstrap=settings.kafka_bootstrap,
                topic=settings.events_topic,
                partitions=kafka.partitions,
            ),
            limits=RateLimits.create(
                settings.rate_limit_storage.get_secret_value(),
                per_key=settings.rate_limit_per_key,
                per_identity=settings.rate_limit_per_identity,
                per_address=settings.rate_limit_per_address,
                auth_failures=settings.auth_failures_per_address,
            ),
            metrics=metrics,
            opener=Opener.from_file(settings.kek_private_key, schema=schema),
            retention=RetentionJob(
                db, bootstrap=settings.kafka_bootstrap, topic_prefix=settings.topic_prefix,
                read_models_days=settings.retention_read_models_days,
                interval_s=settings.retention_interval_s,
            ),
        )

    def livekit(self) -> lkapi.LiveKitAPI:
        """The LiveKit server API (rooms), made on first use inside the event loop."""
        if self._livekit is None:
            credentials = self.settings.livekit_credentials()
            self._livekit = lkapi.LiveKitAPI(
                _http_url(self.settings.livekit_url), credentials[0], credentials[1]
            )
        client: lkapi.LiveKitAPI = self._livekit
        return client

    async def start(self) -> None:
        await self.db.open()
        self.issuance.start()
        self.retention.start()

    async def stop(self) -> None:
        await self.retention.stop()
        await self.issuance.stop()
        if self._livekit is not None:
            await self._livekit.aclose()
        await self.live_hub.stop()
        await self.kafka.close()
        self.analytics.close()
        await self.db.close()


def _http_url(url: str) -> str:
    """LiveKit's server API speaks HTTP on the same address as its WebSocket."""
    if url.startswith("ws://"):
        return "http://" + url.removeprefix("ws://")
    if url.startswith("wss://"):
        return "https://" + url.removeprefix("wss://")
    return url
