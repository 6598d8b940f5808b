"""What the sealing stage costs the voice loop: the recorder with `SealingSink` in front of
the publisher against the recorder on the publisher directly, in the same run.

    .venv/bin/python -m bench.seal_cost [--events 4000] [--repeats 5] [--sessions 8]
        [--mix voice|record_cost] [--patterns voice burst] [--micro-only]

Measured path, per event (as `bench.record_cost`): `SessionRecorder.record(payload)` and
everything the publishers' threads then do until Kafka acknowledged every event and key
(scratch topics). Modes, interleaved in every repeat so drift hits all alike:
- `idle`: the loop and the 5 ms ticker, no recording (CPU baseline, ticker baseline);
- `plain`: recorder -> `Publisher` (no sealing; the baseline);
- `sealed`: recorder -> `SealingSink` -> `Publisher`, keys through a second `Publisher`
  (per session a data key, its RSA-OAEP wrap and `DataKeyIssued`; per event `seal_event`);
- `redacted`: as `sealed`, with the built-in `Redactor()` first (TURNLOG_REDACT=on).
Not included: LiveKit's work and mapping its event objects to payloads (payloads are
built beforehand), KEK generation, Presidio. Reported: process CPU per event beyond idle
(`time.process_time`, all threads, median over repeats), hook time on the loop (p50,
p99) and the ticker's lateness (p50, p99; median over repeats), with ratios to `plain`.
Mix `voice` is `bench.streams_mix` (transcripts, messages, metrics, state changes, tools;
its words hold no digit or `@`, so redaction only scans); `record_cost` is that
benchmark's (five transcripts per conversation item). The micro-benchmark times
`seal_event` alone against `encode` on one transcript and one metrics event, in a tight
loop: hot caches. On the voice loop, which sleeps between bursts, the same calls run cold
and cost about twice to three times as much; the loop numbers are the ones that count.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from bench.publish_loop import Run, drive
from bench.publish_support import interleaved_events, median, percentile, scratch_dir
from bench.record_cost import timed_record
from bench.streams_load import delete_topics
from bench.streams_measure import interleaved
from bench.streams_mix import Session
from turnlog.agent_gateway.hooks import RecorderIdentity, SessionRecorder
from turnlog.agent_gateway.hooks.sink import EventSink
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.agent_gateway.redaction import Redactor
from turnlog.agent_gateway.sealing import SealingSink
from turnlog.infra.stack.config import load_settings
from turnlog.infra.stack.topics import ensure_topics
from turnlog.schemas import (
    EVENTS_TOPIC,
    KEYS_TOPIC,
    CloudEvent,
    MetricsCollected,
    SttMetrics,
    UserTranscribed,
    agent_source,
    encode,
    topic_specs,
    trusted_event,
)
from turnlog.schemas.sealing import DataKey, WrappingKey, generate_kek, seal_event

SEED = 20261203
MODES = ("idle", "plain", "sealed", "redacted")


def voice_mix(sessions: int, count: int, seed: int) -> list[CloudEvent[Any]]:
    """`count` events of `sessions` concurrent `streams_mix` sessions, in time order."""
    rng = random.Random(seed)
    start = datetime.now(UTC)
    turns = max(1, round((count / sessions - 7) / 22)) + 1  # a little over: cut at count
    streams = [(Session(f"seal-{seed}-{n:03d}", rng), start + timedelta(seconds=rng.uniform(0, 5)))
               for n in range(sessions)]  # fmt: skip
    out: list[CloudEvent[Any]] = []
    for session, at, payload in interleaved(streams, turns):
        out.append(session.event(payload, at))
        if len(out) == count:
            break
    return out


async def recording(events: list[CloudEvent[Any]], *, mode: str, pattern: str, bootstrap: str,
                    prefix: str, kek: WrappingKey, seed: int) -> tuple[Run, float]:  # fmt: skip
    """One repeat of `mode` (not idle): (ticker run, CPU µs per event)."""
    with scratch_dir("seal-cost") as spool:
        def publisher(topic: str, folder: Any) -> Publisher:
            settings = PublisherSettings(bootstrap_servers=bootstrap, topic=prefix + topic,
                                         spool_dir=folder)  # fmt: skip
            return Publisher(settings, registry=CollectorRegistry())

        events_out = publisher(EVENTS_TOPIC, spool)
        publishers = [events_out]
        sink: EventSink = events_out
        if mode != "plain":
            keys_out = publisher(KEYS_TOPIC, spool / "keys")
            publishers.append(keys_out)
            sink = SealingSink(events=events_out, keys=keys_out, wrapping=kek,
                               redactor=Redactor() if mode == "redacted" else None)  # fmt: skip
        await asyncio.gather(*(p.start() for p in publishers))
        await asyncio.sleep(1.0)  # connected, metadata known: not part of the cost
        recorders = {
            sid: SessionRecorder(sink=sink, session_id=sid, identity=RecorderIdentity(
                agent_name="bench", worker_id="AW_bench", room_name=f"room-{sid[-6:]}"))
            for sid in dict.fromkeys(e.sessionid for e in events)
        }  # fmt: skip

        hook = timed_record(recorders)
        cpu = time.process_time()
        run = await drive(events, pattern, hook, seed=seed)
        while any(p.stats().sent < p.stats().enqueued for p in publishers):  # noqa: ASYNC110 - counters of another thread
            await asyncio.sleep(0.001)
        cpu = time.process_time() - cpu
        for p in publishers:
            await p.aclose()
            if p.stats().spooled or p.stats().dropped:
                print(f"  note: {mode}: spooled {p.stats().spooled}, dropped {p.stats().dropped}")
    return run, cpu / len(events) * 1e6


async def idle(events: list[CloudEvent[Any]], *, pattern: str, seed: int) -> tuple[Run, float]:
    async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
        return 0, 0

    cpu = time.process_time()
    run = await drive(events, pattern, hook, seed=seed)
    return run, (time.process_time() - cpu) / len(events) * 1e6


def loop_table(pattern: str, results: dict[str, list[tuple[Run, float]]]) -> None:
    def q(mode: str, field: str, at: float) -> float:
        return median([percentile(getattr(r, field), at) for r, _ in results[mode]]) / 1000

    def cell(mode: str, value: float, base: float) -> str:
        ratio = f"({value / base:.2f}x)" if mode not in ("idle", "plain") and base > 0 else ""
        return f"{value:7.1f} {ratio:>7}"

    idle_cpu = median([cpu for _, cpu in results["idle"]])
    cpu = {m: median([c for _, c in results[m]]) - idle_cpu for m in MODES}
    print(f"\npattern {pattern}: CPU beyond the idle loop's {idle_cpu:.1f} us/event; "
          "hook and ticker lateness in us (ratio to plain)")  # fmt: skip
    print(f"  {'mode':<9} {'CPU/event':>15} {'hook p50':>15} {'hook p99':>15} "
          f"{'ticker p50':>10} {'ticker p99':>15}")
    for m in MODES:
        cells = ["-"] * 3
        if m != "idle":
            cells = [cell(m, cpu[m], cpu["plain"]),
                     cell(m, q(m, "loop_ns", .5), q("plain", "loop_ns", .5)),
                     cell(m, q(m, "loop_ns", .99), q("plain", "loop_ns", .99))]  # fmt: skip
        late99 = cell(m, q(m, "lateness_ns", .99), q("plain", "lateness_ns", .99))
        print(f"  {m:<9} " + " ".join(f"{c:>15}" for c in cells)
              + f" {q(m, 'lateness_ns', .5):10.1f} {late99:>15}")  # fmt: skip


def micro(repeats: int, calls: int = 20_000) -> None:
    """µs per call of encode, seal_event, both, and redaction, medians over `repeats`;
    ratios to the same event's `encode`."""
    key = DataKey.generate("micro-session")
    redactor = Redactor()

    def event(payload: Any) -> CloudEvent[Any]:
        return trusted_event(payload, session_id="micro-session", sequence=7,
                             source=agent_source("bench", "AW_bench"), subject="room")  # fmt: skip

    said = "can you tell me about my order from last month please"
    transcript = event(UserTranscribed(turn_id="t3", transcript=said, is_final=True,
                                       language="en", confidence=0.93))  # fmt: skip
    digits = event(UserTranscribed(turn_id="t3", is_final=True, transcript=(
        "my card is 4111 1111 1111 1111 and call me on 555-123-4567 or a@b.example")))  # fmt: skip
    metrics = event(MetricsCollected(turn_id="t3", metrics=SttMetrics(
        timestamp=datetime.now(UTC), label="stt", request_id="r1", duration=0.0,
        audio_duration=2.1, streamed=True)))  # fmt: skip
    cases: dict[str, Callable[[], object]] = {
        "transcript: encode": lambda: encode(transcript),
        "transcript: seal_event": lambda: seal_event(transcript, key),
        "transcript: seal_event + encode": lambda: encode(seal_event(transcript, key)),
        "transcript: redact (no digit) + seal": lambda: (redactor.redact(said),
                                                          seal_event(transcript, key)),
        "card+phone+email: redact + seal": lambda: (redactor.redact(digits.data.transcript),
                                                    seal_event(digits, key)),
        "metrics (no personal): encode": lambda: encode(metrics),
        "metrics (no personal): seal_event": lambda: seal_event(metrics, key),
        "metrics: seal_event(redactions=0)": lambda: seal_event(metrics, key, redactions=0),
    }  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, call in cases.items():  # interleaved: each repeat times every case
            began = time.perf_counter()
            for _ in range(calls):
                call()
            samples[name].append((time.perf_counter() - began) / calls * 1e6)
    bases = {"transcript": median(samples["transcript: encode"]),
             "metrics": median(samples["metrics (no personal): encode"])}  # fmt: skip
    print(f"\nmicro-benchmark, us per call, median of {repeats} x {calls:,} calls; "
          f"sizes: transcript {len(encode(transcript))} -> "
          f"{len(encode(seal_event(transcript, key)))} bytes sealed")
    for name, values in samples.items():
        kind = "metrics" if name.startswith("metrics") else "transcript"
        print(f"  {name:<38} {median(values):7.2f}   ({median(values) / bases[kind]:.2f}x "
              f"{kind} encode)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--mix", choices=("voice", "record_cost"), default="voice")
    parser.add_argument("--patterns", nargs="+", choices=("voice", "burst"),
                        default=["voice", "burst"])  # fmt: skip
    parser.add_argument("--micro-only", action="store_true")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    random.seed(args.seed)
    print(f"seed {args.seed}; GIL switch interval {sys.getswitchinterval() * 1000:.2f} ms")
    micro(args.repeats)
    if args.micro_only:
        return
    settings = load_settings()
    events = (voice_mix(args.sessions, args.events, args.seed) if args.mix == "voice"
              else interleaved_events(args.sessions, args.events // args.sessions))  # fmt: skip
    kek = WrappingKey.from_pem(generate_kek()[1])
    print(f"\n{len(events)} events ({args.mix} mix) of {args.sessions} sessions; "
          f"{args.repeats} repeats")
    prefix = f"bench-seal-{random.Random().getrandbits(32):08x}."
    specs = [s for s in topic_specs(prefix) if s.name in (prefix + EVENTS_TOPIC,
                                                          prefix + KEYS_TOPIC)]  # fmt: skip
    asyncio.run(ensure_topics(settings.kafka_bootstrap, specs))
    try:
        for pattern in args.patterns:
            results: dict[str, list[tuple[Run, float]]] = {m: [] for m in MODES}
            for repeat in range(args.repeats):
                seed = args.seed + repeat
                order = MODES[repeat % 4:] + MODES[:repeat % 4]  # who goes first rotates
                for mode in order:
                    results[mode].append(asyncio.run(
                        idle(events, pattern=pattern, seed=seed) if mode == "idle" else
                        recording(events, mode=mode, pattern=pattern, prefix=prefix, kek=kek,
                                  bootstrap=settings.kafka_bootstrap, seed=seed)))  # fmt: skip
            loop_table(pattern, results)
    finally:
        asyncio.run(delete_topics(settings.kafka_bootstrap, [s.name for s in specs]))



if __name__ == "__main__":
    main()
