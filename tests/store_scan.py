"""Search every store of a running Turnlog platform, byte for byte, for given needles.

A privacy test asserts "found 0 times" with this, which means something only if the
search would have found what is there. So what is compressed is decoded first: Kafka
segments by Kafka's own DumpLogSegments and by decompressing each batch here (the tool
prints header keys, not their values), ClickHouse tables through queries. PostgreSQL
files are searched raw: CHECKPOINT first (`postgres_checkpoint`), and pass a DSN as well,
since values over ~2 KB are TOAST-compressed on disk. Run `python -m tests.store_scan -h`.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cramjam
import psycopg
from psycopg import sql

from turnlog.infra.stack.config import load_settings
from turnlog.infra.stack.kafka import Kafka, java_command

logger = logging.getLogger("turnlog.tests.store_scan")

ClickhouseQuery = Callable[[str], str | bytes]
"""Runs one statement and returns its output as the statement's FORMAT clause made it."""


@dataclass(frozen=True)
class Finding:
    """`needle` occurs `count` times (overlaps included) in one place of one store.

    `store` is how it was seen: ``kafka`` (raw bytes of a file under log.dirs),
    ``kafka-dump`` (DumpLogSegments' output for one segment or snapshot),
    ``kafka-decompressed`` (compressed batches of one file, decompressed here, header
    values included), ``postgres`` (raw bytes of a file of the data directory),
    ``postgres-rows`` (COPY output of a table), ``clickhouse`` (TSVRaw output of a table),
    ``clickhouse-files`` (raw bytes of part files) or ``files``.
    """

    store: str
    location: str
    """A file's path, or ``schema.table`` / ``database.table``."""
    count: int
    needle: bytes


class StoreScanError(Exception):
    """A store could not be searched completely; a partial answer would be a false 0."""


def scan(
    needles: Iterable[bytes | str],
    *,
    kafka_log_dirs: Sequence[Path] = (),
    kafka_libs: Path | None = None,
    postgres_data_dir: Path | None = None,
    postgres_dsn: str | None = None,
    clickhouse_query: ClickhouseQuery | None = None,
    clickhouse_dirs: Sequence[Path] = (),
    files: Sequence[Path] = (),
) -> list[Finding]:
    """Every place a needle occurs in the stores given; empty when it occurs nowhere.

    Text needles are searched as UTF-8. `kafka_libs` is the broker's jar folder (default:
    the local stack's). Call `postgres_checkpoint` before, so that the data directory holds
    what the server has in memory (unlogged tables live nowhere else). `postgres_dsn` adds
    the COPY output of every table of its database. `clickhouse_query` reads every table
    of every non-system database; `clickhouse_dirs` are searched raw, but part files are
    compressed (LZ4 by default), so only the query proves an absence there.
    """
    wanted = sorted({n.encode() if isinstance(n, str) else bytes(n) for n in needles})
    if not wanted or not all(wanted):
        raise ValueError(f"needles must be non-empty: {wanted!r}")
    passes: list[tuple[str, Callable[[], list[Finding]]]] = []
    if kafka_log_dirs:
        libs = kafka_libs or Kafka(load_settings()).libs
        passes.append(("kafka", lambda: _scan_kafka(kafka_log_dirs, libs, wanted)))
    if (pg_dir := postgres_data_dir) is not None:
        passes.append(("postgres", lambda: _scan_raw("postgres", [pg_dir], wanted)))
    if (dsn := postgres_dsn) is not None:
        passes.append(("postgres-rows", lambda: _scan_postgres_rows(dsn, wanted)))
    if (query := clickhouse_query) is not None:
        passes.append(("clickhouse", lambda: _scan_clickhouse(query, wanted)))
    if clickhouse_dirs:
        passes.append(("clickhouse-files",
                       lambda: _scan_raw("clickhouse-files", clickhouse_dirs, wanted)))  # fmt: skip
    if files:
        passes.append(("files", lambda: _scan_raw("files", files, wanted)))
    findings: list[Finding] = []
    for name, run in passes:
        started = time.perf_counter()
        findings += run()
        logger.info("scanned %s in %.1f s", name, time.perf_counter() - started)
    return findings


