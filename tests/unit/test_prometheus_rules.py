"""The Prometheus alert and recording rules are valid, tested, and about what exists.

promtool (Debian's `prometheus` package, which `make test` installs) checks both scrape
configurations (the Docker one names compose host names: `check config` does not resolve
them), checks every rules file, and runs the unit tests of `infra/prometheus/tests`.
Then, without promtool: every alert has a severity (critical or warning), a summary, a
description naming its grouping labels, and a one-sentence runbook; every alert has a
promtool case where it fires and one where it must not; every metric the rules read is
one our services expose (their registries, as `test_dashboards` builds them); the SLO
objectives are constants defined in one file only; both configurations load every rules
file, and docker-compose mounts them where the configuration names them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.unit.test_dashboards import exposed_metric_names, recorded_names

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
CONFIGS = sorted(PROMETHEUS.glob("prometheus*.yml"))
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
OBJECTIVES = PROMETHEUS / "rules" / "turnlog-slo-objectives.yml"
SEVERITIES = {"critical", "warning"}
_METRIC = re.compile(r"\bturnlog_[a-z0-9_]+\b")
_RECORDED = re.compile(r"\bturnlog:[a-z0-9_:]+")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; fail (never skip) when it is not installed."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: install Debian's `prometheus` package "
            "(sudo apt-get install prometheus; `make test` installs it)"
        )
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def assert_ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{output}"
    return output


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def rules() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, rule) for path in RULES for group in load(path)["groups"]
            for rule in group["rules"]]  # fmt: skip


def alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in rules() if "alert" in rule]


def test_the_files_exist() -> None:
    assert [p.name for p in CONFIGS] == ["prometheus.local.yml", "prometheus.yml"]
    assert OBJECTIVES in RULES
    assert len(RULES) >= 3
    assert TESTS


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_promtool_accepts_the_configuration_and_finds_every_rules_file(config: Path) -> None:
    output = assert_ok(promtool("check", "config", str(config)))
    assert f"SUCCESS: {len(RULES)} rule files found" in output, output


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_promtool_accepts_the_rules(path: Path) -> None:
    assert_ok(promtool("check", "rules", str(path)))


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    output = assert_ok(promtool("test", "rules", str(path)))
    assert "SUCCESS" in output, output


def test_every_alert_has_a_severity_and_its_annotations() -> None:
    assert alerts()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        notes = alert["annotations"]
        assert set(notes) >= {"summary", "description", "runbook"}, name
        assert all(str(notes[key]).strip() for key in ("summary", "description")), name
        runbook = " ".join(str(notes["runbook"]).split())
        assert "://" not in runbook, f"{name}: the runbook says what to check, not where"
        assert runbook.endswith("."), f"{name}: {runbook!r}"
        assert not re.search(r"[.!?]\s", runbook), f"{name}: one sentence: {runbook!r}"
        # the labels the alert is grouped by are named where a person reads them
        text = notes["summary"] + " " + notes["description"]
        grouped = {label.strip() for match in _BY.findall(alert["expr"])
                   for label in match.split(",")} - {"", "le", "job"}  # fmt: skip
        for label in grouped:
            assert f"$labels.{label}" in text, f"{name}: {label} is not named"


def test_every_alert_is_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    tested_files: set[Path] = set()
    for path in TESTS:
        suite = load(path)
        tested_files |= {(path.parent / name).resolve() for name in suite["rule_files"]}
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
                for expected in check.get("exp_alerts") or []:
                    assert expected["exp_labels"]["severity"] in SEVERITIES
                    assert set(expected["exp_annotations"]) >= {"summary", "description",
                                                                "runbook"}  # fmt: skip
    names = {alert["alert"] for alert in alerts()}
    assert not names - fired, f"never tested firing: {sorted(names - fired)}"
    assert not names - silent, f"never tested silent: {sorted(names - silent)}"
    assert not (fired | silent) - names, "tests of alerts that do not exist"
    assert {p.resolve() for p in RULES} <= tested_files


def test_the_rules_read_only_metrics_our_services_expose() -> None:
    exposed = exposed_metric_names()
    recorded = recorded_names()
    for path, rule in rules():
        text = yaml.safe_dump(rule)  # the expression and the annotations
        unknown = set(_METRIC.findall(text)) - recorded - exposed
        assert not unknown, f"{path.name}: {rule.get('alert') or rule['record']}: {unknown}"
        undefined = set(_RECORDED.findall(rule["expr"])) - recorded
        assert not undefined, f"{path.name}: recording rules not defined: {undefined}"


def test_the_slo_objectives_are_constants_of_one_file() -> None:
    objectives = {rule["record"]: rule["expr"] for group in load(OBJECTIVES)["groups"]
                  for rule in group["rules"]}  # fmt: skip
    assert set(objectives) >= {
        "turnlog:slo_api_availability:objective",
        "turnlog:slo_agent_error_ratio:objective",
        "turnlog:slo_turn_latency_p95:budget_seconds",
    }
    for name, expr in objectives.items():
        assert re.fullmatch(r"vector\(\d+(\.\d+)?\)", expr.strip()), name
    elsewhere = [rule.get("record") for path, rule in rules() if path != OBJECTIVES]
    assert not set(objectives) & set(elsewhere)
    assert all(":slo_" not in str(name) for name in elsewhere)  # no second configuration
    # the latency budget is within the histogram's finite buckets (or p95 never exceeds it)
    budget = float(objectives["turnlog:slo_turn_latency_p95:budget_seconds"][7:-1])
    assert 0.05 <= budget < 10
    assert 0 < float(objectives["turnlog:slo_api_availability:objective"][7:-1]) < 1
    assert 0 < float(objectives["turnlog:slo_agent_error_ratio:objective"][7:-1]) < 1


def test_compose_mounts_the_rules_where_the_configuration_names_them() -> None:
    for config in CONFIGS:
        globs = load(config)["rule_files"]
        found = {p for pattern in globs for p in PROMETHEUS.glob(pattern)}
        assert found == set(RULES), config.name
    compose = load(ROOT / "docker-compose.yml")["services"]["prometheus"]
    flag = next(a for a in compose["command"] if a.startswith("--config.file="))
    config_in_container = Path(flag.split("=", 1)[1])
    assert config_in_container.name == "prometheus.yml"
    mounts = [str(m).split(":") for m in compose["volumes"]]
    assert ["./infra/prometheus", str(config_in_container.parent), "ro"] in mounts
