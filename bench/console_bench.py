"""Console benchmark: first load (bundle sizes, first paint, login form) and the timeline
of a 10,000-event session, in Chromium, against baselines measured in the same run.

    .venv/bin/python -m bench.console_bench [--rounds 5] [--timeline-rounds 3]
        [--events 10000] [--seed 7]

Needs the built console (`bash infra/install.sh`), the local stack's Kafka and
PostgreSQL, and Debian's Chromium (`/usr/bin/chromium`, driven by Playwright). The API
is `python -m turnlog.api` on its own topics and schema (`bench.live_support`), all
removed at the end, also on Ctrl-C. Everything is on loopback: network transfer costs
almost nothing here, so the bytes are reported separately (gzip -9; what a slow link
would pay).

1. Bundle: index.html plus the JS and CSS it references directly (the first route),
   each gzipped at level 9; the lazily loaded page chunks listed apart. Goal <= 300 KB.
2. First load, from navigation start (`performance.timeOrigin`): first contentful paint,
   and the login form visible (the `#api-key` input in the DOM, stamped at the next
   animation frame). Cold: a fresh browser context (empty cache); warm: a second page of
   that context. Baseline: the same form as one static HTML page with inline style
   (`bench.console_baseline`) from a bare Starlette app on the same uvicorn.
3. Timeline: one synthetic session of exactly `--events` events (`bench.streams_mix`
   turns: interims, metrics, tools, usage; then session.closed) written to Kafka and
   projected into PostgreSQL. A fresh context, logged in (the session cookie), opens
   `/sessions/<id>` cold. "rendered": from navigation start until the Raw events tab
   reads `(N)` and `Turn 1` is in the DOM (next frame); "scrollable": from setting the
   turns scroller's scrollTop to its scrollHeight (repeated each frame) until the last
   turn's article is inside the scroller. Includes loading the app and the Timeline
   chunk, the login check, the API's history read from Kafka, SSE, parsing and React.
   Long tasks (PerformanceObserver) are counted from navigation until rendered.
   Baseline: a page of the same origin (the console's not-found page, idle) evaluating
   a bare `EventSource` on `/v1/sessions/<id>/live?history=batched` (the console's own
   request) that counts the events (history batches and single events) until
   session.closed: the API's history read and the transport, without the app. For
   reference, the same bare EventSource on the same bytes recorded and answered in one
   piece by the baseline app: what the browser alone needs to take in the stream.
Rounds interleave the targets (order alternating); tables give medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import statistics
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from bench.api_bench import UVICORN_FLAGS, Server
from bench.live_support import Platform, produce, project, running_api, synthetic_session
from turnlog.schemas import EVENT_TYPES

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
]  # fmt: skip
BUNDLE_GOAL_KB: Final = 300
TIMELINE_GOAL_MS: Final = 1000
TIMEOUT_MS: Final = 120_000

WATCH_SCRIPT: Final = """
(() => {
  const bench = (window.__bench = { marks: {}, longtasks: [] });
  const turns = %(turns)d, events = %(events)d;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) bench.longtasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (e) {}
  const mark = (name) => {
    if (bench.marks[name] !== undefined) return;
    bench.marks[name] = null;
    // after the next frame is produced: the mark follows the paint that shows it
    requestAnimationFrame(() => setTimeout(() => (bench.marks[name] = performance.now())));
  };
  const check = () => {
    if (document.getElementById("api-key")) mark("form");
    const tab = [...document.querySelectorAll('[role="tab"]')]
      .find((t) => t.textContent.startsWith("Raw events"));
    if (tab && tab.textContent.includes(`(${events})`) &&
        document.querySelector('article[aria-label="Turn 1"]')) mark("rendered");
  };
  new MutationObserver(check).observe(document, {
    childList: true, subtree: true, characterData: true,
  });
})();
"""

SCROLL_SCRIPT: Final = """
(turns) => new Promise((resolve) => {
  const scroller = document.querySelector('[data-testid="turns"]');
  const t0 = performance.now();
  let frames = 0;
  const step = () => {
    scroller.scrollTop = scroller.scrollHeight;
    const last = scroller.querySelector(`article[aria-label="Turn ${turns}"]`);
    if (last) {
      const a = last.getBoundingClientRect(), s = scroller.getBoundingClientRect();
      if (a.top < s.bottom && a.bottom > s.top) return resolve([performance.now() - t0, frames]);
    }
    frames += 1;
    requestAnimationFrame(step);
  };
  step();
})
"""

EVENTSOURCE_SCRIPT: Final = """
({ url, types }) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  let count = 0, first = null;
  const source = new EventSource(url);
  const onEvent = (message) => {
    count += 1;
    if (first === null) first = performance.now() - t0;
    if (message.type === "turnlog.session.closed.v1") {
      source.close();
      resolve({ ms: performance.now() - t0, count, first });
    }
  };
  const onHistory = (message) => {
    const batch = JSON.parse(message.data);
    count += batch.length;
    if (first === null) first = performance.now() - t0;
    if (batch.length && batch[batch.length - 1].type === "turnlog.session.closed.v1") {
      source.close();
      resolve({ ms: performance.now() - t0, count, first });
    }
  };
  for (const type of types) source.addEventListener(type, onEvent);
  source.addEventListener("history", onHistory);
  source.addEventListener("error", () => { source.close(); reject(new Error("stream failed")); });
})
"""


@dataclass(frozen=True)
class Load:
    fcp_ms: float
    form_ms: float


@dataclass(frozen=True)
class TimelineRun:
    rendered_ms: float
    stream_ms: tuple[float, float, float]
    """The console's `/live` request: started, first byte, ended (resource timing), from
    navigation start."""
    scroll_ms: float
    scroll_frames: int
    longest_task_ms: float
    long_tasks: int
    blocked_ms: float
    """Sum of the long tasks' durations over 50 ms (total blocking time)."""