def postgres_checkpoint(dsn: str) -> None:
    """Write every dirty page to the data files (CHECKPOINT). Needs a superuser or the
    pg_checkpoint role; the local stack's `turnlog` role has neither, its `postgres`
    superuser does: ``host=<socket dir> port=<port> user=postgres dbname=postgres``."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreScanError(f"CHECKPOINT refused ({exc}): connect as a superuser") from exc


# -- searching bytes ---------------------------------------------------------------------
_CHUNK = 16 << 20


def _occurrences(data: bytes | bytearray, needle: bytes, start: int = 0,
                 end: int | None = None) -> int:  # fmt: skip
    count, at = 0, data.find(needle, start, end)
    while at != -1:
        count += 1
        at = data.find(needle, at + 1, end)
    return count


def _count(data: bytes, needles: Sequence[bytes]) -> Counter[bytes]:
    return Counter({n: c for n in needles if (c := _occurrences(data, n))})


def _count_file(path: Path, needles: Sequence[bytes]) -> Counter[bytes]:
    """Occurrences in a file of any size, read in chunks that overlap by a needle's length
    (not mapped: a file truncated under a map kills the reader with SIGBUS)."""
    keep = max(map(len, needles)) - 1
    counts: Counter[bytes] = Counter()
    with path.open("rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(keep + min(size, _CHUNK))
        view = memoryview(buf)
        # A hole reads as zeros: only a needle with a zero byte can occur in one.
        holes_matter = any(0 in n for n in needles)
        for start, stop in [(0, size)] if holes_matter else _data_regions(f.fileno(), size):
            f.seek(start)
            kept, left = 0, stop - start
            while left > 0 and (read := f.readinto(view[kept : kept + min(left, _CHUNK)])):
                left -= read
                end = kept + read
                for n in needles:
                    # Only occurrences that end in the new bytes: the kept ones were counted.
                    counts[n] += _occurrences(buf, n, max(kept - len(n) + 1, 0), end)
                kept = min(keep, end)
                buf[:kept] = buf[end - kept : end]
        view.release()
    return +counts


def _data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The parts of a file that hold data, holes left out (a broker preallocates 10 MiB,
    sparse, for each index of every active segment)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from `pos` on
                return
            raise
        pos = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, pos


def _files_under(roots: Iterable[Path]) -> Iterator[Path]:
    """Regular files under `roots` (files themselves, or folders walked through links,
    e.g. PostgreSQL's pg_wal and pg_tblspc), each once."""
    seen: set[str] = set()
    for root in roots:
        if not root.exists():
            raise StoreScanError(f"{root} does not exist")
        candidates: Iterable[Path] = [root] if root.is_file() else (
            Path(d) / f for d, _, names in os.walk(root, followlinks=True, onerror=_raise)
            for f in sorted(names)
        )  # fmt: skip
        for path in candidates:
            real = os.path.realpath(path)
            if real not in seen and path.is_file():
                seen.add(real)
                yield path


def _raise(error: OSError) -> None:
    if not isinstance(error, FileNotFoundError):  # removed while we walked: holds nothing
        raise StoreScanError(f"cannot list {error.filename}: {error}") from error


def _scan_raw(store: str, roots: Iterable[Path], needles: Sequence[bytes]) -> list[Finding]:
    findings = []
    for path in _files_under(roots):
        try:
            counts = _count_file(path, needles)
        except FileNotFoundError:
            continue  # removed since listed (a temp file, a recycled WAL segment)
        except OSError as exc:
            raise StoreScanError(f"cannot read {path}: {exc}") from exc
        findings += _findings(store, str(path), counts)
    return findings


def _findings(store: str, location: str, counts: Counter[bytes]) -> list[Finding]:
    return [Finding(store, location, c, n) for n, c in sorted(counts.items()) if c]


# -- Kafka -------------------------------------------------------------------------------
# Segments, KRaft snapshots, and segments on their way out (deleted, compacted, swapped).
_RECORD_FILE = re.compile(r"(?P<name>.+\.(?:log|checkpoint))(?:\.(?:deleted|cleaned|swap|part))?")
_MAX_FILES_ARG = 100_000  # one argv string may not exceed 128 KiB on Linux
_CODECS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip.decompress,
    2: lambda b: _snappy(b),
    3: lambda b: bytes(cramjam.lz4.decompress(b)),
    4: lambda b: bytes(cramjam.zstd.decompress(b)),
}


