"""PaddleService on Knative, end to end: the real operator, the real API server, Knative Serving's real controller,
webhook and autoscaler, and pods that kube-scheduler places on kwok's fake Node.

Each test drives one transition users care about and checks what they would check: the Knative Service the
operator wrote, the revisions, Route and pods Knative made of it, and the PaddleService status (`kubectl get ps`),
which must say what Knative says.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from paddle_kuscia.builders.compare import first_difference
from paddle_kuscia.builders.knative import Owner, build_knative_service
from paddle_kuscia.models.paddleservice import PaddleService
from support.control_plane import ROOT, ControlPlane, wait_for
from support.knative import CRASH_TAG, NODE, Knative
from support.operator import OperatorProcess

IMAGE = {"containerImage": "registry.example.com/paddle/serving", "tag": "v1", "port": 9292}


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane,
    operator_rbac: None,
    knative: Knative,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("knative-operator") / "operator.log"
    with OperatorProcess(control_plane, log, args=["--namespace", "kn-*"]) as proc:
        yield proc


@pytest.fixture
def ns(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[str]:
    name = control_plane.create_namespace("kn")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def paddleservice(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"default": dict(IMAGE)}
    body.update(spec)
    return {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": name},
        "spec": body,
    }


def get(cp: ControlPlane, kind: str, name: str, ns: str) -> dict[str, Any]:
    obj = cp.get(kind, name, ns)
    assert obj is not None, f"{kind}/{name} not found"
    return obj


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def wait_ready(
    cp: ControlPlane, name: str, ns: str, status: str = "True", timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cp, "ps", name, ns)
        ready = condition(obj, "Ready")
        current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        if (
            current
            and ready
            and ready["status"] == status
            and ready["observedGeneration"] == obj["metadata"]["generation"]
        ):
            return obj
        return None

    return wait_for(check, timeout=timeout, what=f"ps/{name} Ready={status}")


def traffic(obj: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {
        t["tag"]: (t["revisionName"], t["percent"]) for t in (obj.get("status") or {}).get("traffic") or []
    }


def revision_ready(cp: ControlPlane, ns: str, name: str) -> bool:
    rev = cp.get("revisions.serving.knative.dev", name, ns)
    return bool(rev and condition(rev, "Ready") and condition(rev, "Ready")["status"] == "True")


def watch_ksvc(cp: ControlPlane, ns: str, name: str, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """Poll the Knative Service spec until `until()` holds, recording every distinct spec seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ksvc = cp.get("ksvc", name, ns)
        if ksvc is not None:
            spec = ksvc["spec"]
            routed = {t["revisionName"] for t in spec.get("traffic") or [] if t.get("percent")}
            snapshot = {
                "template": spec["template"]["metadata"]["name"],
                "traffic": spec.get("traffic"),
                "ready": {r: revision_ready(cp, ns, r) for r in routed},
            }
            if (
                not seen
                or seen[-1]["template"] != snapshot["template"]
                or seen[-1]["traffic"] != snapshot["traffic"]
            ):
                seen.append(snapshot)
        if until():
            return seen
        time.sleep(0.05)
    raise AssertionError(f"timed out; ksvc states seen: {json.dumps(seen, indent=1)}")


