"""Two operator instances with leader election: only the leader acts; when it dies, the other takes over."""

from __future__ import annotations

from pathlib import Path

from support.control_plane import ControlPlane, wait_for
from support.knative import Knative
from support.operator import OperatorProcess


def paddleservice(name: str, tag: str) -> dict:
    return {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": name},
        "spec": {
            "default": {"containerImage": "registry.example.com/paddle/serving", "tag": tag, "port": 9292}
        },
    }


def ready_generation(cp: ControlPlane, name: str, ns: str) -> int | None:
    obj = cp.get("ps", name, ns) or {}
    cond = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    if cond and cond["status"] == "True" and cond["observedGeneration"] == obj["metadata"]["generation"]:
        return cond["observedGeneration"]
    return None


def writers(cp: ControlPlane, since: int, ns: str) -> set[str]:
    """Process ids (from the user agent) of the operator instances that wrote into `ns`."""
    return {e["userAgent"].rsplit("pid ", 1)[-1].rstrip(")") for e in cp.operator_writes(since, ns)}


def test_only_the_leader_acts_and_the_standby_takes_over(
    control_plane: ControlPlane, operator_rbac: None, knative: Knative, tmp_path: Path
) -> None:
    ns = control_plane.create_namespace("ha")
    args = ["--namespace", "ha-*", "--leader-elect"]
    first = OperatorProcess(control_plane, tmp_path / "first.log", args=args).start()
    wait_for(lambda: "Became the leader" in first.log(), timeout=30, what="the first instance to lead")
    second = OperatorProcess(control_plane, tmp_path / "second.log", args=args).start()
    try:
        wait_for(
            lambda: "Waiting to become the leader" in second.log(), timeout=30, what="the standby to wait"
        )
        mark = control_plane.audit_line_count()
        control_plane.apply(paddleservice("svc", "v1"), ns)
        wait_for(
            lambda: ready_generation(control_plane, "svc", ns) == 1, timeout=60, what="Ready under the leader"
        )
        assert writers(control_plane, mark, ns) == {str(first.proc.pid)}  # type: ignore[union-attr]
        assert "Applied Knative Service" not in second.log()

        first.kill()  # a crash: the lease is not released, it has to expire
        wait_for(lambda: "Became the leader" in second.log(), timeout=60, what="the standby to take over")
        mark = control_plane.audit_line_count()
        control_plane.apply(paddleservice("svc", "v2"), ns)
        wait_for(
            lambda: ready_generation(control_plane, "svc", ns) == 2,
            timeout=60,
            what="Ready under the new leader",
        )
        assert writers(control_plane, mark, ns) == {str(second.proc.pid)}  # type: ignore[union-attr]
    finally:
        first.stop()
        second.stop()
