"""Time to erase one subject with ~1M events in the log: crypto-shredding
(`api.erasure.erase_in_postgres` + `finish`) against plain DELETE statements, same run.

    .venv/bin/python -m bench.erase_time [--sessions 10500] [--turns 4] [--per-participant 20]
        [--repeats 5] [--seed 11] [--keep]

Set-up (~5 minutes; progress printed): `--sessions` `streams_mix` sessions of ~96 events
(`--turns` 4; 10,500 make ~1M), started 50 ms apart, each caller in `--per-participant` sessions, go
through the gateway's `SealingSink` (keys issued) to a fresh topic prefix (all seven
topics) and, chunk by chunk with their real offsets, through `PostgresProjection` and the
key store (`store_records`) into a fresh schema; then VACUUM ANALYZE.

Measured, median of `--repeats` erasures, each of a different subject, the four kinds
interleaved (order rotating):
- crypto, session: `erase_in_postgres` (one transaction: key and subjects deleted, the
  session marked erased, its personal rows purged; VACUUM of the key tables) then
  `finish` (a new Kafka producer, tombstones on `turnlog.keys` and `turnlog.sessions`,
  `erasure.completed` on `turnlog.erasures`, the record marked completed);
- crypto, participant: the same after `sessions_of_identity` (the key store's index);
- DELETE (the baseline): one transaction deleting every row of the subject's sessions from
  the five read models; for a participant, its sessions found first through an index on
  `participants.identity` made for this purpose (the strongest plain design).
Not included: the API's HTTP and auth, the retention job, ClickHouse mutations, Kafka
log compaction (which happens later, in the broker).

What the DELETE cannot do: it removes rows from the read models only. The plaintext stays
in the log (`turnlog.events` keeps it forever; a rebuild projects it back), in
ClickHouse (a mutation per table rewrites whole parts), in the DLQ, in gateway spools and
in every backup and replica of all of them. Crypto-shredding destroys the one copy of the
data key: every sealed copy anywhere becomes unreadable at the erasure's commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import psycopg
from psycopg import sql

from bench.streams_load import delete_topics
from bench.streams_measure import interleaved, new_producer
from bench.streams_mix import Session
from turnlog.agent_gateway.hooks.sink import MemorySink
from turnlog.agent_gateway.sealing import SealingSink
from turnlog.api.erasure import erase_in_postgres, finish, sessions_of_identity
from turnlog.infra.stack.config import load_settings
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.postgres.keystore import store_records
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.tables import TABLES
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.schemas import EVENTS_TOPIC, KEYS_TOPIC, EventPayload, ParticipantJoined, encode
from turnlog.schemas import topic_specs as all_topics
from turnlog.schemas.sealing import WrappingKey, generate_kek
from turnlog.streams.decoding import decode_records
from turnlog.streams.records import RawRecord

CHUNK: Final = 10_000
"""Events per Kafka send round and per `apply_batch` (the worker's default batch)."""
Timed = dict[tuple[str, str], list[tuple[float, float, float, int, int]]]
"""Per (crypto|delete, session|participant), per erasure: PostgreSQL s, Kafka s, VACUUM s
(within PostgreSQL's), rows (and keys) touched, sessions."""
KINDS: Final = (("crypto", "session"), ("delete", "session"),
                ("crypto", "participant"), ("delete", "participant"))  # fmt: skip


def as_caller(payload: EventPayload, old: str, new: str) -> EventPayload:
    """`payload` with the simulated caller's identity `old` replaced by `new`."""
    fields = ("identity", "participant_identity")
    update = {f: new for f in fields if getattr(payload, f, None) == old}
    return payload.model_copy(update=update) if update else payload


async def send(producer: Any, topic: str, keyed: list[tuple[str, bytes]]) -> list[RawRecord]:
    """Produce `keyed` (session id, value); the records as a consumer would read them."""
    futures = [await producer.send(topic, value, key=key.encode()) for key, value in keyed]
    metas = await asyncio.gather(*futures)
    return [RawRecord(topic, m.partition, m.offset, k.encode(), v, (), None)
            for m, (k, v) in zip(metas, keyed, strict=True)]  # fmt: skip


async def load(args: argparse.Namespace, *, prefix: str, schema: str, dsn: str,
               bootstrap: str) -> tuple[dict[str, list[str]], dict[str, str], int]:  # fmt: skip
    """Produce and project everything; returns the sessions per participant identity, the
    sealed identity per session (the plain design's lookup value), the event count."""
    rng = random.Random(args.seed)
    events_out, keys_out = MemorySink(), MemorySink()
    sink = SealingSink(events=events_out, keys=keys_out,
                       wrapping=WrappingKey.from_pem(generate_kek()[1]))  # fmt: skip
    start = datetime.now(UTC) - timedelta(days=1)
    sessions = [Session(f"erase-{prefix[:-1]}-{n:05d}", rng) for n in range(args.sessions)]
    callers = {s.id: f"caller-{prefix[:-1]}-{n // args.per_participant:04d}"
               for n, s in enumerate(sessions)}  # fmt: skip
    of_caller: dict[str, list[str]] = {}
    for sid, caller in callers.items():
        of_caller.setdefault(caller, []).append(sid)
    tokens: dict[str, str] = {}
    producer = new_producer(bootstrap)
    await producer.start()
    total, began, shown = 0, time.perf_counter(), 0
    expected = args.sessions * (7 + 22 * args.turns)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            projection = PostgresProjection(conn, schema=schema, consumer="bench-erase")
            streams = [(s, start + timedelta(seconds=0.05 * n)) for n, s in enumerate(sessions)]
            for session, at, payload in interleaved(streams, args.turns):
                payload = as_caller(payload, f"caller-{session.id}", callers[session.id])
                sink.publish(session.event(payload, at))
                if len(events_out.events) >= CHUNK:
                    total += await project(producer, conn, projection, schema=schema,
                                           prefix=prefix, events=events_out, keys=keys_out,
                                           tokens=tokens)  # fmt: skip
                if total - shown >= 100_000:
                    shown = total
                    print(f"  loaded {total:>9,} of ~{expected:,} events, "
                          f"{total / (time.perf_counter() - began):,.0f} events/s", flush=True)
            total += await project(producer, conn, projection, schema=schema, prefix=prefix,
                                   events=events_out, keys=keys_out, tokens=tokens)  # fmt: skip
            conn.execute(sql.SQL("CREATE INDEX ON {} (identity)")
                         .format(sql.Identifier(schema, "participants")))  # fmt: skip
            for table in (*TABLES, "data_keys", "key_subjects"):
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, table)))
    finally:
        await producer.stop()
    print(f"  loaded {total:,} events of {args.sessions:,} sessions in "
          f"{time.perf_counter() - began:,.0f} s", flush=True)
    return of_caller, tokens, total


