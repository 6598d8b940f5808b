"""CPU per event of `schemas.decode`, in 10,000-event batches of realistic sessions.

Compares, in one run: the step-by-step decode (`codec._slow_decode`, what `decode` was),
today's `decode` (one pydantic-core pass over the bytes, the slow path as fallback), and a
plain baseline (`pydantic_core.from_json`, then `CloudEvent.model_validate` of the dict
with the payload model picked by hand). Each is timed over the whole batch, keeping every
decoded event alive until the batch is done (as a projector does), median of 5 repeats;
once with the interpreter's default garbage collector settings, once after `gc.freeze()`
with a higher generation-0 threshold (`--threshold`).

The batch: the recorded fixture sessions (tests/fixtures/sessions), copied under fresh
session ids and interleaved round-robin, the way one partition carries many concurrent
sessions.

    .venv/bin/python -m bench.decode_cpu [--events 10000] [--repeats 5] [--threshold 50000]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydantic_core

from turnlog.schemas import CATALOG, CloudEvent, codec, decode

SESSIONS_DIR = Path(__file__).parents[1] / "tests" / "fixtures" / "sessions"


def session_bodies(events: int, *, tag: str = "") -> list[bytes]:
    """`events` encoded events: the fixture sessions again and again under new session
    ids (`tag` in each, for distinct batches), interleaved round-robin."""
    recorded = [
        [json.loads(line) for line in path.read_text().splitlines() if line]
        for path in sorted(SESSIONS_DIR.glob("*.jsonl"))
    ]
    sessions: list[list[bytes]] = []
    total = copy = 0
    while total < events:
        for raws in recorded:
            session_id = f"{raws[0]['sessionid']}{tag}_{copy}"
            sessions.append([
                json.dumps(raw | {"sessionid": session_id, "partitionkey": session_id},
                           separators=(",", ":"), ensure_ascii=False).encode()
                for raw in raws
            ])  # fmt: skip
            total += len(raws)
        copy += 1
    bodies: list[bytes] = []
    position = 0
    while len(bodies) < events:
        for session in sessions:
            if position < len(session) and len(bodies) < events:
                bodies.append(session[position])
        position += 1
    return bodies


def plain_baseline(body: bytes) -> CloudEvent[Any]:
    """Parse, then validate the envelope and its payload from the dict: no typed errors,
    no upcasting."""
    raw = pydantic_core.from_json(body)
    raw["data"] = CATALOG.types[raw["type"]].model_validate(raw["data"], extra="ignore")
    return CloudEvent.model_validate(raw, extra="ignore")


def time_batch(decoder: Callable[[bytes], object], bodies: Sequence[bytes]) -> float:
    """CPU seconds to decode the whole batch, every result kept alive until the end."""
    start = time.process_time()
    kept = [decoder(body) for body in bodies]
    elapsed = time.process_time() - start
    del kept
    return elapsed


def measure(
    decoders: dict[str, Callable[[bytes], object]], bodies: Sequence[bytes], repeats: int
) -> dict[str, float]:
    """Median µs per event of each decoder, interleaved repeat by repeat."""
    samples: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(repeats):
        for name, decoder in decoders.items():
            samples[name].append(time_batch(decoder, bodies) / len(bodies) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=int, default=50_000,
                        help="generation-0 threshold of the tuned run")  # fmt: skip
    args = parser.parse_args()

    bodies = session_bodies(args.events)
    for body in bodies:  # every path decodes the batch to the same events
        if decode(body) != codec._slow_decode(body, CATALOG) or decode(body) != plain_baseline(
            body
        ):
            raise SystemExit(f"the decoders disagree on {body[:120]!r}")
    decoders: dict[str, Callable[[bytes], object]] = {
        "step by step (before)": lambda body: codec._slow_decode(body, CATALOG),
        "decode (one pass)": decode,
        "from_json + model_validate": plain_baseline,
    }
    default_gc = measure(decoders, bodies, args.repeats)
    gc.collect()
    gc.freeze()
    gc.set_threshold(args.threshold, 20, 20)
    tuned_gc = measure(decoders, bodies, args.repeats)

    print(f"{len(bodies)} events, {len({json.loads(b)['sessionid'] for b in bodies})} sessions,"
          f" median of {args.repeats}, CPU µs per event")  # fmt: skip
    print(f"| decoder | default gc | gc.freeze() + threshold {args.threshold} |")
    print("|---|---:|---:|")
    for name in decoders:
        print(f"| {name} | {default_gc[name]:.2f} | {tuned_gc[name]:.2f} |")


if __name__ == "__main__":
    main()
