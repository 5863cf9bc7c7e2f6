"""Knative Serving's real control plane in the test world, and the few ways tests drive it.

`hack/control-plane.sh up` starts it next to the API server (`hack/knative.sh`): Knative's webhook, controller
and autoscaler, kube-scheduler, and kwok, which runs the pods of Knative's Deployments on the fake Node
`kwok-node-0`. Faults come from where they come in a real cluster: a container that crashes (kwok's `pod-crash`
stage in `hack/kwok-stages.yaml`), not from a simulator writing Knative's status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from support.control_plane import ControlPlane, wait_for

NODE = "kwok-node-0"
CRASH_ANNOTATION = "paddle-kuscia.io/kwok-crash"
CRASH_TAG = "crash-fail"  # an image with this tag crashes at start (hack/kwok-stages.yaml)
REVISION_LABEL = "serving.knative.dev/revision"


@dataclass
class Knative:
    plane: ControlPlane

    def pods(self, namespace: str, revision: str) -> list[dict[str, Any]]:
        out = self.plane.kubectl(
            "get", "pods", "-n", namespace, "-l", f"{REVISION_LABEL}={revision}", "-o", "json"
        )
        return json.loads(out.stdout)["items"]

    def running_pods(self, namespace: str, revision: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods(namespace, revision)
            if p["spec"].get("nodeName") == NODE
            and (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        ]

    def crash_revision(self, namespace: str, revision: str, message: str) -> None:
        """Make the containers of a revision's pods exit with `message`, as a crashing model server would."""
        pods = wait_for(
            lambda: self.running_pods(namespace, revision), timeout=60, what=f"running pods of {revision}"
        )
        for pod in pods:
            self.plane.kubectl(
                "annotate", "pod", "-n", namespace, pod["metadata"]["name"], f"{CRASH_ANNOTATION}={message}"
            )

    def route_traffic(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """`kubectl get route NAME -o jsonpath='{.status.traffic}'`."""
        route = self.plane.get("routes.serving.knative.dev", name, namespace)
        return ((route or {}).get("status") or {}).get("traffic") or []
