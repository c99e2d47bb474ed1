"""The Prometheus alerting rules in monitoring/: valid, tested with promtool, and about
metrics `/metrics` really exposes (names, label names and label values)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from core.domain.health import HEALTH_STATES
from core.domain.health_metrics import HealthSnapshot
from core.domain.heartbeats import Recorded
from core.domain.lifecycle import Status
from core.domain.metrics import Snapshot, render

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts_test.yml"
#: A selector: a metric name, then optionally `{label="value", ...}`.
SELECTOR = re.compile(r"\b(rachel_cloud_[a-z0-9_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!=|!~|=)\s*"([^"]*)"')
#: Labels Prometheus adds when it scrapes (not ours).
SCRAPE_LABELS = {"instance", "job"}


def exposed() -> dict[str, dict[str, set[str]]]:
    """Every sample name `/metrics` can show, with each label's values (all states present)."""
    snapshot = Snapshot(
        servers_by_status={status.value: 1 for status in Status},
        provisioning_seconds=[30.0],
        sla_seconds=120.0,
        webhook_results={("deploy", "accepted"): 1},
        queue_depths={"rc-start": 0},
        workers=2,
        health=HealthSnapshot(
            by_state={state.value: 1 for state in HEALTH_STATES},
            lags=[5.0],
            without_heartbeat=0,
            heartbeats={result.value: 1 for result in Recorded},
            probes={"reachable": 1},
            repairs={("restart", "ok"): 1},
            notifications={("owner", "sent"): 1},
            recovery={"count": 1.0, "sum": 40.0},
            herd_tripped=False,
            repair_paused=False,
            breakers_open=0,
        ),
    )
    found: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(render(snapshot)):
        for sample in family.samples:
            labels = found.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)
    return found


def selectors(text: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    return [(name, MATCHER.findall(matchers or "")) for name, matchers in SELECTOR.findall(text)]


def check(text: str, where: str, metrics: dict[str, dict[str, set[str]]]) -> list[str]:
    wrong = []
    for name, matchers in selectors(text):
        if name not in metrics:
            wrong.append(f"{where}: {name} is not exposed")
            continue
        for label, op, value in matchers:
            if label in SCRAPE_LABELS:
                continue
            values = metrics[name].get(label)
            if values is None:
                wrong.append(f"{where}: {name} has no label {label}")
            elif op == "=" and value not in values:
                wrong.append(f"{where}: {name}{{{label}}} is never {value!r} ({sorted(values)})")
    return wrong


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_metric_a_rule_uses_is_one_we_expose() -> None:
    metrics = exposed()
    rules = [rule for group in load(RULES)["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "RachelServersUnhealthy",
        "RachelHerdGuardTripped",
        "RachelNoHeartbeats",
        "RachelNoWorkers",
        "RachelCircuitBreakersOpen",
    }
    wrong = []
    for rule in rules:
        assert selectors(rule["expr"]), f"{rule['alert']} uses no rachel_cloud metric"
        wrong += check(rule["expr"], rule["alert"], metrics)
    for test in load(RULE_TESTS)["tests"]:
        for series in test["input_series"]:
            wrong += check(series["series"], "alerts_test.yml", metrics)
    assert wrong == []


def test_the_check_catches_a_metric_we_do_not_expose() -> None:
    metrics = exposed()
    assert check('rachel_cloud_workers{queue="x"} == 0', "r", metrics) == [
        "r: rachel_cloud_workers has no label queue"
    ]
    assert check('max(rachel_cloud_servers_health{health="sick"})', "r", metrics)
    assert check("rate(rachel_cloud_heartbeat_total[5m])", "r", metrics) == [
        "r: rachel_cloud_heartbeat_total is not exposed"
    ]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "promtool is not installed: .ci/run installs it (apt-get install prometheus)"
            )
        pytest.skip("promtool is not installed (apt-get install prometheus); CI runs this")
    return found


def test_promtool_checks_the_rules_and_runs_their_tests() -> None:
    tool = promtool()
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout
