"""The retention job: on a schedule, erase the sessions older than the read models'
retention period (by the same path as an erasure request, scope `retention`), and finish
erasures whose Kafka part is pending. Runs in the API process; one run at a time.

The other stores keep their own periods: the log and the DLQ by topic retention (the
launcher sets `retention.ms`), ClickHouse by table TTL (the ClickHouse projector sets it).
Erasing the keys of old sessions also makes their sealed copies in those stores
unreadable before their own periods end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from turnlog.api.db import Database
from turnlog.api.erasure import complete_pending, erase, sessions_older_than

logger = logging.getLogger(__name__)


@dataclass
class RetentionRun:
    """What one run did."""

    erased_sessions: int = 0
    completed_pending: int = 0


class RetentionJob:
    def __init__(
        self, db: Database, *, bootstrap: str, topic_prefix: str, read_models_days: int | None,
        interval_s: float,
    ) -> None:  # fmt: skip
        self.db = db
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.read_models_days = read_models_days
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, *, now: datetime | None = None) -> RetentionRun:
        """One pass: pending erasures first, then old sessions, a batch of 1,000 per
        erasure until none is left."""
        run = RetentionRun()
        schema = self.db.schema
        run.completed_pending = await complete_pending(
            self.db.run, schema=schema, bootstrap=self.bootstrap, topic_prefix=self.topic_prefix
        )
        if self.read_models_days is None:
            return run
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.read_models_days)
        while sessions := await self.db.run(sessions_older_than, cutoff, schema=schema):
            erasure = await erase(
                self.db.run, schema=schema, bootstrap=self.bootstrap,
                topic_prefix=self.topic_prefix, scope="retention", session_ids=sessions,
                requested_by="retention",
                reason=f"older than the read models' retention ({self.read_models_days} days)",
            )  # fmt: skip
            run.erased_sessions += len(sessions)
            logger.info("retention erased %d sessions (erasure %s)", len(sessions),
                        erasure.erasure_id)  # fmt: skip
        return run

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="turnlog-retention")

    async def _forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a failed run is retried at the next interval
                logger.exception("the retention run failed")
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