def _scan_kafka(log_dirs: Sequence[Path], libs: Path, needles: Sequence[bytes]) -> list[Finding]:
    findings = _scan_raw("kafka", log_dirs, needles)
    record_files = [p for p in _files_under(log_dirs) if _RECORD_FILE.fullmatch(p.name)]
    for path in record_files:
        findings += _findings("kafka-decompressed", str(path), _decompressed_counts(path, needles))
    for path, output in dump_log_segments(record_files, libs=libs).items():
        findings += _findings("kafka-dump", str(path), _count(output, needles))
    return findings


def dump_log_segments(paths: Sequence[Path], *, libs: Path) -> dict[Path, bytes]:
    """DumpLogSegments' ``--print-data-log`` output for each segment or snapshot, many per
    JVM. Payloads are printed as UTF-8 text (bytes that are not UTF-8 become U+FFFD)."""
    main, tools_jar = _dump_tool(libs)
    out: dict[Path, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="store-scan-") as tmp:
        # The tool picks a file's kind by its suffix, so `x.log.deleted` goes in as `x.log`.
        as_named: dict[Path, Path] = {}
        for i, path in enumerate(paths):
            name = _RECORD_FILE.fullmatch(path.name)
            if name is not None and name["name"] != path.name:
                link = Path(tmp, "renamed", str(i), name["name"])
                link.parent.mkdir(parents=True)
                link.symlink_to(path.resolve())
                as_named[path] = link
            else:
                as_named[path] = path
        for batch in _batches(paths, as_named):
            out |= _dump_batch(batch, as_named, libs=libs, main=main, tools_jar=tools_jar,
                               logs=Path(tmp, "logs"))  # fmt: skip
    return out


def _dump_batch(batch: list[Path], as_named: dict[Path, Path], *, libs: Path, main: str,
                tools_jar: Path | None, logs: Path) -> dict[Path, bytes]:  # fmt: skip
    def run(files: list[Path]) -> subprocess.CompletedProcess[bytes]:
        argv = java_command(
            libs, logs, main, "--print-data-log",
            "--files", ",".join(str(as_named[p]) for p in files),
            jvm=("-Xmx512m", "-Dfile.encoding=UTF-8", "-Dstdout.encoding=UTF-8"),
        )  # fmt: skip
        if tools_jar is not None:  # not among the broker's jars: added to its classpath
            argv[argv.index("-cp") + 1] += f"{os.pathsep}{tools_jar}"
        logger.debug("running %s", argv)
        return subprocess.run(argv, capture_output=True, check=False, timeout=900)

    result = run(batch)
    for _ in range(5):  # Kafka deletes topics' folders in the background, even mid-run
        if result.returncode == 0 or all(p.exists() for p in batch):
            break
        batch = [p for p in batch if p.exists()]
        result = run(batch)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")[-2000:]
        raise StoreScanError(f"DumpLogSegments exited {result.returncode}: {stderr}")
    return _split_dump(result.stdout, [(p, as_named[p]) for p in batch])


