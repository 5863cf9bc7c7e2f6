"""What Argo CD, Prometheus and `kubectl describe` users see, taken from the statuses the operator really writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.argocd_health import HealthRunner, script_for
from support.control_plane import ROOT, ControlPlane, wait_for
from support.knative import Knative
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess


@pytest.fixture(scope="module")
def setup(
    control_plane: ControlPlane,
    operator_rbac: None,
    knative: Knative,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OperatorProcess, Any]]:
    tmp = tmp_path_factory.mktemp("observability")
    with KusciaDoubleThread(tmp / "pki", step_seconds=0.3) as kuscia:
        args = [
            "--namespace",
            "obs-*",
            "--kuscia-url",
            kuscia.base_url,
            "--kuscia-credentials-dir",
            str(kuscia.pki.directory),
            "--kuscia-poll-interval",
            "1",
            "--log-format",
            "json",
        ]
        with OperatorProcess(control_plane, tmp / "operator.log", args=args) as operator:
            yield operator, kuscia


def sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "manifests" / "samples" / name).read_text())


def ready_status(cp: ControlPlane, kind: str, name: str, ns: str, status: str) -> dict[str, Any] | None:
    obj = cp.get(kind, name, ns) or {}
    cond = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    if cond and cond["status"] == status and cond.get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


def test_argo_cd_health_of_real_statuses(control_plane: ControlPlane, setup: Any) -> None:
    health = HealthRunner()
    ns = control_plane.create_namespace("obs")
    ps = sample("paddleservice-minimal.yaml")
    control_plane.apply(ps, ns)
    name = ps["metadata"]["name"]
    obj = wait_for(lambda: ready_status(control_plane, "ps", name, ns, "True"), timeout=120, what="ps Ready")
    assert health(script_for(obj), obj)["status"] == "Healthy"

    # A new generation the operator has not observed yet is Progressing, whatever the old Ready said.
    stale = json.loads(json.dumps(obj))
    stale["metadata"]["generation"] += 1
    assert health(script_for(stale), stale)["status"] == "Progressing"

    ps["spec"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    control_plane.apply(ps, ns)
    obj = wait_for(
        lambda: ready_status(control_plane, "ps", name, ns, "False"), timeout=120, what="ps Ready=False"
    )
    result = health(script_for(obj), obj)
    assert result["status"] == "Degraded" and "InvalidSpec" in result["message"]

    for file, kind in (("kusciajob-psi.yaml", "kj"), ("kusciadeployment-serving.yaml", "kd")):
        doc = sample(file)
        control_plane.apply(doc, ns)
        obj = wait_for(
            lambda k=kind, d=doc: ready_status(control_plane, k, d["metadata"]["name"], ns, "True"),
            timeout=60,
            what=f"{kind} Ready",
        )
        assert health(script_for(obj), obj)["status"] == "Healthy", obj["status"]


def test_metrics_count_reconciles_kuscia_calls_and_ready_objects(
    control_plane: ControlPlane, setup: Any
) -> None:
    operator, _ = setup
    ns = control_plane.create_namespace("obs")
    control_plane.apply(sample("paddleservice-kuscia.yaml"), ns)
    wait_for(
        lambda: ready_status(control_plane, "ps", "paddleservice-kuscia", ns, "True"),
        timeout=60,
        what="Ready",
    )
    text = operator.metrics()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    assert value('paddle_kuscia_reconciles_total{kind="PaddleService",outcome="ok"}') >= 1
    assert value('paddle_kuscia_reconcile_duration_seconds_count{kind="PaddleService"}') >= 1
    assert value('paddle_kuscia_kuscia_api_calls_total{outcome="ok",route="/api/v1/serving/create"}') >= 1
    assert (
        value('paddle_kuscia_kuscia_api_latency_seconds_count{route="/api/v1/serving/status/batchQuery"}')
        >= 1
    )
    assert value('paddle_kuscia_objects{kind="PaddleService",ready="True"}') >= 1
    assert value("paddle_kuscia_kube_requests_total") >= 1


def test_json_logs_and_describe_explain_why(control_plane: ControlPlane, setup: Any, tmp_path: Path) -> None:
    operator, _ = setup
    ns = control_plane.create_namespace("obs")
    ps = sample("paddleservice-kuscia.yaml")
    ps["spec"]["canary"] = ps["spec"]["default"]
    ps["spec"]["canaryTrafficPercent"] = 10
    control_plane.apply(ps, ns)
    wait_for(
        lambda: ready_status(control_plane, "ps", "paddleservice-kuscia", ns, "False"),
        timeout=60,
        what="refused",
    )
    described = control_plane.kubectl("describe", "ps", "paddleservice-kuscia", "-n", ns).stdout
    assert "UnsupportedOnKuscia" in described and "spec.canary" in described  # condition and the Event
    records = [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]
    assert records and any("UnsupportedOnKuscia" in r.get("message", "") for r in records)
