"""The demo: a key for our API, a token from it, a voice call, the transcript read back.

`run_demo` is what `turnlog up` ends with and what the end-to-end test runs: it asks our
API for a LiveKit token (the token dispatches the tutor agent into the room), holds a
call of a few spoken questions through the LiveKit server, then waits until the streams
worker has projected the closed session into PostgreSQL and reads its transcript through
the API.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from turnlog.infra.demo.call import CallResult, hold_call, speak_questions
from turnlog.infra.demo.client import ApiClient
from turnlog.infra.stack.config import StackSettings

DEMO_QUESTIONS: Final = (
    "what is the capital of france",
    "can you give me an example of photosynthesis",
    "please check my understanding of fractions",
)
"""Questions the offline tutor has answers for, and the offline recognizer hears well."""
DEMO_SCOPES: Final = ("tokens", "read")
READ_BACK_TIMEOUT: Final = 90.0
"""Seconds the read models may take to show the closed session (the streams worker's
batching is 0.2 s; the rest is the agent closing its session after the client left)."""


@dataclass(frozen=True)
class DemoOutcome:
    room: str
    session: dict[str, Any]
    transcript: list[dict[str, Any]]
    call: CallResult
    seconds: float
    """From asking for the token to the transcript read back."""

    @property
    def server_latencies(self) -> list[float]:
        """End-to-end latency of each answer as the agent measured it (seconds)."""
        return [
            float(t["e2e_latency_s"]) for t in self.transcript
            if t.get("role") == "assistant" and t.get("e2e_latency_s") is not None
        ]  # fmt: skip


def demo_key(settings: StackSettings, *, schema: str = "public", path: Path | None = None) -> str:
    """The demo's API key: the one kept in the state folder while the API accepts it,
    else a new one with the scopes `tokens` and `read` (kept, mode 0600)."""
    path = path or settings.run_dir / "demo-api-key"
    if path.exists():
        key = path.read_text().strip()
        if key and ApiClient(settings.api_url, key).accepts():
            return key
    from turnlog.api.keys import create_key

    key = create_key(settings.postgres_dsn, name="turnlog-demo", scopes=DEMO_SCOPES,
                     schema=schema)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def new_room() -> str:
    return f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def run_demo(
    settings: StackSettings,
    *,
    key: str,
    questions: Sequence[str] = DEMO_QUESTIONS,
    room: str | None = None,
    read_back_timeout: float = READ_BACK_TIMEOUT,
) -> DemoOutcome:
    """Hold the demo call through our API and the LiveKit server; read the transcript."""
    started = time.monotonic()
    client = ApiClient(settings.api_url, key)
    room = room or new_room()
    issued = client.token(room=room, identity=f"student-{uuid.uuid4().hex[:6]}",
                          name="Demo student")  # fmt: skip

    async def call() -> CallResult:
        speech = await speak_questions(questions)
        return await hold_call(
            livekit_url=issued.livekit_url, token=issued.token, room_name=room, questions=speech
        )

    result = asyncio.run(call())
    session = client.closed_session(room, user_turns=len(questions), timeout=read_back_timeout)
    transcript = client.transcript(session["session_id"])
    return DemoOutcome(room, session, transcript, result, time.monotonic() - started)


def describe(outcome: DemoOutcome, settings: StackSettings) -> list[str]:
    """The transcript, the turn latencies, and where to look next, as printable lines."""
    s = settings
    lines = [f"Transcript of room {outcome.room} (session {outcome.session['session_id']}), "
             "read back from the API:"]  # fmt: skip
    for turn in outcome.transcript:
        who = "student" if turn.get("role") == "user" else "tutor  "
        lines.append(f"  {who}  {turn.get('text', '')}")
    heard = outcome.call.latencies
    lines.append("Turn latencies (end of the question to the answer):")
    for number, t in enumerate(outcome.call.turns, start=1):
        at = "no answer heard" if t.heard_after is None else f"{t.heard_after:.2f} s heard"
        lines.append(f"  turn {number}: {at}")
    if heard:
        lines.append(f"  median {statistics.median(heard):.2f} s as the client heard it")
    server = outcome.server_latencies
    if server:
        lines.append(f"  median {statistics.median(server):.2f} s as the agent measured it "
                     "(end of speech to first audio sent)")  # fmt: skip
    lines += [
        "Where to look next:",
        f"  API docs         {s.api_url}/docs",
        f"  metrics          {s.api_url}/metrics  http://{s.host}:{s.gateway_metrics_port}/metrics",
        f"  streams metrics  http://{s.host}:{s.streams_metrics_port}/metrics (postgres)  "
        f"http://{s.host}:{s.streams_clickhouse_metrics_port}/metrics (clickhouse)  "
        f"http://{s.host}:{s.streams_derived_metrics_port}/metrics (derived)",
        f"  logs             {s.logs_dir}/",
        f"  analysts' query  .venv/bin/python -m turnlog.projections.clickhouse query --url "
        f"{s.analytics_url} --database {s.clickhouse_database} "
        "\"SELECT type, count() FROM events GROUP BY type\"",
        "  another call     .venv/bin/turnlog demo      stop everything: make down",
    ]
    return lines
