"""`paddle-kuscia describe` against a real API server, with the user's (admin) kubeconfig.

The Knative objects are written directly (spec with kubectl, status through the /status subresource), on a
control plane of this module's own that has Knative's CRDs but none of its processes, so no Knative controller
rewrites them; the PaddleService's status is written the same way, as the operator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from paddle_kuscia.describe.read import USER_AGENT
from paddle_kuscia.describe.tree import wanted_revisions
from support.control_plane import ControlPlane

NAME = "resnet"
IMAGE = "registry.example.com/resnet"
NOW = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Knative's CRDs without Knative's controllers (they would rewrite the objects this test writes), never the
    session's shared control plane."""
    plane = ControlPlane.start(tmp_path_factory.mktemp("describe-plane"), knative=False)
    try:
        yield plane
    finally:
        plane.stop()


def _cond(ctype: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW}


def _set_status(
    plane: ControlPlane, resource: str, namespace: str, name: str, status: dict[str, Any]
) -> None:
    plane.kubectl(
        "patch",
        resource,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def _traffic(default: str, canary: str | None, namespace: str) -> list[dict[str, Any]]:
    out = [
        {
            "tag": "default",
            "revisionName": default,
            "percent": 80 if canary else 100,
            "url": f"http://default-{NAME}.{namespace}.example.com",
        }
    ]
    if canary:
        out.append(
            {
                "tag": "canary",
                "revisionName": canary,
                "percent": 20,
                "url": f"http://canary-{NAME}.{namespace}.example.com",
            }
        )
    return out


def _describe(plane: ControlPlane, namespace: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paddle_kuscia.cli", "describe", "ps", NAME, "-n", namespace, *extra],
        capture_output=True,
        text=True,
        env=plane.env(),
        timeout=120,
    )


def _knative_objects(plane: ControlPlane, namespace: str, uid: str, default: str, canary: str) -> None:
    labels = {"serving.knative.dev/service": NAME, "serving.knative.dev/configuration": NAME}
    for rev in (default, canary):
        plane.apply(
            {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Revision",
                "metadata": {"name": rev, "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"image": f"{IMAGE}:v1"}]},
            }
        )
    traffic = [
        {k: v for k, v in t.items() if k != "url"} | {"latestRevision": False}
        for t in _traffic(default, canary, namespace)
    ]
    owner = {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "name": NAME,
        "uid": uid,
        "controller": True,
    }
    plane.apply(
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": namespace, "ownerReferences": [owner]},
            "spec": {
                "template": {
                    "metadata": {"name": canary},
                    "spec": {"containers": [{"image": f"{IMAGE}:v2"}]},
                },
                "traffic": traffic,
            },
        }
    )
    plane.apply(
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Route",
            "metadata": {
                "name": NAME,
                "namespace": namespace,
                "labels": {"serving.knative.dev/service": NAME},
            },
            "spec": {"traffic": traffic},
        }
    )


