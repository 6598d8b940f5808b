"""The store scanner finds what is there: a phrase put in each real store (Kafka with every
codec, PostgreSQL, chDB, a file) is found in that store and no other, decoded where it is
compressed; a phrase never written is found nowhere. One scan serves every test."""

from __future__ import annotations

import asyncio
import os
import random
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import chdb
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from psycopg import sql

from tests.conftest import unique
from tests.store_scan import Finding, postgres_checkpoint, scan
from turnlog.infra.stack.stack import Stack
from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore

pytestmark = pytest.mark.integration

CODECS = ("zstd", "lz4", "gzip", "snappy")


@dataclass(frozen=True)
class Planted:
    phrases: dict[str, bytes]
    """What was written where: ``kafka-<codec>``, ``kafka-split`` (only zstd's decoding
    joins its halves), ``kafka-header``, ``postgres``, ``clickhouse``,
    ``clickhouse-materialized``, ``file``; and ``never`` (written nowhere)."""
    partition_dir: Path
    """The test topic's only partition under the broker's log.dirs."""
    findings: list[Finding]
    seed: int

    def of(self, role: str) -> list[Finding]:
        return [f for f in self.findings if f.needle == self.phrases[role]]

    def stores(self, role: str) -> set[str]:
        return {f.store for f in self.of(role)}

    def in_partition(self, role: str, store: str) -> int:
        here = [f for f in self.of(role) if Path(f.location).parent == self.partition_dir]
        return sum(f.count for f in here if f.store == store)


def phrases(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)

    def word(role: str) -> str:
        return f"scan-{role}-" + "".join(rng.choices(string.ascii_lowercase, k=20))

    roles = [f"kafka-{c}" for c in CODECS] + [
        "kafka-header", "postgres", "clickhouse", "clickhouse-materialized", "file", "never",
    ]  # fmt: skip
    found = {role: word(role) for role in roles}
    found["kafka-lz4"] = found["kafka-lz4"].replace("scan-", "scan-zoë-")  # not ASCII
    found["kafka-split"] = word("split") + word("tail")
    found["clickhouse-materialized"] = found["clickhouse"][::-1]
    return {role: text.encode() for role, text in found.items()}