def test_create_serves_the_default_revision(control_plane: ControlPlane, ns: str) -> None:
    control_plane.apply(paddleservice("svc"), ns)
    obj = wait_ready(control_plane, "svc", ns)
    status = obj["status"]
    ksvc = get(control_plane, "ksvc", "svc", ns)
    assert ksvc["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert status["url"] == ksvc["status"]["url"] and status["address"]["url"].endswith(".svc.cluster.local")
    assert traffic(obj) == {"default": (status["default"]["name"], 100)}
    assert "canary" not in status and condition(obj, "CanaryEndpointReady") is None
    for ctype in ("DefaultEndpointReady", "RoutesReady"):
        assert condition(obj, ctype)["status"] == "True"
    assert status["replicas"] >= 0
    # The operator writes status, never the user's spec, labels or annotations.
    assert obj["spec"] == paddleservice("svc")["spec"]
    annotations = set(obj["metadata"].get("annotations") or {}) - {
        "kubectl.kubernetes.io/last-applied-configuration"
    }
    assert not annotations and not obj["metadata"].get("labels") and not obj["metadata"].get("finalizers")


def test_updating_the_default_keeps_the_old_revision_serving_until_the_new_is_ready(
    control_plane: ControlPlane, ns: str
) -> None:
    control_plane.apply(paddleservice("svc"), ns)
    old = wait_ready(control_plane, "svc", ns)["status"]["default"]["name"]
    control_plane.apply(paddleservice("svc", default={**IMAGE, "tag": "v2"}), ns)

    def switched() -> bool:
        obj = get(control_plane, "ps", "svc", ns)
        return (obj["status"].get("default") or {}).get("name") not in (None, old) and (
            condition(obj, "Ready") or {}
        ).get("status") == "True"

    seen = watch_ksvc(control_plane, ns, "svc", switched)
    new = get(control_plane, "ps", "svc", ns)["status"]["default"]["name"]
    assert new != old
    # Every traffic target the operator ever wrote was a ready revision: no moment without a server.
    for state in seen:
        assert all(state["ready"].values()), f"traffic pointed at a revision that was not ready: {state}"
    assert any(s["template"] == new and s["traffic"][0]["revisionName"] == old for s in seen), seen
    # The old revision still exists: the operator never deletes revisions.
    assert control_plane.get("revisions.serving.knative.dev", old, ns) is not None


def assert_status_is_knatives(cp: ControlPlane, knative: Knative, obj: dict[str, Any], ns: str) -> None:
    """The PaddleService says what Knative says: traffic (tags, revisions, percents, tag URLs) and URL."""
    name = obj["metadata"]["name"]
    keys = ("tag", "revisionName", "percent", "url")
    route = [{k: t.get(k) for k in keys} for t in knative.route_traffic(ns, name)]
    assert [{k: t.get(k) for k in keys} for t in obj["status"]["traffic"]] == route
    ksvc = get(cp, "ksvc", name, ns)
    assert (
        obj["status"]["url"]
        == ksvc["status"]["url"]
        == get(cp, "routes.serving.knative.dev", name, ns)["status"]["url"]
    )
    assert obj["status"]["latestReadyRevision"] == ksvc["status"]["latestReadyRevisionName"]


def test_canary_ten_fifty_promote_remove(control_plane: ControlPlane, ns: str, knative: Knative) -> None:
    canary = {**IMAGE, "containerImage": "registry.example.com/paddle/serving-canary"}
    control_plane.apply(paddleservice("svc"), ns)
    default_rev = wait_ready(control_plane, "svc", ns)["status"]["default"]["name"]

    control_plane.apply(paddleservice("svc", canary=canary, canaryTrafficPercent=10), ns)
    obj = wait_ready(control_plane, "svc", ns)
    canary_rev = obj["status"]["canary"]["name"]
    assert traffic(obj) == {"default": (default_rev, 90), "canary": (canary_rev, 10)}
    assert condition(obj, "CanaryEndpointReady")["status"] == "True"
    tag_urls = {t["tag"]: t["url"] for t in obj["status"]["traffic"]}
    assert tag_urls["canary"].startswith("http://canary-svc.") and tag_urls["default"].startswith(
        "http://default-svc."
    )
    assert_status_is_knatives(control_plane, knative, obj, ns)

    control_plane.apply(paddleservice("svc", canary=canary, canaryTrafficPercent=50), ns)
    obj = wait_ready(control_plane, "svc", ns)
    assert traffic(obj) == {"default": (default_rev, 50), "canary": (canary_rev, 50)}
    assert_status_is_knatives(control_plane, knative, obj, ns)

    # Promote: the canary becomes the default. Its revision is reused, not rebuilt.
    revisions_before = {
        r["metadata"]["name"] for r in control_plane.list("revisions.serving.knative.dev", ns)
    }
    control_plane.apply(paddleservice("svc", default=canary), ns)
    obj = wait_ready(control_plane, "svc", ns)
    assert traffic(obj) == {"default": (canary_rev, 100)}
    revisions_after = {r["metadata"]["name"] for r in control_plane.list("revisions.serving.knative.dev", ns)}
    assert revisions_after == revisions_before, "promotion must not build a new revision"
    assert condition(obj, "CanaryEndpointReady") is None
    assert_status_is_knatives(control_plane, knative, obj, ns)

    # Back to the original default, then drop the canary entirely.
    control_plane.apply(paddleservice("svc", canary=canary, canaryTrafficPercent=20), ns)
    obj = wait_ready(control_plane, "svc", ns)
    control_plane.apply(paddleservice("svc"), ns)
    obj = wait_ready(control_plane, "svc", ns)
    assert list(traffic(obj)) == ["default"] and traffic(obj)["default"][1] == 100


def test_rollback_to_zero_percent_keeps_default_serving(control_plane: ControlPlane, ns: str) -> None:
    canary = {**IMAGE, "tag": "v2"}
    control_plane.apply(paddleservice("svc", canary=canary, canaryTrafficPercent=30), ns)
    obj = wait_ready(control_plane, "svc", ns)
    default_rev, canary_rev = obj["status"]["default"]["name"], obj["status"]["canary"]["name"]
    control_plane.apply(paddleservice("svc", canary=canary, canaryTrafficPercent=0), ns)
    obj = wait_ready(control_plane, "svc", ns)
    assert traffic(obj) == {"default": (default_rev, 100), "canary": (canary_rev, 0)}


def test_failing_canary_surfaces_the_reason_and_default_keeps_serving(
    control_plane: ControlPlane, ns: str, knative: Knative
) -> None:
    control_plane.apply(paddleservice("svc"), ns)
    default_rev = wait_ready(control_plane, "svc", ns)["status"]["default"]["name"]
    # The canary's container exits at start (kwok reports it crashing); Knative fails the revision itself.
    control_plane.apply(paddleservice("svc", canary={**IMAGE, "tag": CRASH_TAG}, canaryTrafficPercent=50), ns)
    obj = wait_ready(control_plane, "svc", ns, status="False", timeout=120)
    ready, canary_cond = condition(obj, "Ready"), condition(obj, "CanaryEndpointReady")
    assert canary_cond["status"] == "False" and ready["reason"] == canary_cond["reason"] == "ExitCode1"
    canary_rev = get(control_plane, "ksvc", "svc", ns)["spec"]["template"]["metadata"]["name"]
    revision = get(control_plane, "revisions.serving.knative.dev", canary_rev, ns)
    assert condition(revision, "Ready")["status"] == "False"
    assert condition(revision, "Ready")["reason"] == "ExitCode1"
    assert canary_rev in canary_cond["message"]
    assert traffic(obj) == {"default": (default_rev, 100)}
    assert knative.route_traffic(ns, "svc")[0]["revisionName"] == default_rev
    assert condition(obj, "DefaultEndpointReady")["status"] == "True"
    events = json.loads(control_plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert any(e["type"] == "Warning" and e["reason"] == ready["reason"] for e in events)


def test_status_follows_knative_without_a_spec_change(
    control_plane: ControlPlane, ns: str, knative: Knative
) -> None:
    control_plane.apply(paddleservice("svc", service={"minScale": 1}), ns)
    obj = wait_ready(control_plane, "svc", ns)
    generation = obj["metadata"]["generation"]
    # The model server of the serving revision crashes (OOM): Knative fails the revision, we follow.
    knative.crash_revision(ns, obj["status"]["default"]["name"], "OOMKilled")
    obj = wait_ready(control_plane, "svc", ns, status="False", timeout=120)
    assert obj["metadata"]["generation"] == generation
    default = condition(obj, "DefaultEndpointReady")
    assert default["reason"] == "ExitCode1" and "OOMKilled" in default["message"]


def test_scale_to_zero_and_autoscaling_annotations(
    control_plane: ControlPlane, ns: str, knative: Knative
) -> None:
    control_plane.apply(
        paddleservice(
            "svc",
            service={
                "minScale": 0,
                "maxScale": 5,
                "target": 10,
                "containerConcurrency": 4,
                "window": "30s",
                "initialScale": 0,
                "scaleDownDelay": "15s",
                "timeoutSeconds": 120,
            },
        ),
        ns,
    )
    obj = wait_ready(control_plane, "svc", ns)
    template = get(control_plane, "ksvc", "svc", ns)["spec"]["template"]
    ann = template["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/min-scale"] == "0" and ann["autoscaling.knative.dev/max-scale"] == "5"
    assert ann["autoscaling.knative.dev/target"] == "10" and ann["autoscaling.knative.dev/window"] == "30s"
    assert ann["autoscaling.knative.dev/initial-scale"] == "0"
    assert ann["autoscaling.knative.dev/scale-down-delay"] == "15s"
    assert template["spec"]["containerConcurrency"] == 4 and template["spec"]["timeoutSeconds"] == 120
    # `initialScale: 0`: Knative reports the revision Ready, and it runs no pod until a request comes.
    revision = obj["status"]["default"]["name"]
    assert (
        condition(get(control_plane, "revisions.serving.knative.dev", revision, ns), "Ready")["status"]
        == "True"
    )
    deployment = get(control_plane, "deployment", f"{revision}-deployment", ns)
    assert deployment["spec"]["replicas"] == 0 and knative.pods(ns, revision) == []
    assert obj["status"]["replicas"] == 0


@pytest.mark.parametrize(
    ("accelerator", "resource"),
    [
        ({"type": "nvidia-gpu", "count": 1}, "nvidia.com/gpu"),
        ({"type": "kunlun-xpu", "count": 2}, "baidu.com/xpu"),
        ({"type": "kunlun-xpu", "count": 1, "resourceName": "kunlunxin.com/xpu"}, "kunlunxin.com/xpu"),
    ],
)
def test_accelerators_reach_the_pod_that_runs_on_the_node(
    control_plane: ControlPlane, ns: str, knative: Knative, accelerator: dict[str, Any], resource: str
) -> None:
    control_plane.apply(
        paddleservice("svc", accelerator=accelerator, nodeSelector={"type": "kwok"}),
        ns,
    )
    obj = wait_ready(control_plane, "svc", ns)
    template = get(control_plane, "ksvc", "svc", ns)["spec"]["template"]["spec"]
    assert {"key": resource, "operator": "Exists", "effect": "NoSchedule"} in template["tolerations"]
    assert template["nodeSelector"] == {"type": "kwok"}
    # Knative's Deployment made a pod with the request, and kube-scheduler placed it on the Node that has it.
    pods = wait_for(
        lambda: knative.running_pods(ns, obj["status"]["default"]["name"]), timeout=60, what="a running pod"
    )
    pod = pods[0]
    res = next(c for c in pod["spec"]["containers"] if c["name"] == "paddleserving")["resources"]
    assert res["requests"][resource] == res["limits"][resource] == str(accelerator["count"])
    assert pod["spec"]["nodeName"] == NODE
    node = get(control_plane, "node", NODE, "")
    assert int(node["status"]["allocatable"][resource]) >= accelerator["count"]
    events = json.loads(control_plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "SlowColdStart" and resource in e["message"] for e in events)


def test_drift_is_repaired(control_plane: ControlPlane, ns: str) -> None:
    control_plane.apply(paddleservice("svc", canary={**IMAGE, "tag": "v2"}, canaryTrafficPercent=20), ns)
    wait_ready(control_plane, "svc", ns)
    wanted = get(control_plane, "ksvc", "svc", ns)["spec"]["traffic"]
    hacked = copy.deepcopy(wanted)
    hacked[0]["percent"], hacked[1]["percent"] = 100, 0
    control_plane.kubectl(
        "patch", "ksvc", "svc", "-n", ns, "--type=merge", "-p", json.dumps({"spec": {"traffic": hacked}})
    )
    wait_for(
        lambda: get(control_plane, "ksvc", "svc", ns)["spec"]["traffic"] == wanted,
        timeout=30,
        what="traffic restored",
    )
    uid = get(control_plane, "ksvc", "svc", ns)["metadata"]["uid"]
    control_plane.kubectl("delete", "ksvc", "svc", "-n", ns)
    wait_for(
        lambda: (k := control_plane.get("ksvc", "svc", ns)) is not None and k["metadata"]["uid"] != uid,
        timeout=30,
        what="Knative Service re-created",
    )
    wait_ready(control_plane, "svc", ns)


def test_invalid_spec_is_refused_with_a_reason_an_event_and_no_hot_loop(
    control_plane: ControlPlane, ns: str, operator: OperatorProcess
) -> None:
    control_plane.apply(
        paddleservice("svc", resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}), ns
    )
    obj = wait_ready(control_plane, "svc", ns, status="False")
    ready = condition(obj, "Ready")
    assert ready["reason"] == "InvalidSpec" and "spec.resources.limits.cpu" in ready["message"]
    events = json.loads(control_plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert any(e["type"] == "Warning" and e["reason"] == "InvalidSpec" for e in events)
    assert control_plane.get("ksvc", "svc", ns) is None
    # No hot loop: the operator does not write to the object again while nothing changes.
    mark = control_plane.audit_line_count()
    time.sleep(5)  # an observation window, not synchronisation: we count what happens inside it
    assert control_plane.operator_writes(mark, ns) == []
    # Fixing the spec recovers.
    control_plane.apply(paddleservice("svc"), ns)
    wait_ready(control_plane, "svc", ns)


def test_kubectl_wait_returns_only_for_the_current_generation(control_plane: ControlPlane, ns: str) -> None:
    control_plane.apply(paddleservice("svc"), ns)
    wait_ready(control_plane, "svc", ns)
    control_plane.apply(paddleservice("svc", default={**IMAGE, "tag": "v3"}), ns)
    proc = control_plane.kubectl("wait", "--for=condition=Ready", "ps/svc", "-n", ns, "--timeout=60s")
    assert proc.returncode == 0
    obj = get(control_plane, "ps", "svc", ns)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
    ksvc = get(control_plane, "ksvc", "svc", ns)
    assert traffic(obj)["default"][0] == ksvc["spec"]["template"]["metadata"]["name"]


def test_delete_collects_the_knative_service(control_plane: ControlPlane, ns: str) -> None:
    control_plane.apply(paddleservice("svc"), ns)
    wait_ready(control_plane, "svc", ns)
    control_plane.kubectl("delete", "ps", "svc", "-n", ns)
    # The garbage collector re-discovers CRD kinds every 30 s, so allow for one resync.
    wait_for(lambda: control_plane.get("ksvc", "svc", ns) is None, timeout=75, what="ksvc garbage-collected")


def reconciles(operator: OperatorProcess, kind: str = "PaddleService") -> float:
    prefix = f'paddle_kuscia_reconciles_total{{kind="{kind}"'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in operator.metrics().splitlines() if line.startswith(prefix)
    )


def test_no_writes_after_convergence_nor_on_restart(
    control_plane: ControlPlane, ns: str, operator: OperatorProcess
) -> None:
    # Values Knative's webhook stores in another form than a user writes them (cpu 0.2 becomes 200m) must not
    # look like drift: the operator compares by value.
    resources = {"requests": {"cpu": "0.2", "memory": "0.5Gi"}, "limits": {"cpu": 1, "memory": "1Gi"}}
    for i in range(3):
        control_plane.apply(
            paddleservice(
                f"svc{i}", canary={**IMAGE, "tag": "v2"}, canaryTrafficPercent=10 * i, resources=resources
            ),
            ns,
        )
    for i in range(3):
        wait_ready(control_plane, f"svc{i}", ns)
    # Knative keeps updating its own objects for a while after Ready; wait until our statuses stop moving.
    versions: list[list[str]] = []

    def settled() -> bool:
        versions.append([o["metadata"]["resourceVersion"] for o in control_plane.list("ps", ns)])
        return len(versions) > 25 and all(v == versions[-1] for v in versions[-25:])

    wait_for(settled, timeout=60, what="statuses to stop changing")
    mark = control_plane.audit_line_count()
    time.sleep(60)  # the 60 s observation window: we count what happens inside it, nothing waits on it
    writes = control_plane.operator_writes(mark)
    assert writes == [], f"operator wrote while idle: {[(e['verb'], e['requestURI']) for e in writes]}"

    # A new operator process over converged objects reads everything and writes nothing.
    mark = control_plane.audit_line_count()
    operator.stop()
    operator.start()
    wait_for(lambda: reconciles(operator) >= 3, timeout=60, what="the restarted operator to reconcile")
    time.sleep(10)  # observation window after the restart's reconciles
    writes = control_plane.operator_writes(mark, ns)
    assert writes == [], f"operator wrote on restart: {[(e['verb'], e['requestURI']) for e in writes]}"


def test_text_outside_the_basic_multilingual_plane_reaches_knative(
    control_plane: ControlPlane, ns: str
) -> None:
    arg = "echo '模型服务 🚀 ready' && exec paddle_serving_server --port 9292"
    control_plane.apply(paddleservice("svc", default={**IMAGE, "arg": arg}), ns)
    obj = wait_ready(control_plane, "svc", ns)
    container = get(control_plane, "ksvc", "svc", ns)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [arg]
    assert condition(obj, "Ready")["reason"] == "Serving"


def test_every_field_the_operator_sets_reads_back_from_knative_as_sent(
    control_plane: ControlPlane, ns: str
) -> None:
    """Knative's defaulting webhook rewrites what it considers non-canonical; whatever the operator sends must
    already be in the form Knative stores, or be compared by value, or each resync would re-apply."""
    spec = PaddleService.model_validate(
        paddleservice(
            "wide",
            canary={**IMAGE, "tag": "v2", "arg": "exec serve --port 9292"},
            canaryTrafficPercent=25,
            workingDir="/srv",
            resources={
                "requests": {"cpu": "0.25", "memory": "0.5Gi"},
                "limits": {"cpu": "1500m", "memory": "1Gi"},
            },
            accelerator={"type": "nvidia-gpu", "count": 1},
            nodeSelector={"type": "kwok"},
            tolerations=[
                {"key": "dedicated", "operator": "Equal", "value": "serving", "effect": "NoSchedule"}
            ],
            affinity={
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 1,
                            "preference": {
                                "matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]
                            },
                        }
                    ]
                }
            },
            volumes=[
                {"name": "scratch", "emptyDir": {"sizeLimit": "0.5Gi"}},
                {"name": "conf", "configMap": {"name": "serving-conf"}},
            ],
            volumeMounts=[
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "conf", "mountPath": "/etc/serving", "readOnly": False},
            ],
            service={
                "minScale": 1,
                "maxScale": 4,
                "target": 8,
                "window": "90s",
                "containerConcurrency": 2,
                "timeoutSeconds": 120,
                "scaleDownDelay": "30s",
                "rolloutDuration": "60",
            },
        )
    ).spec
    ksvc, _ = build_knative_service(Owner("wide", ns, "uid-wide", {}), spec)
    del ksvc["metadata"]["ownerReferences"]
    control_plane.apply(ksvc, ns)
    live = get(control_plane, "ksvc", "wide", ns)
    assert first_difference(ksvc, live) is None, first_difference(ksvc, live)


@pytest.mark.parametrize("name", ["sample_service", "lac"])
def test_elasticserving_manual_samples_render_to_services_knative_accepts(
    control_plane: ControlPlane, ns: str, name: str
) -> None:
    source = ROOT / "tests" / "fixtures" / "elasticserving" / f"{name}.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "paddle_kuscia.cli", "render", "-f", str(source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ksvc = yaml.safe_load(out)
    ksvc["metadata"]["namespace"] = ns
    del ksvc["metadata"]["ownerReferences"]
    control_plane.apply(ksvc, ns)  # Knative's CRD schema and its webhooks (defaulting, validation) run here
    live = get(control_plane, "ksvc", ksvc["metadata"]["name"], ns)
    # Whatever Knative's defaulting webhook stored, every field the operator sets reads back as it sent it
    # (by value): otherwise the operator would see drift and re-apply on every resync.
    assert first_difference(ksvc, live) is None, first_difference(ksvc, live)
    assert live["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] in (
        "0",
        "1",
    )
    tags = [t["tag"] for t in live["spec"]["traffic"]]
    assert tags == (["default", "canary"] if name == "sample_service" else ["default"])