# --- bundle -------------------------------------------------------------------------


def bundle(url: str) -> None:
    """Print the gzip -9 sizes of the first route's files and of the lazy chunks."""
    with httpx.Client(base_url=url, timeout=10) as http:
        index = http.get("/")
        first = ["/", *re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text)]
        encoding = http.get(first[-1], headers={"Accept-Encoding": "gzip, br"})
        print(f"\nbundle (gzip -9); the API answers assets with Content-Encoding: "
              f"{encoding.headers.get('content-encoding', 'none (uncompressed)')}")  # fmt: skip
        total = _sizes(http, first, "first route")
        named = re.findall(r'"(?:\./|assets/)([\w.-]+\.(?:js|css))"', _text(http, first))
        lazy = sorted({f"/assets/{name}" for name in named} - set(first))
        _sizes(http, lazy, "lazy chunks (not in the first route)")
    verdict = "met" if total / 1024 <= BUNDLE_GOAL_KB else "MISSED"
    print(f"goal: first route <= {BUNDLE_GOAL_KB} KB gzipped: {total / 1024:.1f} KB ({verdict})")


def _text(http: httpx.Client, paths: list[str]) -> str:
    return "".join(http.get(p).text for p in paths if p.endswith(".js"))


def _sizes(http: httpx.Client, paths: list[str], title: str) -> int:
    print(f"{title:<44} {'raw KB':>8} {'gzip KB':>8}")
    total = 0
    for path in paths:
        body = http.get(path).content
        packed = len(gzip.compress(body, compresslevel=9))
        total += packed
        print(f"  {path:<42} {len(body) / 1024:>8.1f} {packed / 1024:>8.1f}")
    print(f"  {'total':<42} {'':>8} {total / 1024:>8.1f}")
    return total


# --- first load ---------------------------------------------------------------------


def first_loads(browser: Browser, urls: dict[str, str], rounds: int) -> dict[str, list[Load]]:
    """Cold then warm loads of each target's login page, `rounds` times, interleaved."""
    results: dict[str, list[Load]] = {f"{n} {k}": [] for n in urls for k in ("cold", "warm")}
    for round_ in range(rounds):
        names = list(urls) if round_ % 2 == 0 else list(reversed(urls))
        for name in names:
            context = browser.new_context()
            context.add_init_script(WATCH_SCRIPT % {"turns": 0, "events": -1})
            try:
                for kind in ("cold", "warm"):
                    load = _load(context, urls[name])
                    results[f"{name} {kind}"].append(load)
                    print(f"round {round_ + 1} {name} {kind}: FCP {load.fcp_ms:.0f} ms, "
                          f"form {load.form_ms:.0f} ms", flush=True)  # fmt: skip
            finally:
                context.close()
    return results


def _load(context: BrowserContext, url: str) -> Load:
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function(
            "() => window.__bench.marks.form &&"
            " performance.getEntriesByName('first-contentful-paint').length",
            polling=20, timeout=TIMEOUT_MS,
        )  # fmt: skip
        fcp, form = page.evaluate(
            "[performance.getEntriesByName('first-contentful-paint')[0].startTime,"
            " window.__bench.marks.form]"
        )
        return Load(fcp, max(fcp, form))  # nothing is visible before the first paint
    finally:
        page.close()


# --- timeline -----------------------------------------------------------------------


