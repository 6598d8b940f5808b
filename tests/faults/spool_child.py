"""A worker process for the kill -9 fault test: `spool` publishes a session while the
broker is down and waits, with its events in the spool, to be killed; `drain` starts a
publisher on the same spool folder and reports once the adopted events are sent.

Run as `python -m tests.faults.spool_child spool|drain ...`; it prints one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.agent_gateway.publisher.testing import session_events


async def spool(args: argparse.Namespace) -> None:
    publisher = Publisher(_settings(args), registry=CollectorRegistry())
    await publisher.start()
    for event in session_events(args.session, args.count):
        publisher.publish(event)
    await _until(lambda: publisher.stats().spooled >= args.count, within=30)
    _report(publisher)
    await asyncio.sleep(3600)  # the parent kills us here


async def drain(args: argparse.Namespace) -> None:
    publisher = Publisher(_settings(args), registry=CollectorRegistry())
    await publisher.start()
    await _until(lambda: publisher.stats().sent >= args.count, within=45)
    await publisher.aclose(timeout=5)
    _report(publisher)


async def _until(condition: Callable[[], bool], *, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return  # the parent sees the counts in the report
        await asyncio.sleep(0.01)


def _settings(args: argparse.Namespace) -> PublisherSettings:
    return PublisherSettings(
        bootstrap_servers=args.bootstrap, topic=args.topic, spool_dir=Path(args.spool),
        connect_timeout=2.0, reconnect_backoff_max=0.5,
    )


def _report(publisher: Publisher) -> None:
    print(json.dumps(asdict(publisher.stats())), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["spool", "drain"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--session", default="sess-killed")
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(spool(args) if args.mode == "spool" else drain(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
