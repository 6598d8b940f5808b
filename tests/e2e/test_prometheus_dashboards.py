"""The operations dashboard and the alert rules against a real Prometheus.

Debian's Prometheus scrapes the platform this test starts (every 2 s, the scrape jobs of
`infra/prometheus/prometheus.local.yml` pointed at this platform's ports, the rules of
`infra/prometheus/rules/`). Before the demo call every target is up; after it, and after
a scrape that saw the gateway's final counts, every expression of every Prometheus panel
of `infra/grafana/dashboards/` returns at least one series, the ones a healthy platform
holds at 0 read 0, produce latency from the job process has a value, and every rule
evaluates without an error, and no alert but the turn-latency ones fires (see
`ALLOWED_TO_FIRE`). The values are written to `build/prometheus/panels.txt`.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.e2e.conftest import RunningPlatform, free_port, gateway_samples
from turnlog.infra.demo.run import DEMO_QUESTIONS, run_demo
from turnlog.infra.stack.errors import StackError
from turnlog.infra.stack.process import tail

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "infra" / "grafana" / "dashboards"
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
REPORT = ROOT / "build" / "prometheus" / "panels.txt"
SCRAPE = "2s"
T = TypeVar("T")

ZERO_ON_A_HEALTHY_PLATFORM = (
    "sum(turnlog_gateway_events_dropped_total)",
    "sum(turnlog_gateway_events_failed_total)",
    "sum(rate(turnlog_gateway_events_spooled_total[5m]))",
    "sum(turnlog_gateway_queue_depth)",
    "sum(turnlog_gateway_spool_bytes)",
    "sum(turnlog_gateway_spool_disk_bytes)",
    "sum by (projection, reason) (rate(turnlog_streams_dead_lettered_total[5m])) * 60",
)
"""Panel expressions that read 0 after a call on a healthy platform (not "no data")."""
_PRODUCE = "sum by (le) (rate(turnlog_gateway_produce_latency_seconds_bucket[5m]))"
POSITIVE_AFTER_A_CALL = (
    "sum(rate(turnlog_gateway_events_sent_total[1m]))",
    f"histogram_quantile(0.5, {_PRODUCE})",
    f"histogram_quantile(0.99, {_PRODUCE})",
    "sum(increase(turnlog_gateway_sessions_started_total[5m]))",
    "turnlog:agent_e2e_latency_seconds:p95_rate5m",
    "histogram_quantile(0.9, sum by (le, projection) "
    "(rate(turnlog_streams_freshness_seconds_bucket[5m])))",
    "histogram_quantile(0.9, sum by (le, projection) "
    "(rate(turnlog_streams_batch_seconds_bucket[5m])))",
)
"""Panel expressions with a positive, finite value (every series) after one call."""
ALLOWED_TO_FIRE = ("TurnlogTurnLatencyHigh", "TurnlogTurnLatencyElevated")
"""The demo's offline speech stack (Festival, pocketsphinx on a busy machine) may answer
slower than the default budget: that is what these alerts are for. Every other alert is
silent on a healthy platform."""


def eventually(read: Callable[[], T], done: Callable[[T], bool], *, within: float) -> T:
    deadline = time.monotonic() + within
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def prometheus_panels() -> list[tuple[str, str]]:
    """(dashboard: panel, expression) of every Prometheus-backed panel target."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if panel.get("datasource", {}).get("type") == "prometheus":
                for target in panel["targets"]:
                    found.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return found


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/targets", state="active")["activeTargets"])


def scrape_config(platform: RunningPlatform) -> dict[str, Any]:
    """prometheus.local.yml, at this platform's ports, every 2 s, with the repo's rules."""
    s = platform.settings
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.local.yml").read_text())
    ports = {
        "turnlog-streams": [s.streams_metrics_port, s.streams_clickhouse_metrics_port,
                            s.streams_derived_metrics_port],
        "turnlog-api": [s.api_port],
        "turnlog-gateway": [s.gateway_metrics_port],
    }  # fmt: skip
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"{s.host}:{p}" for p in ports[job["job_name"]]]}]
    config["global"] |= {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE}
    rules = config.get("rule_files") or []
    assert rules, "prometheus.local.yml loads no rule files"
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in rules]
    return config


