"""The Grafana dashboards and the Prometheus scrape configuration point at what exists.

Metric names come from our own registries (streams worker, API, agent gateway), built here
as the services build them, so a renamed metric fails this test rather than a dashboard.
The ClickHouse panels are run against the real DDL in
`tests/integration/test_dashboards_clickhouse.py`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.metrics import GatewayMetrics, SpoolOnDisk
from turnlog.agent_gateway.publisher.metrics import collector_for
from turnlog.api.middleware import ApiMetrics
from turnlog.streams.metrics import StreamsMetrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "infra" / "grafana" / "dashboards"
PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}
_METRIC = re.compile(r"\bturnlog_[a-z0-9_]+\b")
_RECORDED = re.compile(r"\bturnlog:[a-z0-9_:]+\b")


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{name}: {panel['title']}", panel)
        for name, board in dashboards().items()
        for panel in board["panels"]
        if panel["datasource"]["type"] == kind
    ]


def exposed_metric_names() -> set[str]:
    """Every series name our services can expose, from their registries."""
    gateway = CollectorRegistry()
    GatewayMetrics(registry=gateway)
    collector_for(gateway)
    gateway.register(SpoolOnDisk())  # the worker's endpoint adds it
    names: set[str] = set()
    for registry in (StreamsMetrics().registry, ApiMetrics().registry, gateway):
        for family in registry.collect():
            names.add(family.name)
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def test_both_dashboards_exist_with_unique_panels() -> None:
    boards = dashboards()
    assert set(boards) == {"operations.json", "conversations.json"}
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        assert all(p["targets"] and p["gridPos"] for p in board["panels"])
    assert {p["datasource"]["type"] for p in boards["conversations.json"]["panels"]} == {
        "grafana-clickhouse-datasource"
    }


def test_every_panel_uses_a_provisioned_data_source() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "turnlog.yml").read_text())
    uids = {(d["type"], d["uid"]) for d in provisioned["datasources"]}
    for title, panel in panels("prometheus") + panels("grafana-clickhouse-datasource"):
        assert (panel["datasource"]["type"], panel["datasource"]["uid"]) in uids, title
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], title


def recorded_names() -> set[str]:
    """The series our recording rules (`infra/prometheus/rules/`) record."""
    rules = ROOT / "infra" / "prometheus" / "rules"
    return {
        rule["record"]
        for path in sorted(rules.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_every_prometheus_panel_queries_metrics_our_services_expose() -> None:
    exposed = exposed_metric_names()
    recorded = recorded_names()
    queried: set[str] = set()
    for title, panel in panels("prometheus"):
        for target in panel["targets"]:
            names = set(_METRIC.findall(target["expr"]))
            rules = set(_RECORDED.findall(target["expr"]))
            alerts = {"ALERTS"} & set(re.findall(r"\bALERTS\b", target["expr"]))
            assert names | rules | alerts, f"{title}: {target['expr']}"
            assert names <= exposed, f"{title}: unknown {sorted(names - exposed)}"
            assert rules <= recorded, f"{title}: not recorded {sorted(rules - recorded)}"
            queried |= names | rules
    # the operations dashboard covers what the issue names
    for needed in ("turnlog_gateway_events_sent_total", "turnlog_gateway_events_spooled_total",
                   "turnlog_gateway_events_dropped_total", "turnlog_streams_consumer_lag",
                   "turnlog_streams_dead_lettered_total",
                   "turnlog_api_request_duration_seconds_bucket",
                   "turnlog_gateway_produce_latency_seconds_bucket",
                   "turnlog:agent_e2e_latency_seconds:p95_rate5m",
                   "turnlog:slo_turn_latency_p95:budget_seconds"):  # fmt: skip
        assert needed in queried


def test_prometheus_scrapes_every_service_metrics_port() -> None:
    for name in ("prometheus.yml", "prometheus.local.yml"):
        config = yaml.safe_load((ROOT / "infra" / "prometheus" / name).read_text())
        targets = {
            job["job_name"]: job["static_configs"][0]["targets"][0]
            for job in config["scrape_configs"]
        }
        assert set(targets) == {"turnlog-streams", "turnlog-api", "turnlog-gateway"}
        assert targets["turnlog-streams"].endswith(":9465")
        assert targets["turnlog-api"].endswith(":8000")
        assert targets["turnlog-gateway"].endswith(":9464")
