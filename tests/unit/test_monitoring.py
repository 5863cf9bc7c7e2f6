"""manifests/monitoring: alerts proven with promtool, a dashboard and rules that read only metrics the
operator exports, and a runbook for every alert. (tests/integration/test_monitoring.py renders the component.)

promtool is built by hack/promtool.sh (Go and the Go module proxy) on first use; a failed build fails."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from paddle_kuscia.runtime import metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RUNBOOKS = ROOT / "docs" / "monitoring.md"
# Series Prometheus itself adds for every target.
PROMETHEUS_SERIES = {"up"}
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "time", "absent",
    "histogram_quantile", "min_over_time", "max_over_time", "label_values", "e",
}  # fmt: skip


def _doc(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in _doc(MONITORING / "prometheusrule.yaml")["spec"]["groups"]
        for rule in group["rules"]
    ]


def exported_metric_names() -> set[str]:
    """Every sample name a scrape of the operator can contain, taken from the metrics module itself."""
    metrics.on_reconcile("PaddleService", "ok", 0.1)
    metrics.on_kube_request("GET", "/", 200, 0.1)
    metrics.on_kuscia_call("/api/v1/serving/batchQuery", "ok", 0.1)
    metrics.on_kuscia_poll("https://kuscia:8082", "serving", None)
    metrics.on_kuscia_poll("https://kuscia:8082", "job", "KusciaUnavailable")
    metrics.watch_queue(exported_metric_names, "PaddleService", lambda: 0)
    failing = {"metadata": {"namespace": "n", "name": "x"}, "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "R"}]}}  # fmt: skip
    own = CollectorRegistry()
    own.register(metrics.ReadyStateCollector(lambda: [("PaddleService", [failing])]))
    try:
        text = generate_latest(REGISTRY).decode() + generate_latest(own).decode()
    finally:
        metrics.unwatch_queue(exported_metric_names)
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (strings, label matchers, grouping lists and ranges removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"label_values\(([^,]*),[^)]*\)", r"\1", expr)  # Grafana's: (metric, label)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    expr = re.sub(r"\b\d+(\.\d+)?(ms|[smhdwy])?\b", "", expr)  # numbers and durations
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return words - PROMQL_WORDS


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((MONITORING / "dashboard.json").read_text())
    out = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        out.extend((panel["title"], t["expr"]) for t in panel["targets"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            out.append((f"variable {variable['name']}", variable["query"]["query"]))
    return out


def test_metric_name_extraction_sees_through_promql_syntax() -> None:
    expr = 'histogram_quantile(0.99, sum by (kind, le) (rate(foo_bucket{job=~"$job", a="b c"}[$__rate_interval]))) / on (x) bar offset 15m'
    assert metric_names(expr) == {"foo_bucket", "bar"}


def test_every_dashboard_query_names_only_metrics_the_operator_exports() -> None:
    exported = exported_metric_names()
    queries = dashboard_queries()
    assert len(queries) >= 12
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= exported, f"{title}: {sorted(names - exported)} are not exported by the operator"


def test_the_dashboard_covers_what_an_admin_watches() -> None:
    used = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    for wanted in (
        "paddle_kuscia_objects",
        "paddle_kuscia_object_condition",
        "paddle_kuscia_reconciles_total",
        "paddle_kuscia_reconcile_duration_seconds_bucket",
        "paddle_kuscia_kuscia_api_calls_total",
        "paddle_kuscia_kuscia_api_latency_seconds_bucket",
        "paddle_kuscia_workqueue_depth",
        "paddle_kuscia_leader",
        "paddle_kuscia_kuscia_poll_last_success_timestamp_seconds",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_alert_rules_name_only_exported_metrics() -> None:
    exported = exported_metric_names() | PROMETHEUS_SERIES
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names and names <= exported, f"{rule['alert']}: {sorted(names - exported)} not exported"


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_summary_a_description_naming_the_object_and_a_runbook_section() -> None:
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.M)}
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        if "paddle_kuscia_object_" in rule["expr"]:
            for text in (notes["summary"], notes["description"]):
                assert "$labels.namespace" in text and "$labels.name" in text, rule["alert"]
        anchor = notes["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/monitoring.md has no section {rule['alert']}"
        assert rule["labels"]["severity"] in {"warning", "critical"}


@functools.cache
def promtool() -> Path:
    """The pinned promtool (hack/promtool.sh builds it into the cache on first use); a failed build fails."""
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "promtool.sh"), "build"], capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        pytest.fail(
            f"could not build promtool with hack/promtool.sh:\n{result.stderr[-3000:]}", pytrace=False
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_doc(MONITORING / "prometheusrule.yaml")["spec"]))
    shutil.copy(MONITORING / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    return tmp_path


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    d = _rules_dir(tmp_path)
    result = subprocess.run(
        [str(promtool()), "check", "rules", "rules.yaml"], cwd=d, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout + result.stderr


def test_promtool_proves_each_alert_fires_on_bad_series_and_not_on_healthy_ones(tmp_path: Path) -> None:
    tests = _doc(MONITORING / "alerts_test.yaml")["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    every = {rule["alert"] for rule in rules()}
    assert fired == every, f"alerts never shown to fire: {sorted(every - fired)}"
    # Healthy series sit next to the bad ones in every case, and exp_alerts is exact: they stay quiet.
    for t in tests:
        assert len(t["input_series"]) > len({c["alertname"] for c in t["alert_rule_test"]}), t["name"]
    assert quiet, "no case shows an alert staying quiet before its `for` elapses"
    d = _rules_dir(tmp_path)
    result = subprocess.run(
        [str(promtool()), "test", "rules", "alerts_test.yaml"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