def prepared_session(platform: Platform, *, events: int, seed: int) -> tuple[str, int]:
    """A closed session of exactly `events` events in the log and the read models; its
    id and number of turns."""
    session_id = f"bench_{uuid.uuid4().hex[:10]}"
    start = datetime.now(UTC) - timedelta(hours=1)
    log, turns = synthetic_session(session_id, events=events, seed=seed, start=start)
    written = asyncio.run(produce(platform.topic, log))
    project(platform.schema, platform.topic, log, written)
    print(f"\nsession {session_id}: {len(log):,} events, {turns} turns, seed {seed}")
    return session_id, turns


def record_stream(platform: Platform, session_id: str, path: Path) -> None:
    """Save the session's `/live` answer (history, ready, end) to `path`."""
    url = f"{platform.url}/v1/sessions/{session_id}/live?history=batched"
    headers = {"Authorization": f"Bearer {platform.key}"}
    with httpx.stream("GET", url, headers=headers, timeout=60) as answer, path.open("wb") as out:
        for chunk in answer.iter_raw():
            out.write(chunk)


@dataclass
class TimelineResults:
    console: list[TimelineRun] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)
    """The bare EventSource on `/live`: ms until session.closed."""
    first: list[float] = field(default_factory=list)
    """... and until its first event."""
    replayed: list[float] = field(default_factory=list)
    """The bare EventSource on the recorded stream: ms until session.closed."""


def timeline_runs(
    browser: Browser,
    platform: Platform,
    session_id: str,
    *,
    replay_url: str,
    turns: int,
    events: int,
    rounds: int,
) -> TimelineResults:
    """The console's timeline and the bare EventSources, `rounds` times, interleaved."""
    state = _logged_in(browser, platform)
    results = TimelineResults()
    for round_ in range(rounds):
        for target in ("console", "eventsource", "replay")[:: 1 if round_ % 2 == 0 else -1]:
            if target == "replay":
                context = browser.new_context(base_url=replay_url)
                try:
                    ms = _replayed(context, events=events)
                finally:
                    context.close()
                results.replayed.append(ms)
                print(f"round {round_ + 1} recorded stream: {ms:.0f} ms", flush=True)
                continue
            context = browser.new_context(base_url=platform.url, storage_state=state)
            try:
                if target == "console":
                    run = _timeline(context, session_id, turns=turns, events=events)
                    results.console.append(run)
                    print(f"round {round_ + 1} console: rendered {run.rendered_ms:.0f} ms, "
                          f"scrollable {run.scroll_ms:.0f} ms, longest task "
                          f"{run.longest_task_ms:.0f} ms", flush=True)  # fmt: skip
                else:
                    result = _eventsource(context, session_id, events=events)
                    results.closed.append(result["ms"])
                    results.first.append(result["first"])
                    print(f"round {round_ + 1} eventsource: {result['count']} events in "
                          f"{result['ms']:.0f} ms", flush=True)  # fmt: skip
            finally:
                context.close()
    return results


def _logged_in(browser: Browser, platform: Platform) -> Any:
    """The storage state (the session cookie) of one console login."""
    context = browser.new_context(base_url=platform.url)
    try:
        answer = context.request.post(
            "/v1/auth/login", data={"api_key": platform.key}, headers={"Origin": platform.url}
        )
        if not answer.ok:
            raise SystemExit(f"console login failed: {answer.status} {answer.text()}")
        return context.storage_state()
    finally:
        context.close()


def _timeline(context: BrowserContext, session_id: str, *, turns: int, events: int) -> TimelineRun:
    context.add_init_script(WATCH_SCRIPT % {"turns": turns, "events": events})
    page = context.new_page()
    page.goto(f"/sessions/{session_id}")
    page.wait_for_function("() => window.__bench.marks.rendered", polling=50, timeout=TIMEOUT_MS)
    rendered, tasks, stream = page.evaluate(
        "[window.__bench.marks.rendered, window.__bench.longtasks, performance"
        ".getEntriesByType('resource').filter((e) => e.name.includes('/live'))"
        ".map((e) => [e.startTime, e.responseStart, e.responseEnd])[0]]"
    )
    scroll_ms, frames = page.evaluate(SCROLL_SCRIPT, turns)
    during = [d for start, d in tasks if start <= rendered]
    return TimelineRun(
        rendered_ms=rendered, stream_ms=tuple(stream or (0.0, 0.0, 0.0)),
        scroll_ms=scroll_ms, scroll_frames=frames,
        longest_task_ms=max(during, default=0.0), long_tasks=len(during),
        blocked_ms=sum(max(0.0, d - 50) for d in during),
    )  # fmt: skip


def _eventsource(context: BrowserContext, session_id: str, *, events: int) -> dict[str, Any]:
    page = context.new_page()
    page.goto("/bench-baseline-idle")
    page.get_by_role("heading", name="Not found").wait_for(timeout=TIMEOUT_MS)
    result: dict[str, Any] = page.evaluate(
        EVENTSOURCE_SCRIPT,
        {"url": f"/v1/sessions/{session_id}/live?history=batched", "types": list(EVENT_TYPES)},
    )
    if result["count"] != events:
        raise SystemExit(f"the bare EventSource got {result['count']} events, not {events}")
    return result


