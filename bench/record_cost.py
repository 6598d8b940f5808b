"""The whole cost of recording, per event, and what the voice loop feels of it.

    .venv/bin/python -m bench.record_cost [--events 4000] [--repeats 5]

Measured path, per event: `SessionRecorder.record(payload)` (sequence, envelope, hand-off
to the publisher) and everything the publisher's thread then does (encode, batch,
compress, aiokafka produce, acknowledgement) until Kafka acknowledged every event. Not
included: LiveKit's own work and the mapping of a LiveKit event object to our payload
(the payloads are built beforehand, as the hooks build them).

Against, in the same run on the same events and broker:
- `plain loop`: the strongest simple alternative, a plain aiokafka client loop on the voice
  loop itself: `new_event` + `encode` + `producer.send` per event, one flush at the end;
- `idle`: the same voice loop with no recording, for the ticker.

Reported: process CPU per event (`time.process_time`, all threads, from the first event
to the last acknowledgement, median over repeats) for recording and the plain loop, their
ratio; and the lateness of a 5 ms ticker on the voice loop (p50, p99, median over
repeats) while each runs the `voice` pattern (1 to 6 events, then a 1 ms pause) and the
`burst` pattern (500 back to back), with the ratio to idle.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bench.publish_loop import Run, drive
from bench.publish_support import (
    interleaved_events,
    median,
    percentile,
    run_arguments,
    scratch_dir,
    scratch_topic,
)
from turnlog.agent_gateway.hooks import RecorderIdentity, SessionRecorder
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.infra.stack.config import load_settings
from turnlog.schemas import CloudEvent, encode, new_event

Hook = Callable[[CloudEvent[Any]], Awaitable[tuple[int, int]]]
SEED = 20261203



def timed_record(recorders: dict[str, Any]) -> Any:
    """The hook `drive` times: one `SessionRecorder.record`, its wall time on the loop."""

    async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
        began = time.perf_counter_ns()
        recorders[event.sessionid].record(event.data)
        spent = time.perf_counter_ns() - began
        return spent, spent

    return hook

async def recording(events: list[CloudEvent[Any]], pattern: str, bootstrap: str,
                    topic: str, seed: int) -> tuple[Run, float]:  # fmt: skip
    """One repeat through the recorder and publisher: (ticker run, CPU µs per event)."""
    with scratch_dir("record-cost") as spool:
        publisher = Publisher(
            PublisherSettings(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool),
            registry=CollectorRegistry(),
        )
        await publisher.start()
        await asyncio.sleep(1.0)  # connected, metadata known: not part of the cost
        recorders: dict[str, SessionRecorder] = {}
        for event in events:
            if event.sessionid not in recorders:
                recorders[event.sessionid] = SessionRecorder(
                    sink=publisher, session_id=event.sessionid,
                    identity=RecorderIdentity(agent_name="bench", worker_id="AW_bench",
                                              room_name=f"room-{event.sessionid[-6:]}"),
                )  # fmt: skip

        hook = timed_record(recorders)
        cpu = time.process_time()
        run = await drive(events, pattern, hook, seed=seed)
        while publisher.stats().sent < len(events):  # noqa: ASYNC110 - counters of another thread
            await asyncio.sleep(0.001)
        cpu = time.process_time() - cpu
        await publisher.aclose()
    return run, cpu / len(events) * 1e6


async def plain_loop(events: list[CloudEvent[Any]], pattern: str, bootstrap: str,
                     topic: str, seed: int) -> tuple[Run, float]:  # fmt: skip
    """The same events through a plain aiokafka producer on the voice loop."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, compression_type="zstd",
                                linger_ms=5)  # fmt: skip
    await producer.start()
    await producer.partitions_for(topic)
    sequences: dict[str, int] = {}

    async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
        began = time.perf_counter_ns()
        sequence = sequences[event.sessionid] = sequences.get(event.sessionid, 0) + 1
        wrapped = new_event(event.data, session_id=event.sessionid, sequence=sequence,
                            source=event.source, subject=event.subject)  # fmt: skip
        await producer.send(topic, encode(wrapped), key=event.sessionid.encode())
        spent = time.perf_counter_ns() - began
        return spent, spent

    try:
        cpu = time.process_time()
        run = await drive(events, pattern, hook, seed=seed)
        await producer.flush()
        cpu = time.process_time() - cpu
    finally:
        await producer.stop()
    return run, cpu / len(events) * 1e6