def test_describe_shows_the_canary_split_then_points_at_a_failing_canary_revision(
    control_plane: ControlPlane, namespace: str
) -> None:
    ps = {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "default": {"containerImage": IMAGE, "tag": "v1", "port": 9292},
            "canary": {"containerImage": IMAGE, "tag": "v2", "port": 9292},
            "canaryTrafficPercent": 20,
        },
    }
    control_plane.apply(ps)
    created = control_plane.get("paddleservice", NAME, namespace)
    assert created is not None
    names = wanted_revisions(created)
    default, canary = names["default"], names["canary"]
    _knative_objects(control_plane, namespace, created["metadata"]["uid"], default, canary)
    audit_start = control_plane.audit_line_count()

    # A serving 80/20 split.
    split = _traffic(default, canary, namespace)
    url = f"http://{NAME}.{namespace}.example.com"
    for rev, replicas in ((default, 2), (canary, 1)):
        _set_status(
            control_plane,
            "revisions.serving.knative.dev",
            namespace,
            rev,
            {"conditions": [_cond("Ready", "True", "")], "actualReplicas": replicas},
        )
    ready = [
        _cond("Ready", "True", ""),
        _cond("RoutesReady", "True", ""),
        _cond("ConfigurationsReady", "True", ""),
    ]
    _set_status(
        control_plane,
        "services.serving.knative.dev",
        namespace,
        NAME,
        {"conditions": ready, "url": url, "traffic": split},
    )
    _set_status(
        control_plane,
        "routes.serving.knative.dev",
        namespace,
        NAME,
        {"conditions": [_cond("Ready", "True", "")], "url": url, "traffic": split},
    )
    _set_status(
        control_plane,
        "paddleservice",
        namespace,
        NAME,
        {
            "observedGeneration": 1,
            "url": url,
            "traffic": split,
            "replicas": 3,
            "default": {"name": default},
            "canary": {"name": canary},
            "conditions": [
                _cond("Ready", "True", "Serving", "All traffic is served by ready revisions."),
                _cond("DefaultEndpointReady", "True", "RevisionReady"),
                _cond("CanaryEndpointReady", "True", "RevisionReady"),
                _cond("RoutesReady", "True", "TrafficAssigned"),
            ],
        },
    )

    result = _describe(control_plane, namespace)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"Traffic: default 80% -> {default}" in text and f"Traffic: canary 20% -> {canary}" in text
    assert "\033[" not in text  # not a terminal: plain text
    lines = {line.split()[2]: line for line in text.splitlines() if "Revision/" in line}
    assert (
        f"80% traffic, tag default http://default-{NAME}.{namespace}.example.com, replicas 2"
        in lines[f"Revision/{default}"]
    )
    assert (
        f"20% traffic, tag canary http://canary-{NAME}.{namespace}.example.com, replicas 1"
        in lines[f"Revision/{canary}"]
    )
    assert f"Route/{NAME}  Ready=True, default=80%, canary=20%" in text
    assert "Nothing is wrong." in text

    # The canary's revision fails; the operator moved all traffic to the default.
    split = _traffic(default, None, namespace)
    _set_status(
        control_plane,
        "revisions.serving.knative.dev",
        namespace,
        canary,
        {
            "conditions": [_cond("Ready", "False", "ContainerMissing", f"Unable to fetch image {IMAGE}:v2")],
            "actualReplicas": 0,
        },
    )
    _set_status(control_plane, "services.serving.knative.dev", namespace, NAME, {"traffic": split})
    _set_status(control_plane, "routes.serving.knative.dev", namespace, NAME, {"traffic": split})
    _set_status(
        control_plane,
        "paddleservice",
        namespace,
        NAME,
        {
            "traffic": split,
            "canary": None,
            "conditions": [
                _cond("Ready", "False", "ContainerMissing", f"CanaryEndpointReady: Revision {canary} failed"),
                _cond("DefaultEndpointReady", "True", "RevisionReady"),
                _cond("CanaryEndpointReady", "False", "ContainerMissing", f"Revision {canary} failed"),
                _cond("RoutesReady", "True", "TrafficAssigned"),
            ],
        },
    )

    result = _describe(control_plane, namespace)
    assert result.returncode == 0, result.stderr
    flagged = [line for line in result.stdout.splitlines() if "<-- first problem" in line]
    assert len(flagged) == 1 and f"Revision/{canary}" in flagged[0] and "ContainerMissing" in flagged[0]
    assert f"Unable to fetch image {IMAGE}:v2" in result.stdout
    assert "canaryTrafficPercent: 0" in result.stdout

    data = json.loads(_describe(control_plane, namespace, "-o", "json").stdout)
    assert data["finding"]["ref"] == f"Revision/{canary}" and data["finding"]["severity"] == "failed"
    revisions = {c["name"]: c for c in data["tree"]["children"][0]["children"] if c["kind"] == "Revision"}
    assert revisions[default]["fields"]["trafficPercent"] == 100
    assert revisions[canary]["fields"]["reason"] == "ContainerMissing"

    # Read-only: the audit log records every write (the status patches above among them), none by describe.
    writes = control_plane.audit_events(audit_start)
    assert any(e.get("userAgent", "").startswith("kubectl") for e in writes)
    assert not [e for e in writes if e.get("userAgent", "").startswith(USER_AGENT)]


def test_describe_says_when_the_object_does_not_exist(control_plane: ControlPlane, namespace: str) -> None:
    result = _describe(control_plane, namespace)
    assert result.returncode == 1
    assert f'PaddleService "{NAME}" not found in namespace "{namespace}"' in result.stderr
