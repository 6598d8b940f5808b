"""The worker's producer for dead letters: idempotent aiokafka, acks=all, and a `deliver`
that returns only once Kafka has every record. Kafka down → `DependencyUnavailableError`
(the engine waits and applies the batch again); a stop never waits past its timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from turnlog.streams.errors import DependencyUnavailableError
from turnlog.streams.records import OutRecord
from turnlog.streams.startup import PRODUCE_BYTES

logger = logging.getLogger("turnlog.streams.delivery")

DELIVERY_TIMEOUT: Final = 30.0
"""Seconds a delivery may take before it counts as Kafka being unavailable."""
STOP_TIMEOUT: Final = 5.0
"""Seconds a stop waits for the producer to flush and close."""


class Delivery:
    """One producer per worker process, shared by its projections."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="turnlog-streams",
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            max_request_size=PRODUCE_BYTES,
            request_timeout_ms=int(DELIVERY_TIMEOUT * 1000),
        )  # fmt: skip
        try:
            await producer.start()
        except (KafkaError, OSError) as error:
            await _closed(producer)
            raise DependencyUnavailableError(
                f"Kafka at {self.bootstrap} does not answer ({error})",
                dependency=f"Kafka at {self.bootstrap}",
            ) from error
        self._producer = producer

    async def __call__(self, records: Sequence[OutRecord]) -> None:
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise RuntimeError("the delivery producer is not started")
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                pending = [
                    await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                    for r in records
                ]
                await asyncio.gather(*pending)
        except (KafkaError, TimeoutError) as error:
            raise DependencyUnavailableError(
                f"delivering {len(records)} records failed ({error!r})",
                dependency=f"Kafka at {self.bootstrap}",
            ) from error

    async def stop(self) -> None:
        if self._producer is not None:
            await _closed(self._producer)
            self._producer = None


async def _closed(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), STOP_TIMEOUT)
    except (TimeoutError, KafkaError, OSError) as error:
        logger.warning("the producer did not close within %.0fs (%r); dropping it",
                       STOP_TIMEOUT, error)  # fmt: skip