def _replayed(context: BrowserContext, *, events: int) -> float:
    page = context.new_page()
    page.goto("/")
    result: dict[str, Any] = page.evaluate(
        EVENTSOURCE_SCRIPT, {"url": "/sse", "types": list(EVENT_TYPES)}
    )
    if result["count"] != events:
        raise SystemExit(f"the recorded stream gave {result['count']} events, not {events}")
    ms: float = result["ms"]
    return ms


# --- report -------------------------------------------------------------------------


def report_loads(results: dict[str, list[Load]]) -> None:
    print("\nfirst load, from navigation start (medians; ratio console / baseline)")
    print(f"{'target':<16} {'FCP ms':>7} {'form ms':>8} {'FCP ratio':>9} {'form ratio':>10}")
    median = {
        name: Load(
            statistics.median(r.fcp_ms for r in runs), statistics.median(r.form_ms for r in runs)
        )
        for name, runs in results.items()
    }
    for name, m in median.items():
        base = median[f"baseline {name.split()[-1]}"]
        print(f"{name:<16} {m.fcp_ms:>7.0f} {m.form_ms:>8.0f} {m.fcp_ms / base.fcp_ms:>9.2f} "
              f"{m.form_ms / base.form_ms:>10.2f}")  # fmt: skip


def report_timeline(results: TimelineResults) -> None:
    console, closed, first = results.console, results.closed, results.first

    def med(values: Iterable[float]) -> float:
        return statistics.median(values)

    rendered, scroll = med(r.rendered_ms for r in console), med(r.scroll_ms for r in console)
    opened = med(r.rendered_ms - r.stream_ms[0] for r in console)
    base = med(closed)
    rows = [
        ("console: rendered (tab (N), Turn 1), from navigation", rendered, base),
        ("console: /live request started", med(r.stream_ms[0] for r in console), None),
        ("console: /live response headers", med(r.stream_ms[1] for r in console), None),
        ("console: /live ended (session.closed)", med(r.stream_ms[2] for r in console), None),
        ("console: rendered, from /live request start", opened, base),
        ("console: scrollable (last turn visible)", scroll, None),
        ("bare EventSource: first event", med(first), None),
        ("bare EventSource: session.closed", base, base),
        ("bare EventSource, recorded stream in one piece", med(results.replayed), base),
        ("console: longest task until rendered", med(r.longest_task_ms for r in console), None),
        ("console: long tasks until rendered (count)", med(r.long_tasks for r in console), None),
        ("console: blocking time (sum over 50 ms)", med(r.blocked_ms for r in console), None),
        ("console: frames to scroll to the end", med(r.scroll_frames for r in console), None),
    ]
    print("\ntimeline, cold context, logged in (medians; ratio to the bare EventSource)")
    print(f"{'what':<54} {'ms':>7} {'ratio':>6}")
    for name, value, versus in rows:
        ratio = f"{value / versus:>6.2f}" if versus else ""
        print(f"{name:<54} {value:>7.0f} {ratio}")
    for name, value in (("rendered", rendered), ("scrollable", scroll)):
        verdict = "met" if value <= TIMELINE_GOAL_MS else "MISSED"
        print(f"goal: {name} <= {TIMELINE_GOAL_MS} ms: {value:.0f} ms ({verdict})")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="first-load rounds")
    parser.add_argument("--timeline-rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"seed {args.seed}; Chromium {CHROMIUM}, headless, loopback")
    baseline: Server | None = None
    with running_api("bench_console") as platform, tempfile.TemporaryDirectory() as tmp:
        try:
            bundle(platform.url)
            session_id, turns = prepared_session(platform, events=args.events, seed=args.seed)
            recorded = Path(tmp) / "stream.txt"
            record_stream(platform, session_id, recorded)
            baseline = Server(
                "baseline", ["-m", "uvicorn", "bench.console_baseline:app", *UVICORN_FLAGS],
                {"BENCH_SSE_FILE": str(recorded)}, "/healthz",
            )  # fmt: skip
            with chromium() as browser:
                urls = {"console": platform.url + "/", "baseline": baseline.url + "/"}
                loads = first_loads(browser, urls, args.rounds)
                timeline = timeline_runs(
                    browser, platform, session_id, replay_url=baseline.url,
                    turns=turns, events=args.events, rounds=args.timeline_rounds,
                )  # fmt: skip
        finally:
            if baseline is not None:
                baseline.stop()
    report_loads(loads)
    report_timeline(timeline)


if __name__ == "__main__":
    main()