@pytest.fixture
def prometheus(platform: RunningPlatform, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("no `prometheus` executable: install Debian's prometheus package "
                    "(`make test` does)")  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(platform)))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return process.poll() is not None  # exited: stop waiting, fail below

        eventually(ready, bool, within=60)
        if process.poll() is not None or not ready():
            pytest.fail(f"Prometheus did not start:\n{log.read_text()[-3000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scalar(prometheus: Prometheus, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_every_panel_has_data_and_every_rule_evaluates_after_one_call(
    platform: RunningPlatform, prometheus: Prometheus
) -> None:
    # every target is up before the call (the gateway's worker serves zeros already)
    targets = eventually(prometheus.targets,
                         lambda ts: len(ts) == 5 and all(t["health"] == "up" for t in ts),
                         within=60)  # fmt: skip
    assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [
        ("turnlog-api", "up"), ("turnlog-gateway", "up"),
        *[("turnlog-streams", "up")] * 3,
    ], [t.get("lastError") for t in targets]  # fmt: skip
    before = prometheus.query("sum(turnlog_gateway_queue_depth)")
    assert [float(r["value"][1]) for r in before] == [0.0]  # a series, at 0, before any job

    try:
        outcome = run_demo(platform.settings, key=platform.api_key, questions=DEMO_QUESTIONS)
    except StackError as error:
        logs = "\n".join(f"{p.name}:\n{tail(p, 25)}" for p in sorted(platform.logs.glob("*.log")))
        pytest.fail(f"{error}\n{logs}")
    assert outcome.call.greeting_heard

    # the job process has ended and mirrored its last counts; Prometheus scraped them
    final = eventually(
        lambda: gateway_samples(platform),
        lambda g: g.get("turnlog_gateway_sessions_closed_total", 0) >= 1
        and g.get("turnlog_gateway_produce_latency_seconds_count", 0) > 0,
        within=60,
    )
    sent = final["turnlog_gateway_events_sent_total"]
    latencies = final["turnlog_gateway_produce_latency_seconds_count"]
    assert latencies == sent  # one latency per acknowledged event, from the job process
    seen = eventually(
        lambda: (scalar(prometheus, "sum(turnlog_gateway_events_sent_total)"),
                 scalar(prometheus, "sum(turnlog_gateway_produce_latency_seconds_count)")),
        lambda v: v == (sent, latencies),
        within=30,
    )  # fmt: skip
    assert seen == (sent, latencies)
    time.sleep(5)  # two more scrapes: the rates' windows hold the call and its end

    lines = []
    for title, expr in prometheus_panels():
        result = prometheus.query(expr)
        values = [(r["metric"], float(r["value"][1])) for r in result]
        lines.append(f"{title}\n  {expr}\n" + "".join(f"    {m} {v:g}\n" for m, v in values))
        assert result, f"{title}: no series for {expr}"
        if expr in ZERO_ON_A_HEALTHY_PLATFORM:
            assert all(v == 0 for _, v in values), f"{title}: {expr} = {values}"
        if expr in POSITIVE_AFTER_A_CALL:
            assert all(math.isfinite(v) and v > 0 for _, v in values), f"{title}: {values}"
    panel_exprs = {expr for _, expr in prometheus_panels()}
    assert set(ZERO_ON_A_HEALTHY_PLATFORM) | set(POSITIVE_AFTER_A_CALL) <= panel_exprs

    # every rule was evaluated, without an error; no alert fires on a healthy platform
    groups = eventually(
        lambda: prometheus.get("/api/v1/rules")["groups"],
        lambda gs: all(r.get("lastEvaluation", "").startswith("20")  # not 0001-01-01: never
                       for g in gs for r in g["rules"]),
        within=30,
    )  # fmt: skip
    rules = [(g["name"], r) for g in groups for r in g["rules"]]
    assert any(r["type"] == "alerting" for _, r in rules)
    for group, rule in rules:
        assert rule["health"] == "ok", f"{group}/{rule['name']}: {rule.get('lastError')}"
    firing = [(r["name"], a["labels"]) for _, r in rules if r["type"] == "alerting"
              and r["name"] not in ALLOWED_TO_FIRE
              for a in r.get("alerts", []) if a["state"] == "firing"]  # fmt: skip
    pending = [r["name"] for _, r in rules if r["type"] == "alerting" and r["state"] == "pending"]
    lines.append(f"alerts: {sum(r['type'] == 'alerting' for _, r in rules)} rules, "
                 f"firing {firing}, pending {pending}\n")  # fmt: skip
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("".join(lines))
    print("\n" + "".join(lines))
    assert not firing, firing