async def project(producer: Any, conn: psycopg.Connection[Any], projection: PostgresProjection,
                  *, schema: str, prefix: str, events: MemorySink, keys: MemorySink,
                  tokens: dict[str, str]) -> int:  # fmt: skip
    """Send the sealed events and keys gathered so far, then apply them; how many events."""
    for event in events.events:
        if isinstance(event.data, ParticipantJoined):
            tokens[event.sessionid] = event.data.identity
    key_records = await send(producer, prefix + KEYS_TOPIC,
                             [(e.sessionid, encode(e)) for e in keys.events])  # fmt: skip
    event_records = await send(producer, prefix + EVENTS_TOPIC,
                               [(e.sessionid, encode(e)) for e in events.events])  # fmt: skip
    count = len(events.events)
    events.events.clear()
    keys.events.clear()
    if key_records:
        batch = decode_records(key_records)
        store_records(conn, schema=schema, consumer="bench-erase-keys",
                      records=[d.source for d in batch.events],
                      offsets=batch.next_offsets())  # fmt: skip
    batch = decode_records(event_records)
    if batch.dead_letters:
        raise SystemExit(f"{len(batch.dead_letters)} events did not decode")
    projection.apply_batch([d.source for d in batch.events])
    return count


def plain_delete(conn: psycopg.Connection[Any], *, schema: str, session_ids: list[str]) -> int:
    """The baseline: every row of `session_ids` out of the read models, one transaction."""
    rows = 0
    with conn.transaction(), conn.cursor() as cur:
        for table in TABLES:
            cur.execute(sql.SQL("DELETE FROM {} WHERE session_id = ANY(%s)")
                        .format(sql.Identifier(schema, table)), (session_ids,))  # fmt: skip
            rows += max(cur.rowcount, 0)
    return rows