def _batches(paths: Sequence[Path], as_named: dict[Path, Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in paths:
        length = len(str(as_named[path])) + 1
        if batch and size + length > _MAX_FILES_ARG:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def _split_dump(stdout: bytes, files: list[tuple[Path, Path]]) -> dict[Path, bytes]:
    """Each file's section of the output, without its own "Dumping <path>" line."""
    starts = []
    at = 0
    for path, named in files:
        header = f"Dumping {named}\n".encode()
        found = stdout.find(header, at)
        if found == -1 and not path.exists():
            continue  # removed before the tool got to it
        if found == -1:
            raise StoreScanError(f"DumpLogSegments printed nothing for {path}")
        at = found
        starts.append((path, at, at + len(header)))
    ends = [s[1] for s in starts[1:]] + [len(stdout)]
    return {path: stdout[body:end] for (path, _, body), end in zip(starts, ends, strict=True)}


def _dump_tool(libs: Path) -> tuple[str, Path | None]:
    """DumpLogSegments' main class, and the kafka-tools jar when the broker's jars lack it
    (Kafka 4.3 moved it from the core jar to kafka-tools, which the broker does not need).
    That jar is fetched once with Maven, as the launcher fetches the broker's."""
    cores = sorted(libs.glob("kafka_2.13-*.jar"))
    if not cores:
        raise StoreScanError(f"no Kafka jars in {libs}: start the stack once (it fetches them)")
    with zipfile.ZipFile(cores[-1]) as core:
        if "kafka/tools/DumpLogSegments.class" in core.namelist():
            return "kafka.tools.DumpLogSegments", None
    version = cores[-1].name.removeprefix("kafka_2.13-").removesuffix(".jar")
    main = "org.apache.kafka.tools.DumpLogSegments"
    if (libs / f"kafka-tools-{version}.jar").exists():
        return main, None  # on the classpath already
    jar = libs.parent / "tools" / f"kafka-tools-{version}.jar"
    if not jar.exists():
        _fetch_tools_jar(version, jar)
    return main, jar


def _fetch_tools_jar(version: str, jar: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StoreScanError(
            "Maven is not installed (it fetches kafka-tools, which holds "
            "DumpLogSegments): apt-get install -y maven"
        )
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent) as tmp:
        result = subprocess.run(
            [mvn, "-B", "-q", "dependency:copy",
             f"-Dartifact=org.apache.kafka:kafka-tools:{version}", f"-DoutputDirectory={tmp}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StoreScanError(
                f"Maven could not fetch kafka-tools {version}:\n"
                f"{(result.stdout + result.stderr)[-1500:]}"
            )
        os.replace(Path(tmp, jar.name), jar)  # whole or not at all, for concurrent scans


def _decompressed_counts(path: Path, needles: Sequence[bytes]) -> Counter[bytes]:
    """Occurrences in the records of the file's compressed batches (record format v2),
    keys, values and headers alike; uncompressed batches are left to the raw search."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Counter()  # a deleted topic's folder went away meanwhile
    counts: Counter[bytes] = Counter()
    pos = 0
    while pos + 61 <= len(data):
        size = 12 + int.from_bytes(data[pos + 8 : pos + 12], "big", signed=True)
        if size < 61 or pos + size > len(data):
            break
        if data[pos + 16] != 2:
            raise StoreScanError(
                f"{path} at byte {pos}: record format v{data[pos + 16]}, "
                "which this scanner does not decode"
            )
        codec = data[pos + 22] & 0x07
        if codec:
            if codec not in _CODECS:
                raise StoreScanError(f"{path} at byte {pos}: unknown compression {codec}")
            counts += _count(_CODECS[codec](data[pos + 61 : pos + size]), needles)
        pos += size
    if any(data[pos:]):
        raise StoreScanError(
            f"{path}: {len(data) - pos} bytes at byte {pos} are no whole "
            "record batch (still being written? scan again)"
        )
    return counts


def _snappy(payload: bytes) -> bytes:
    """Kafka's snappy: xerial's framing (a 16-byte header, then sized raw blocks)."""
    if not payload.startswith(b"\x82SNAPPY\x00"):
        return bytes(cramjam.snappy.decompress_raw(payload))
    out = bytearray()
    pos = 16
    while pos < len(payload):
        size = int.from_bytes(payload[pos : pos + 4], "big")
        out += bytes(cramjam.snappy.decompress_raw(payload[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return bytes(out)


# -- PostgreSQL rows and ClickHouse ------------------------------------------------------
def _scan_postgres_rows(dsn: str, needles: Sequence[bytes]) -> list[Finding]:
    findings = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_temp\\_%' "
            "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            copy = sql.SQL("COPY (SELECT * FROM {}.{}) TO STDOUT").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            with conn.cursor() as cur, cur.copy(copy) as rows:
                data = b"".join(bytes(chunk) for chunk in rows)
            findings += _findings("postgres-rows", f"{schema}.{table}", _count(data, needles))
    return findings


# No data of their own (a materialized view's inner or target table is listed itself), a
# SELECT would consume messages, or the data lives in another system.
_CLICKHOUSE_SKIPPED = frozenset({
    "View", "MaterializedView", "LiveView", "WindowView", "Dictionary", "Distributed",
    "Merge", "Null", "Kafka", "RabbitMQ", "NATS", "FileLog", "S3Queue", "AzureQueue",
    "URL", "S3", "AzureBlobStorage", "HDFS", "MySQL", "PostgreSQL", "MongoDB", "Redis",
    "ODBC", "JDBC",
})  # fmt: skip


def _scan_clickhouse(query: ClickhouseQuery, needles: Sequence[bytes]) -> list[Finding]:
    listing = _as_bytes(query(
        "SELECT database, name, engine FROM system.tables WHERE database NOT IN "
        "('system', 'INFORMATION_SCHEMA', 'information_schema') AND NOT is_temporary "
        "ORDER BY database, name FORMAT JSONEachRow"
    ))  # fmt: skip
    findings = []
    for line in listing.splitlines():
        table = json.loads(line)
        name = f"{_ident(table['database'])}.{_ident(table['name'])}"
        if table["engine"] in _CLICKHOUSE_SKIPPED:
            logger.debug("skipped %s (engine %s)", name, table["engine"])
            continue
        try:  # MATERIALIZED columns are stored, but `*` leaves them out unless asked
            rows = _as_bytes(
                query(
                    f"SELECT * FROM {name} SETTINGS "
                    "asterisk_include_materialized_columns = 1 FORMAT TSVRaw"
                )
            )
        except Exception as exc:
            raise StoreScanError(f"cannot read ClickHouse table {name}: {exc}") from exc
        findings += _findings("clickhouse", f"{table['database']}.{table['name']}",
                              _count(rows, needles))  # fmt: skip
    return findings


def _as_bytes(output: str | bytes) -> bytes:
    return output.encode() if isinstance(output, str) else output


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# -- command line ------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.store_scan", description=(
        "Search Turnlog's stores byte for byte (Kafka segments decoded) for each needle. "
        "CHECKPOINT PostgreSQL first. ClickHouse tables are read only by scan()'s "
        "clickhouse_query (chDB is owned by one process)."))  # fmt: skip
    parser.add_argument("--needle", action="append", required=True, help="text (UTF-8)")
    parser.add_argument(
        "--kafka-dir", action="append", type=Path, default=[], help="a broker's log.dirs folder"
    )
    parser.add_argument("--kafka-libs", type=Path, help="the broker's jars (default: the stack's)")
    parser.add_argument("--postgres-dir", type=Path, help="the cluster's data directory")
    parser.add_argument("--postgres-dsn", help="also COPY every table of this database")
    parser.add_argument(
        "--clickhouse-dir",
        action="append",
        type=Path,
        default=[],
        help="searched raw (part files are compressed: a weak check)",
    )
    parser.add_argument(
        "--files", action="append", type=Path, default=[], help="a file or folder searched raw"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    findings = scan(
        args.needle, kafka_log_dirs=args.kafka_dir, kafka_libs=args.kafka_libs,
        postgres_data_dir=args.postgres_dir, postgres_dsn=args.postgres_dsn,
        clickhouse_dirs=args.clickhouse_dir, files=args.files,
    )  # fmt: skip
    for f in findings:
        print(f"{f.needle.decode(errors='replace')}\t{f.store}\t{f.count}\t{f.location}")
    print(f"{len(findings)} finding(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
