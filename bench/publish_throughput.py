"""Produce throughput of one process to the local broker, and where the time goes.

    .venv/bin/python -m bench.publish_throughput [--events 200000] [--sessions 200]

~530-byte events of many sessions are published through `Publisher.publish()` as fast
as the sender keeps up (the bench only pauses when the queue is half full, so nothing
spills to disk), until Kafka acknowledged all of them (acks=all, idempotent). Once per
compression codec. Then:
- CPU per event of this process and of the broker (the broker runs on the same two
  cores, so its CPU is throughput this process does not get);
- the costs of the steps of the sender, measured alone on this machine;
- a cProfile of the sender thread during one run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from prometheus_client import CollectorRegistry

from bench.publish_support import (
    interleaved_events,
    mean_size,
    median,
    scratch_dir,
    scratch_topic,
)
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.agent_gateway.publisher.message import HEADERS, to_message
from turnlog.agent_gateway.publisher.sender import Sender
from turnlog.agent_gateway.publisher.settings import Compression
from turnlog.infra.stack.config import StackSettings, load_settings
from turnlog.schemas import CloudEvent

GOAL_EVENTS_PER_SECOND = 50_000
_CODECS = {"none": 0, "lz4": DefaultRecordBatch.CODEC_LZ4, "zstd": DefaultRecordBatch.CODEC_ZSTD,
           "gzip": DefaultRecordBatch.CODEC_GZIP}


@dataclass
class Result:
    compression: str
    events_per_second: float
    process_us: float
    broker_us: float
    spooled: int


def broker_cpu_seconds(settings: StackSettings) -> float:
    """utime + stime of the shared broker's JVM."""
    try:
        pid = int((settings.run_dir / "kafka.pid").read_text().strip())
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    except (OSError, ValueError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_once(events: list[CloudEvent[Any]], compression: Compression, *, topic: str,
                   settings: StackSettings) -> Result:
    with scratch_dir("publish-throughput") as spool:
        publisher = Publisher(
            PublisherSettings(bootstrap_servers=settings.kafka_bootstrap, topic=topic,
                              spool_dir=spool, compression=compression, queue_size=50_000),
            registry=CollectorRegistry(),
        )
        await publisher.start()
        await asyncio.sleep(1.0)
        began, cpu, broker = time.perf_counter(), time.process_time(), broker_cpu_seconds(settings)
        await feed(publisher, events)
        await until(lambda: publisher.stats().sent >= len(events))
        elapsed = time.perf_counter() - began
        cpu, broker = time.process_time() - cpu, broker_cpu_seconds(settings) - broker
        await publisher.aclose()
        stats = publisher.stats()
    n = len(events)
    return Result(compression, n / elapsed, cpu / n * 1e6, broker / n * 1e6, stats.spooled)


async def feed(publisher: Publisher, events: list[CloudEvent[Any]]) -> None:
    """Publish everything, pausing while the queue is half full (the bench's own
    back-pressure: it measures Kafka and the spool, not the overflow path)."""
    for start in range(0, len(events), 1000):
        for event in events[start:start + 1000]:
            publisher.publish(event)
        while True:
            if publisher.stats().queue_depth < 25_000:
                break
            await asyncio.sleep(0.001)


async def until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.001)


