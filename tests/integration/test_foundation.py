"""The foundation: a real API server, CRDs that accept ElasticServing YAML and refuse bad input, a first reconcile."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.control_plane import ControlPlane, ControlPlaneError, wait_for
from support.operator import OperatorProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_api_server_is_kubernetes_1_34(control_plane: ControlPlane) -> None:
    assert control_plane.version().startswith("v1.34.")


def test_elasticserving_sample_applies_unchanged(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(FIXTURES / "elasticserving" / "sample_service.yaml")
    )
    obj = control_plane.get("paddleservice", "paddleservice-sample", namespace)
    assert obj is not None
    assert obj["spec"]["canaryTrafficPercent"] == 50
    assert obj["spec"]["service"] == {"minScale": 0, "window": "10s"}
    assert control_plane.get("ps", "paddleservice-sample", namespace) is not None  # short name


def _bad(control_plane: ControlPlane, namespace: str, spec_yaml: str) -> str:
    manifest = (
        "apiVersion: elasticserving.paddlepaddle.org/v1\nkind: PaddleService\nmetadata: {name: bad}\n"
        f"spec:\n  default: {{containerImage: img, tag: v1, port: 8080}}\n{spec_yaml}"
    )
    with pytest.raises(ControlPlaneError) as err:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    return str(err.value)


def test_canary_traffic_percent_above_100_is_refused_naming_the_field(
    control_plane: ControlPlane, namespace: str
) -> None:
    message = _bad(control_plane, namespace, "  canaryTrafficPercent: 150\n")
    assert "spec.canaryTrafficPercent" in message and "100" in message
    assert control_plane.get("ps", "bad", namespace) is None


@pytest.mark.parametrize(
    ("spec_yaml", "field"),
    [
        ("  service: {minScale: 3, maxScale: 2}\n", "spec.service.minScale"),
        ("  service: {minScale: -1}\n", "spec.service.minScale"),
        ("  service: {metric: latency}\n", "spec.service.metric"),
        ("  service: {autoscaler: magic}\n", "spec.service.autoscaler"),
        ("  backend: kuscia\n", "spec.kuscia"),
    ],
)
def test_invalid_fields_are_refused_at_apply_time(
    control_plane: ControlPlane, namespace: str, spec_yaml: str, field: str
) -> None:
    assert field in _bad(control_plane, namespace, spec_yaml)


def test_port_out_of_range_is_refused(control_plane: ControlPlane, namespace: str) -> None:
    manifest = (
        "apiVersion: elasticserving.paddlepaddle.org/v1\nkind: PaddleService\nmetadata: {name: bad}\n"
        "spec:\n  default: {containerImage: img, tag: v1, port: 70000}\n"
    )
    with pytest.raises(ControlPlaneError) as err:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    assert "spec.default.port" in str(err.value)


def test_operator_writes_observed_generation_and_ready(
    control_plane: ControlPlane, namespace: str, operator_rbac: None, tmp_path: Path
) -> None:
    with OperatorProcess(control_plane, tmp_path / "operator.log", args=["--namespace", namespace]):
        control_plane.kubectl("apply", "-n", namespace, "-f", str(FIXTURES / "elasticserving" / "lac.yaml"))

        def status() -> dict | None:
            obj = control_plane.get("ps", "paddleservice-lac", namespace) or {}
            st = obj.get("status") or {}
            return st if st.get("observedGeneration") == obj["metadata"]["generation"] else None

        st = wait_for(status, timeout=60, what="status.observedGeneration")
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["status"] in ("Unknown", "True")
        assert ready["observedGeneration"] == 1 and ready["reason"]
        assert control_plane.get("ksvc", "paddleservice-lac", namespace) is not None
