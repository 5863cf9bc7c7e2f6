"""manifests/monitoring renders into an install with the project's kubectl (its kustomize) and fits the
metrics Service of manifests/base."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from support.control_plane import ROOT, project_kubectl

MONITORING = ROOT / "manifests" / "monitoring"


def test_the_monitoring_component_adds_a_servicemonitor_rules_and_a_dashboard_to_an_install(
    tmp_path: Path,
) -> None:
    # kustomize takes only relative paths to other kustomizations.
    relative = {
        p: os.path.relpath(p, tmp_path) for p in (ROOT / "manifests" / "overlays" / "prod", MONITORING)
    }
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [relative[ROOT / "manifests" / "overlays" / "prod"]],
                "components": [relative[MONITORING]],
            }
        )
    )
    result = subprocess.run(
        [str(project_kubectl()), "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout) if d}
    monitor = docs[("ServiceMonitor", "paddle-kuscia-operator")]
    service = docs[("Service", "paddle-kuscia-operator-metrics")]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # per-object series keep the object's namespace label
    rules = docs[("PrometheusRule", "paddle-kuscia-operator")]["spec"]["groups"]
    board = docs[("ConfigMap", "paddle-kuscia-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["paddle-kuscia-operator.json"])["uid"] == "paddle-kuscia-operator"
    # The job the `up` alert names is the one the ServiceMonitor gives the target: the Service's name.
    down = next(r for g in rules for r in g["rules"] if r["alert"] == "PaddleKusciaOperatorDown")
    assert f'job="{service["metadata"]["name"]}"' in down["expr"]