async def idle(events: list[CloudEvent[Any]], pattern: str, seed: int) -> tuple[Run, float]:
    """The pattern with no recording: the loop's own CPU per event (pauses, ticker)."""
    async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
        return 0, 0

    cpu = time.process_time()
    run = await drive(events, pattern, hook, seed=seed)
    return run, (time.process_time() - cpu) / len(events) * 1e6


def late(runs: list[Run], q: float) -> float:
    """Median over repeats of the q-quantile of the ticker's lateness, µs."""
    return median([percentile(run.lateness_ns, q) for run in runs]) / 1000


def main() -> None:
    args = run_arguments(__doc__.splitlines()[0])
    random.seed(SEED)
    print(f"seed {SEED}")
    settings = load_settings()
    events = interleaved_events(args.sessions, args.events // args.sessions)
    print(f"{len(events)} events of {args.sessions} sessions; {args.repeats} repeats; "
          f"GIL switch interval {sys.getswitchinterval() * 1000:.2f} ms")
    with scratch_topic(settings.kafka_bootstrap) as topic:
        for pattern in ("voice", "burst"):
            rec: list[tuple[Run, float]] = []
            plain: list[tuple[Run, float]] = []
            quiet: list[tuple[Run, float]] = []
            for repeat in range(args.repeats):  # interleaved, so drift hits all three
                seed = SEED + repeat
                quiet.append(asyncio.run(idle(events, pattern, seed)))
                rec.append(asyncio.run(recording(events, pattern, settings.kafka_bootstrap,
                                                 topic, seed)))  # fmt: skip
                plain.append(asyncio.run(plain_loop(events, pattern, settings.kafka_bootstrap,
                                                    topic, seed)))  # fmt: skip
            idle_cpu = median([cpu for _, cpu in quiet])
            rec_cpu = median([cpu for _, cpu in rec]) - idle_cpu
            plain_cpu = median([cpu for _, cpu in plain]) - idle_cpu
            rec_runs, plain_runs = [r for r, _ in rec], [r for r, _ in plain]
            quiet_runs = [r for r, _ in quiet]
            print(f"\npattern {pattern}")
            print(f"  process CPU per event, beyond the idle loop's {idle_cpu:.1f} us: "
                  f"recording {rec_cpu:6.1f} us, plain loop {plain_cpu:6.1f} us "
                  f"(ratio {rec_cpu / plain_cpu:.2f})")
            hook = {name: (median([percentile(r.loop_ns, .5) for r in runs]) / 1000,
                           median([percentile(r.loop_ns, .99) for r in runs]) / 1000)
                    for name, runs in (("recording", rec_runs), ("plain", plain_runs))}
            print(f"  hook time on the voice loop p50/p99: recording "
                  f"{hook['recording'][0]:.1f}/{hook['recording'][1]:.1f} us, plain loop "
                  f"{hook['plain'][0]:.1f}/{hook['plain'][1]:.1f} us")
            print("  5 ms ticker lateness, p50 / p99 us (ratio of p99 to idle):")
            base99 = late(quiet_runs, .99)
            for name, runs in (("idle", quiet_runs), ("recording", rec_runs),
                               ("plain loop", plain_runs)):  # fmt: skip
                print(f"    {name:<11} {late(runs, .5):8.1f} / {late(runs, .99):8.1f}"
                      f"   ({late(runs, .99) / base99:.2f}x)")


if __name__ == "__main__":
    main()
