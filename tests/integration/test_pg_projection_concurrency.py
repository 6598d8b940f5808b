"""Several writers at once: partitions applied from threads through one pool, and two
projectors racing over the same events (a rebalance that briefly gives a partition to
two consumers). Each event is applied once, nothing deadlocks, the state is the same."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from tests.conftest import PgSchema
from tests.integration.test_pg_projection_support import count, extra_schema, in_batches, log
from turnlog.projections.postgres.checksum import checksum
from turnlog.projections.postgres.writer import BatchResult, PostgresProjection
from turnlog.projections.records import SourceRecord

pytestmark = pytest.mark.integration

LOG = log()


def expected_checksum(dsn: str) -> dict[str, str]:
    with extra_schema(dsn) as reference, reference.connect() as conn:
        PostgresProjection(conn, schema=reference.name).apply_batch(LOG)
        return checksum(conn, reference.name)


def run_threads(jobs: list[Callable[[], list[BatchResult]]]) -> list[BatchResult]:
    results: list[BatchResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(job: Callable[[], list[BatchResult]]) -> None:
        try:
            done = job()
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)
            return
        with lock:
            results.extend(done)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def feeder(projection: PostgresProjection, records: list[SourceRecord], size: int
           ) -> Callable[[], list[BatchResult]]:
    return lambda: [projection.apply_batch(b) for b in in_batches(records, size)]


@pytest.fixture
def pool(pg_schema: PgSchema) -> Any:
    with ConnectionPool(pg_schema.dsn, min_size=2, max_size=4, open=True,
                        kwargs={"autocommit": True}) as pool:
        yield pool


def test_partitions_applied_from_threads_through_one_pool(
    pg_schema: PgSchema, pool: ConnectionPool[Any]
) -> None:
    projection = PostgresProjection(pool, schema=pg_schema.name)
    by_partition = [[r for r in LOG if r.partition == p] for p in (0, 1)]

    results = run_threads([feeder(projection, records, 9) for records in by_partition])

    assert sum(r.applied for r in results) == len(LOG)
    assert projection.committed_offsets(LOG[0].topic) == {0: 114, 1: 26}
    with pool.connection() as conn:
        assert checksum(conn, pg_schema.name) == expected_checksum(pg_schema.dsn)


def test_two_projectors_racing_over_the_same_events_apply_each_once(
    pg_schema: PgSchema, pool: ConnectionPool[Any]
) -> None:
    first = PostgresProjection(pool, schema=pg_schema.name)
    second = PostgresProjection(pool, schema=pg_schema.name)

    results = run_threads([feeder(first, LOG, 11), feeder(second, LOG, 17)])

    assert sum(r.applied for r in results) == len(LOG)
    assert sum(r.skipped_duplicates for r in results) == len(LOG)
    with pool.connection() as conn:
        assert count(conn, pg_schema.name, "applied_events") == len(LOG)
        assert checksum(conn, pg_schema.name) == expected_checksum(pg_schema.dsn)