async def spool_then_drain(events: list[CloudEvent[Any]], *, topic: str,
                           settings: StackSettings) -> tuple[float, float]:
    """Events/s written to the spool with the broker unreachable, then drained from it
    by a new publisher (adoption, read, send in order, acknowledge, delete)."""
    n = len(events)
    with scratch_dir("publish-drain") as spool:
        down = Publisher(PublisherSettings(
            bootstrap_servers=f"127.0.0.1:{free_port()}", topic=topic, spool_dir=spool,
            queue_size=50_000, connect_timeout=0.5), registry=CollectorRegistry())
        await down.start()
        began = time.perf_counter()
        await feed(down, events)
        await until(lambda: down.stats().spooled >= n)
        spool_rate = n / (time.perf_counter() - began)
        await down.aclose(timeout=1.0)
        up = Publisher(PublisherSettings(bootstrap_servers=settings.kafka_bootstrap,
                                         topic=topic, spool_dir=spool),
                       registry=CollectorRegistry())
        began = time.perf_counter()
        await up.start()
        await until(lambda: up.stats().sent >= n)
        drain_rate = n / (time.perf_counter() - began)
        await up.aclose()
    return spool_rate, drain_rate


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def step_costs(events: list[CloudEvent[Any]], compression: str) -> dict[str, float]:
    """Microseconds per event of each step the sender takes, measured alone."""
    sample = events[:20_000]
    costs: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object], count: int) -> None:
        began = time.perf_counter()
        fn()
        costs[name] = (time.perf_counter() - began) / count * 1e6

    messages = [to_message(e, 0) for e in sample]
    timed("encode (schemas.encode + Message)", lambda: [to_message(e, 0) for e in sample],
          len(sample))
    partitions: dict[bytes, int] = {}
    timed("partition (cached murmur2)",
          lambda: [partitions.setdefault(m.key, len(m.key) % 12) for m in messages], len(sample))
    builders: list[BatchBuilder] = []

    def fill() -> None:
        builder = BatchBuilder(256 * 1024, _CODECS[compression])
        for message in messages:
            if builder.append(timestamp=None, key=message.key, value=message.value,
                              headers=HEADERS) is None:
                builders.append(builder)
                builder = BatchBuilder(256 * 1024, _CODECS[compression])
                builder.append(timestamp=None, key=message.key, value=message.value,
                               headers=HEADERS)
        builders.append(builder)

    timed("batch append (aiokafka C builder)", fill, len(sample))
    timed(f"batch build + {compression} compression",
          lambda: [b._build() for b in builders], len(sample))
    ratio = sum(len(m.value) for m in messages) / sum(len(b._build()) for b in builders)
    costs[f"compression ratio ({compression})"] = ratio
    return costs


def profile_sender(events: list[CloudEvent[Any]], compression: Compression, *, topic: str,
                   settings: StackSettings) -> str:
    """One run with cProfile on in the sender thread (it only sees its own thread)."""
    profiler = cProfile.Profile()
    original = Sender.run

    async def profiled(self: Sender, ready: Any) -> None:
        profiler.enable()
        try:
            await original(self, ready)
        finally:
            profiler.disable()

    Sender.run = profiled  # type: ignore[method-assign]
    try:
        asyncio.run(run_once(events, compression, topic=topic, settings=settings))
    finally:
        Sender.run = original  # type: ignore[method-assign]
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(22)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression", nargs="+", default=["zstd", "lz4", "none"],
                        choices=["zstd", "lz4", "gzip", "none"])
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the down-broker phase
    logging.getLogger("turnlog.gateway.publisher").setLevel(logging.ERROR)
    settings = load_settings()
    events = interleaved_events(args.sessions, args.events // args.sessions)
    print(f"{len(events)} events of {args.sessions} sessions, {mean_size(events):.0f} bytes "
          f"each, to {settings.kafka_bootstrap} (acks=all, idempotent); {os.cpu_count()} cores;"
          f" median of {args.repeats} runs, codecs interleaved")
    with scratch_topic(settings.kafka_bootstrap) as topic:
        report_throughput(events, args.compression, args.repeats, topic=topic,
                          settings=settings)
        rates = [asyncio.run(spool_then_drain(events, topic=topic, settings=settings))
                 for _ in range(args.repeats)]
        print(f"\nspool: written {median([r[0] for r in rates]):.0f} events/s (broker "
              f"unreachable), drained {median([r[1] for r in rates]):.0f} events/s by the "
              "next publisher")
        for codec in args.compression:
            print(f"\nsteps of the sender, alone, us/event ({codec}):")
            for name, value in step_costs(events, codec).items():
                print(f"  {name:<42} {value:8.2f}")
        codec = args.compression[0]
        if not args.no_profile:
            print(f"\ncProfile of the sender thread ({codec}), by own time:")
            print(profile_sender(events, codec, topic=topic, settings=settings))


def report_throughput(events: list[CloudEvent[Any]], codecs: list[Compression], repeats: int,
                      *, topic: str, settings: StackSettings) -> None:
    results: dict[Compression, list[Result]] = {codec: [] for codec in codecs}
    for _ in range(repeats):
        for codec in codecs:
            results[codec].append(asyncio.run(
                run_once(events, codec, topic=topic, settings=settings)))
    print("\ncompression   events/s (min-max)        process CPU us/event   broker CPU us/event")
    for codec, runs in results.items():
        rates = [r.events_per_second for r in runs]
        spooled = sum(r.spooled for r in runs)
        note = f"   (spooled {spooled})" if spooled else ""
        print(f"  {codec:<10} {median(rates):9.0f} ({min(rates):6.0f}-{max(rates):6.0f})"
              f"   {median([r.process_us for r in runs]):14.1f}"
              f"   {median([r.broker_us for r in runs]):18.1f}{note}")
    print(f"  goal: {GOAL_EVENTS_PER_SECOND} events/s")


if __name__ == "__main__":
    main()