class VacuumTimer:
    """A connection that counts the time of the VACUUM statements run through it."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn, self.seconds = conn, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        result = self._conn.execute(query, *args, **kwargs)
        if "VACUUM" in repr(query):
            self.seconds += time.perf_counter() - began
        return result


async def erase(kind: tuple[str, str], subject: str, conn: psycopg.Connection[Any], *,
                schema: str, prefix: str, bootstrap: str, tokens: dict[str, list[str]],
                ) -> tuple[float, float, float, int, int]:  # fmt: skip
    """One erasure, see `Timed`."""
    how, scope = kind
    began = time.perf_counter()
    if how == "delete":
        sessions = [subject]
        if scope == "participant":
            found = conn.execute(sql.SQL("SELECT DISTINCT session_id FROM {} WHERE identity = "
                                         "ANY(%s)").format(sql.Identifier(schema, "participants")),
                                 (tokens[subject],)).fetchall()  # fmt: skip
            sessions = [str(r[0]) for r in found]
        rows = plain_delete(conn, schema=schema, session_ids=sessions)
        return time.perf_counter() - began, 0.0, 0.0, rows, len(sessions)
    identity = subject if scope == "participant" else None
    sessions = [subject] if identity is None else sessions_of_identity(conn, identity,
                                                                      schema=schema)  # fmt: skip
    timer = VacuumTimer(conn)
    erasure = erase_in_postgres(cast(Any, timer), schema=schema, scope=cast(Any, scope),
                                session_ids=sessions, requested_by="bench",
                                identity=identity)  # fmt: skip
    middle = time.perf_counter()

    async def call(fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        return fn(conn, *a, **kw)

    await finish(erasure, call, schema=schema, bootstrap=bootstrap, topic_prefix=prefix)
    if erasure.completed_at is None:
        raise SystemExit(f"erasure {erasure.erasure_id} stayed pending")
    rows = sum(s.count for s in erasure.steps if s.store in ("key_store", "postgres"))
    return (middle - began, time.perf_counter() - middle, timer.seconds, rows,
            len(erasure.session_ids))


async def measure(args: argparse.Namespace, of_caller: dict[str, list[str]],
                  tokens: dict[str, str], *, schema: str, prefix: str, dsn: str,
                  bootstrap: str) -> Timed:  # fmt: skip
    rng = random.Random(args.seed + 1)
    # a different participant for every erasure; a session subject is one caller's first
    callers = rng.sample(sorted(of_caller), 4 * args.repeats)
    subjects = {kind: callers[i * args.repeats:(i + 1) * args.repeats]
                for i, kind in enumerate(KINDS)}  # fmt: skip
    for kind in KINDS:
        if kind[1] == "session":
            subjects[kind] = [of_caller[c][0] for c in subjects[kind]]
    caller_tokens = {c: [tokens[s] for s in of_caller[c] if s in tokens] for c in of_caller}
    results: Timed = {k: [] for k in KINDS}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for r in range(args.repeats):
            for kind in KINDS[r % 4:] + KINDS[:r % 4]:
                results[kind].append(await erase(kind, subjects[kind][r], conn, schema=schema,
                                                 prefix=prefix, bootstrap=bootstrap,
                                                 tokens=caller_tokens))  # fmt: skip
    return results


def report(results: Timed, total: int) -> None:
    def ms(kind: tuple[str, str], part: Callable[[Any], float]) -> float:
        return statistics.median(part(r) for r in results[kind]) * 1000

    print(f"\nerasure of one subject, {total:,} events in the log; ms, median of "
          f"{len(results[KINDS[0]])} subjects each (a different one each time)")
    print("| subject | sessions | crypto: PostgreSQL (of which VACUUM) | crypto: Kafka | "
          "crypto: total | plain DELETE | crypto total ÷ DELETE | crypto PostgreSQL ÷ "
          "DELETE | rows+keys (crypto) | rows (DELETE) |\n|---|" + "---:|" * 9)
    for scope in ("session", "participant"):
        crypto, delete = ("crypto", scope), ("delete", scope)
        pg, total_ms, plain = ms(crypto, lambda r: r[0]), ms(crypto, lambda r: r[0] + r[1]), \
            ms(delete, lambda r: r[0])  # fmt: skip
        print(f"| one {scope} | {ms(crypto, lambda r: r[4]) / 1000:.0f} | {pg:.1f} "
              f"({ms(crypto, lambda r: r[2]):.1f}) | {ms(crypto, lambda r: r[1]):.1f} | "
              f"{total_ms:.1f} | {plain:.1f} | {total_ms / plain:.1f} | {pg / plain:.1f} | "
              f"{ms(crypto, lambda r: r[3]) / 1000:.0f} | "
              f"{ms(delete, lambda r: r[3]) / 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_500, help="~96 events each")
    parser.add_argument("--turns", type=int, default=4, help="turns per session (~22 events)")
    parser.add_argument("--per-participant", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the topics and the schema")
    args = parser.parse_args()
    settings = load_settings()
    dsn = os.environ.get("TURNLOG_POSTGRES_DSN", settings.postgres_dsn)
    tag = f"{random.Random().getrandbits(32):08x}"
    prefix, schema = f"bench-erase-{tag}.", f"bench_erase_{tag}"
    print(f"erase time: seed {args.seed}, topic prefix {prefix}, schema {schema}")
    specs = all_topics(prefix)
    asyncio.run(ensure_topics(settings.kafka_bootstrap, specs))
    migrate_postgres(dsn, schema=schema)
    try:
        of_caller, tokens, total = asyncio.run(load(
            args, prefix=prefix, schema=schema, dsn=dsn, bootstrap=settings.kafka_bootstrap))
        results = asyncio.run(measure(args, of_caller, tokens, schema=schema, prefix=prefix,
                                      dsn=dsn, bootstrap=settings.kafka_bootstrap))  # fmt: skip
        report(results, total)
    finally:
        if not args.keep:
            asyncio.run(delete_topics(settings.kafka_bootstrap, [s.name for s in specs]))
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            print(f"dropped the topics of {prefix} and schema {schema}")


if __name__ == "__main__":
    main()