async def produce(bootstrap: str, topic: str, planted: dict[str, bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    split = planted["kafka-split"]
    head, tail = split[: len(split) // 2], split[len(split) // 2 :]
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    compression_type=codec)  # fmt: skip
        await producer.start()
        try:
            value = b"note: " + planted[f"kafka-{codec}"]
            headers = []
            if codec == "zstd":
                # The whole phrase only as a back-reference to its halves: raw bytes lack it.
                value += b" " + head + b"#" + tail + b"#" + split
                headers = [("x-note", planted["kafka-header"])]
            await producer.send_and_wait(topic, value, key=b"k", headers=headers)
        finally:
            await producer.stop()


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@dataclass(frozen=True)
class ChdbQuery:
    """`clickhouse_query` on this process's chDB folder (one folder per process, so the
    shared `analytics_store` fixture's), through chDB's own client: bytes as stored."""

    path: Path

    def __call__(self, statement: str) -> bytes:
        conn = chdb.connect(str(self.path))  # type: ignore[no-untyped-call]
        try:
            return bytes(conn.query(statement).bytes())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def planted(
    stack: Stack, kafka_bootstrap: str, postgres_dsn: str, analytics_store: AnalyticsStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Planted]:  # fmt: skip
    seed = int(os.environ.get("STORE_SCAN_SEED", random.randrange(2**32)))
    print(f"seed {seed} (STORE_SCAN_SEED={seed} repeats it)")
    words = phrases(seed)
    topic = unique("test-") + ".store-scan"
    schema = unique("test_scan_")
    database = unique("test_scan_")
    if not isinstance(analytics_store, ChdbStore):
        pytest.fail(f"the test process's store is not chDB: {analytics_store.url}")
    folder = tmp_path_factory.mktemp("store-scan") / "spool" / "dead-letters"
    folder.mkdir(parents=True)
    try:
        asyncio.run(produce(kafka_bootstrap, topic, words))
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            table = sql.Identifier(schema, "notes")
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1, %s)").format(table),
                         (words["postgres"].decode(),))  # fmt: skip
        analytics_store.command(f"CREATE DATABASE `{database}`")
        analytics_store.command(
            f"CREATE TABLE `{database}`.notes (id UInt32, note String, "
            "backwards String MATERIALIZED reverse(note)) ENGINE = MergeTree ORDER BY id"
        )  # fmt: skip
        analytics_store.command(
            f"INSERT INTO `{database}`.notes (id, note) VALUES (1, {{n:String}})",
            parameters={"n": words["clickhouse"].decode()},
        )
        (folder / "record-1.json").write_bytes(b'{"text": "' + words["file"] + b'"}')

        s = stack.settings
        postgres_checkpoint(f"host={stack.postgres.socket_dir} port={s.postgres_port} "
                            "user=postgres dbname=postgres")  # fmt: skip
        started = time.perf_counter()
        findings = scan(
            words.values(), kafka_log_dirs=[stack.kafka.data_dir], kafka_libs=stack.kafka.libs,
            postgres_data_dir=stack.postgres.data_dir, postgres_dsn=postgres_dsn,
            clickhouse_query=ChdbQuery(analytics_store.path), files=[folder.parent.parent],
        )  # fmt: skip
        print(f"scan took {time.perf_counter() - started:.1f} s")
        yield Planted(words, stack.kafka.data_dir / f"{topic}-0", findings, seed)
    finally:
        asyncio.run(delete_topic(kafka_bootstrap, topic))
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        analytics_store.command(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_record_is_found_by_kafkas_tool_and_by_decompression(
    planted: Planted, codec: str
) -> None:
    role = f"kafka-{codec}"
    assert planted.in_partition(role, "kafka-dump") == 1, (planted.seed, planted.of(role))
    assert planted.in_partition(role, "kafka-decompressed") == 1, (planted.seed, planted.of(role))
    assert planted.stores(role) <= {"kafka", "kafka-dump", "kafka-decompressed"}


def test_a_phrase_zstd_only_refers_to_is_missed_raw_and_found_decoded(planted: Planted) -> None:
    assert planted.in_partition("kafka-split", "kafka") == 0, planted.seed
    assert planted.in_partition("kafka-split", "kafka-dump") == 1, planted.seed
    assert planted.in_partition("kafka-split", "kafka-decompressed") == 1, planted.seed


def test_a_header_value_is_found_only_by_decompression(planted: Planted) -> None:
    """DumpLogSegments prints header keys, never their values."""
    assert planted.in_partition("kafka-header", "kafka-decompressed") == 1, planted.seed
    assert planted.in_partition("kafka-header", "kafka-dump") == 0, planted.seed


def test_a_postgres_row_is_found_in_its_heap_file_and_by_copy(planted: Planted) -> None:
    found = planted.of("postgres")
    heap = [f for f in found if f.store == "postgres" and "/base/" in f.location]
    assert heap, (planted.seed, found)  # written there by the CHECKPOINT
    assert sum(f.count for f in found if f.store == "postgres-rows") == 1, planted.seed
    assert planted.stores("postgres") == {"postgres", "postgres-rows"}


def test_a_chdb_row_is_found_with_its_materialized_column(planted: Planted) -> None:
    for role in ("clickhouse", "clickhouse-materialized"):
        assert planted.stores(role) == {"clickhouse"}, (planted.seed, planted.of(role))
        assert sum(f.count for f in planted.of(role)) >= 1


def test_a_file_in_a_nested_folder_is_found(planted: Planted) -> None:
    [finding] = planted.of("file")
    assert (finding.store, Path(finding.location).name, finding.count) == (
        "files", "record-1.json", 1,
    )  # fmt: skip


def test_a_phrase_never_written_is_found_nowhere(planted: Planted) -> None:
    assert planted.of("never") == [], planted.seed
