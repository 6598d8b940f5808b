"""API benchmark: token issuance and transcript reads against a bare FastAPI baseline.

    .venv/bin/python -m bench.api_bench [--duration 8] [--rounds 3] [--connections 8 2]

Each server is one uvicorn worker (uvloop, httptools, no access log) in its own process;
the load comes from `wrk` (Debian's package: `apt-get install -y wrk`), a second process
on loopback with one thread and N keep-alive connections, closed loop: with 8 the
servers are saturated (throughput; latency is then mostly queueing), with 2 they are
not (latency). Rounds interleave the targets, so all see the same machine; each table
gives medians over rounds, and ratios to the baseline measured in the same run:

- baseline: `GET /constant` of a bare FastAPI app (`bench.api_apps:baseline`);
- tokens: `POST /v1/tokens` of the real API (API key auth, rate limits, validation,
  signing, the issuance record written to PostgreSQL, metrics), distinct identities;
- transcript: `GET /v1/sessions/{id}/transcript` of the real API, random sessions among
  100,000 with 1,000,000 messages in PostgreSQL (`bench.api_data`);
- pool-sync / pool-async: the same transcript read in a minimal app, through psycopg's
  ConnectionPool in threads (the API's way) and through AsyncConnectionPool.

Needs the local stack's PostgreSQL (`turnlog stack up`). The data lives in the schema
`bench_api` (made once, about a minute).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.api_data import SESSIONS, ensure_dataset
from turnlog.api.keys import create_key

REPO: Final = Path(__file__).resolve().parents[1]
PYTHON: Final = sys.executable
DSN: Final = os.environ.get(
    "TURNLOG_POSTGRES_DSN", "postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"
)
SCHEMA: Final = "bench_api"
LIVEKIT_SECRET: Final = "bench-secret-0123456789abcdef0123456789"
UVICORN_FLAGS: Final = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--host",
    "127.0.0.1",
]

TOKEN_LUA: Final = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{{"room":"bench-room-%d","identity":"user-%d"}}', n % 997, n)
  return wrk.format(nil, nil, nil, body)
end
"""

TRANSCRIPT_LUA: Final = """
wrk.headers["Authorization"] = "Bearer {key}"
math.randomseed(7)
request = function()
  local id = string.format("bench_%06d", math.random(1, {sessions}))
  return wrk.format("GET", "{prefix}" .. id .. "{suffix}")
end
"""


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One uvicorn worker in a child process."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], ready_path: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        port = ["--port", str(self.port)] if "uvicorn" in args else []
        self.process = subprocess.Popen(
            [PYTHON, *args, *port],
            cwd=REPO,
            env={**os.environ, **env, "TURNLOG_API_PORT": str(self.port)},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(url: str, lua: str, *, duration: float, connections: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    os.chmod(script.name, 0o600)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration:g}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    percentiles = {
        int(p): _ms(v, unit)
        for p, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)", out, flags=re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"  wrk socket errors: {socket_errors.group(1)}")
    return Result(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        errors=int(errors.group(1)) if errors else 0,
    )


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 2])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")

    ensure_dataset(DSN, SCHEMA)
    key = create_key(DSN, name="bench", scopes=["tokens", "read"], schema=SCHEMA)
    env = {
        "LIVEKIT_API_KEY": "benchkey",
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
        "TURNLOG_POSTGRES_DSN": DSN,
        "TURNLOG_POSTGRES_SCHEMA": SCHEMA,
        "TURNLOG_API_RATE_LIMIT_PER_ADDRESS": "1000000000",
        "TURNLOG_API_RATE_LIMIT_PER_KEY": "1000000000",
    }
    servers = {
        "baseline": Server(
            "baseline",
            ["-m", "uvicorn", "bench.api_apps:baseline", *UVICORN_FLAGS],
            env,
            "/constant",
        ),
        "api": Server("api", ["-m", "turnlog.api"], env, "/healthz"),
        "pools": Server(
            "pools",
            ["-m", "uvicorn", "bench.api_apps:pools", *UVICORN_FLAGS],
            env,
            "/sync/bench_000001",
        ),
    }
    transcript = TRANSCRIPT_LUA.format(
        key=key, sessions=SESSIONS, prefix="/v1/sessions/", suffix="/transcript"
    )
    targets = {
        "baseline": (servers["baseline"].url + "/constant", ""),
        "tokens": (servers["api"].url + "/v1/tokens", TOKEN_LUA.format(key=key)),
        "transcript": (servers["api"].url, transcript),
        "pool-sync": (
            servers["pools"].url,
            TRANSCRIPT_LUA.format(key=key, sessions=SESSIONS, prefix="/sync/", suffix=""),
        ),
        "pool-async": (
            servers["pools"].url,
            TRANSCRIPT_LUA.format(key=key, sessions=SESSIONS, prefix="/async/", suffix=""),
        ),
    }
    results = {c: {name: list[Result]() for name in targets} for c in args.connections}
    try:
        for url, lua in targets.values():  # warm up the caches and pools
            wrk(url, lua, duration=2, connections=max(args.connections))
        for round_ in range(args.rounds):
            for connections in args.connections:
                for name, (url, lua) in targets.items():
                    result = wrk(url, lua, duration=args.duration, connections=connections)
                    results[connections][name].append(result)
                    print(
                        f"round {round_ + 1} c{connections} {name:<11} "
                        f"{result.requests_per_s:>9,.0f}/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
    for connections, by_target in results.items():
        report(by_target, connections=connections, args=args)


def report(results: dict[str, list[Result]], *, connections: int, args: argparse.Namespace) -> None:
    median = {
        name: Result(
            statistics.median(r.requests_per_s for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p90_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.errors for r in runs),
        )
        for name, runs in results.items()
    }
    base = median["baseline"]
    print(
        f"\nwrk, 1 thread, {connections} connections, {args.duration:g} s x "
        f"{args.rounds} rounds (medians); one uvicorn worker per server"
    )
    print(
        f"{'target':<11} {'req/s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'req/s vs base':>13} {'p99 vs base':>11} {'non-2xx':>7}"
    )
    for name, m in median.items():
        print(
            f"{name:<11} {m.requests_per_s:>9,.0f} {m.p50_ms:>7.2f} {m.p90_ms:>7.2f} "
            f"{m.p99_ms:>7.2f} {m.requests_per_s / base.requests_per_s:>13.2f} "
            f"{m.p99_ms / base.p99_ms:>11.2f} {m.errors:>7}"
        )
    tokens, transcript = median["tokens"], median["transcript"]
    print(
        f"\ngoals: tokens >= 3,000/s: {tokens.requests_per_s:,.0f}/s; token p99 <= 5 ms: "
        f"{tokens.p99_ms:.2f} ms; transcript p99 <= 10 ms: {transcript.p99_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
