"""The Knative simulator against the real control plane: what an operator can observe of Knative Serving.

Every test writes serving.knative.dev/v1 Services with kubectl into the real kube-apiserver and polls the
Configurations, Revisions and Routes the simulator creates, as an operator would. The simulator is the
session's `knative_sim` fixture (tests/integration/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from support.control_plane import ControlPlane, wait_for
from support.knative_sim import LEASE_NAME, KnativeSimulator

Obj = dict[str, Any]


def ksvc(
    name: str,
    image: str,
    *,
    revision: str | None = None,
    traffic: list[Obj] | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    template_meta: Obj = {}
    if revision:
        template_meta["name"] = revision
    if annotations:
        template_meta["annotations"] = annotations
    spec: Obj = {"template": {"metadata": template_meta, "spec": {"containers": [{"image": image}]}}}
    if traffic is not None:
        spec["traffic"] = traffic
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }


def condition(obj: Obj | None, ctype: str) -> Obj:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return cond
    return {}


def status_of(cp: ControlPlane, kind: str, name: str, ns: str) -> Obj:
    return (cp.get(kind, name, ns) or {}).get("status") or {}


def wait_service(
    cp: ControlPlane,
    name: str,
    ns: str,
    *,
    generation: int,
    ready: str = "True",
    where: Callable[[Obj], bool] = lambda svc: True,
    timeout: float = 20,
) -> Obj:
    """Wait until the Service has observed `generation`, its Ready status is `ready` and `where` holds."""

    def settled() -> Obj | None:
        svc = cp.get("ksvc", name, ns)
        if (
            svc
            and svc["metadata"]["generation"] == generation
            and svc.get("status", {}).get("observedGeneration") == generation
            and condition(svc, "Ready").get("status") == ready
            and where(svc)
        ):
            return svc
        return None

    return wait_for(settled, timeout=timeout, what=f"ksvc {ns}/{name} generation {generation} Ready={ready}")


def serving(revision: str, *, latest: bool = True) -> Callable[[Obj], bool]:
    """A `where` for wait_service: all traffic on `revision`."""
    target = {"revisionName": revision, "percent": 100, "latestRevision": latest}
    return lambda svc: svc["status"].get("traffic") == [target]


def apply_rejected(cp: ControlPlane, obj: Obj, ns: str) -> str:
    """Apply `obj` expecting the API server to refuse it; return kubectl's error output."""
    proc = cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert proc.returncode != 0, f"apply unexpectedly succeeded: {proc.stdout}"
    return proc.stderr


def test_generated_revision_names_children_and_status(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    svc_obj = ksvc("hello", "registry.local/hello:v1", annotations={"autoscaling.knative.dev/min-scale": "1"})
    svc_obj["metadata"]["labels"] = {"app": "hello"}
    cp.apply(svc_obj, namespace)
    svc = wait_service(cp, "hello", namespace, generation=1)

    uid = svc["metadata"]["uid"]
    for kind in ("configuration", "route"):
        child = cp.get(kind, "hello", namespace)
        assert child is not None
        [owner] = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Service", uid, True)
        assert child["metadata"]["labels"]["serving.knative.dev/service"] == "hello"
        assert child["metadata"]["labels"]["app"] == "hello"
    route = cp.get("route", "hello", namespace)
    assert route["spec"]["traffic"] == [
        {"configurationName": "hello", "latestRevision": True, "percent": 100}
    ]

    rev = cp.get("revision", "hello-00001", namespace)
    config = cp.get("configuration", "hello", namespace)
    [owner] = rev["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Configuration", "hello", True)
    labels = rev["metadata"]["labels"]
    assert labels["serving.knative.dev/configuration"] == "hello"
    assert labels["serving.knative.dev/configurationGeneration"] == "1"
    assert labels["serving.knative.dev/service"] == "hello"
    assert rev["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    assert rev["spec"] == config["spec"]["template"]["spec"]
    assert condition(rev, "Ready")["status"] == "True"
    assert condition(rev, "ContainerHealthy")["status"] == "True"
    assert condition(rev, "ResourcesAvailable")["status"] == "True"
    assert rev["status"]["actualReplicas"] == rev["status"]["desiredReplicas"] == 1
    [container] = rev["status"]["containerStatuses"]
    assert container["name"] == "user-container"
    assert container["imageDigest"].startswith("registry.local/hello@sha256:")

    status = svc["status"]
    assert status["url"] == f"http://hello.{namespace}.example.com"
    assert status["address"] == {"url": f"http://hello.{namespace}.svc.cluster.local"}
    assert status["latestCreatedRevisionName"] == status["latestReadyRevisionName"] == "hello-00001"
    assert status["traffic"] == [{"revisionName": "hello-00001", "percent": 100, "latestRevision": True}]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "ConfigurationsReady": "True",
        "RoutesReady": "True",
        "Ready": "True",
    }

    cp.apply(ksvc("hello", "registry.local/hello:v2"), namespace)
    svc = wait_service(cp, "hello", namespace, generation=2, where=serving("hello-00002"))
    assert (
        svc["status"]["latestCreatedRevisionName"]
        == svc["status"]["latestReadyRevisionName"]
        == "hello-00002"
    )
    second = cp.get("revision", "hello-00002", namespace)
    assert second["metadata"]["labels"]["serving.knative.dev/configurationGeneration"] == "2"
    assert cp.get("revision", "hello-00001", namespace) is not None, "the simulator does no revision GC"


def test_observed_generation_follows_every_spec_change(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    for tag in ("v1", "v2", "v3"):
        cp.apply(ksvc("gen", f"registry.local/gen:{tag}"), namespace)
    wait_service(cp, "gen", namespace, generation=3, where=serving("gen-00003"))
    config = cp.get("configuration", "gen", namespace)
    assert config["metadata"]["generation"] == config["status"]["observedGeneration"] == 3
    route = cp.get("route", "gen", namespace)
    assert route["status"]["observedGeneration"] == route["metadata"]["generation"]

    # A label on the Service changes no spec: the generation stays, the label still reaches the children.
    cp.kubectl("label", "ksvc", "gen", "-n", namespace, "team=serving")
    wait_for(
        lambda: cp.get("configuration", "gen", namespace)["metadata"]["labels"].get("team") == "serving",
        what="label copied to the Configuration",
    )
    svc = cp.get("ksvc", "gen", namespace)
    assert svc["metadata"]["generation"] == svc["status"]["observedGeneration"] == 3


def test_byo_revision_names_and_flip_back_reuses_the_revision(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("byo", "registry.local/byo:v1", revision="byo-blue"), namespace)
    wait_service(cp, "byo", namespace, generation=1)
    blue = cp.get("revision", "byo-blue", namespace)

    cp.apply(ksvc("byo", "registry.local/byo:v2", revision="byo-green"), namespace)
    wait_service(cp, "byo", namespace, generation=2, where=serving("byo-green"))

    cp.apply(ksvc("byo", "registry.local/byo:v1", revision="byo-blue"), namespace)
    svc = wait_service(cp, "byo", namespace, generation=3, where=serving("byo-blue"))
    assert (
        svc["status"]["latestCreatedRevisionName"] == svc["status"]["latestReadyRevisionName"] == "byo-blue"
    )
    again = cp.get("revision", "byo-blue", namespace)
    assert again["metadata"]["uid"] == blue["metadata"]["uid"], (
        "the existing revision is reused, not recreated"
    )
    assert again["metadata"]["labels"]["serving.knative.dev/configurationGeneration"] == "1"
    assert sorted(r["metadata"]["name"] for r in cp.list("revisions", namespace)) == ["byo-blue", "byo-green"]


def test_flip_back_to_a_byo_name_with_another_spec_fails(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("flip", "registry.local/flip:v1", revision="flip-blue"), namespace)
    wait_service(cp, "flip", namespace, generation=1)
    cp.apply(ksvc("flip", "registry.local/flip:v2", revision="flip-green"), namespace)
    wait_service(cp, "flip", namespace, generation=2, where=serving("flip-green"))

    cp.apply(ksvc("flip", "registry.local/flip:v3", revision="flip-blue"), namespace)
    svc = wait_service(cp, "flip", namespace, generation=3, ready="False")
    config_ready = condition(cp.get("configuration", "flip", namespace), "Ready")
    assert config_ready["reason"] == "RevisionFailed"
    assert config_ready["message"] == (
        'Revision creation failed with message: revisions.serving.knative.dev "flip-blue" already exists.'
    )
    assert condition(svc, "ConfigurationsReady")["reason"] == "RevisionFailed"
    routes_ready = condition(svc, "RoutesReady")
    assert (routes_ready["status"], routes_ready["reason"]) == ("False", "RevisionNameTaken")
    assert svc["status"]["traffic"] == [
        {"revisionName": "flip-green", "percent": 100, "latestRevision": True}
    ]


def test_traffic_split_with_tags_and_tag_urls(control_plane: ControlPlane, namespace: str, knative_sim):
    cp = control_plane
    cp.apply(ksvc("split", "registry.local/split:v1", revision="split-a"), namespace)
    wait_service(cp, "split", namespace, generation=1)
    traffic = [
        {"revisionName": "split-a", "percent": 80, "tag": "stable"},
        {"latestRevision": True, "percent": 20, "tag": "canary"},
    ]
    cp.apply(ksvc("split", "registry.local/split:v2", revision="split-b", traffic=traffic), namespace)

    expected = [
        {
            "revisionName": "split-a",
            "percent": 80,
            "tag": "stable",
            "latestRevision": False,
            "url": f"http://stable-split.{namespace}.example.com",
        },
        {
            "revisionName": "split-b",
            "percent": 20,
            "tag": "canary",
            "latestRevision": True,
            "url": f"http://canary-split.{namespace}.example.com",
        },
    ]
    svc = wait_service(
        cp, "split", namespace, generation=2, where=lambda s: s["status"].get("traffic") == expected
    )
    assert svc["status"]["url"] == f"http://split.{namespace}.example.com"
    route = cp.get("route", "split", namespace)
    assert route["spec"]["traffic"] == [
        {"revisionName": "split-a", "percent": 80, "tag": "stable", "latestRevision": False},
        {"configurationName": "split", "latestRevision": True, "percent": 20, "tag": "canary"},
    ]
    assert route["status"]["traffic"] == expected


def test_traffic_moves_to_a_pinned_revision_only_once_it_is_ready(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("slow", "registry.local/slow:v1", revision="slow-a"), namespace)
    wait_service(cp, "slow", namespace, generation=1)
    slow_b = ksvc(
        "slow",
        "registry.local/slow:v2",
        revision="slow-b",
        annotations={"simulator.paddle-kuscia.io/ready-delay": "4"},
        traffic=[{"revisionName": "slow-b", "percent": 100}],
    )
    cp.apply(slow_b, namespace)

    def waiting_route() -> Obj | None:
        route = cp.get("route", "slow", namespace)
        assigned = condition(route, "AllTrafficAssigned")
        if route["status"].get("observedGeneration") == 2 and assigned.get("reason") == "RevisionMissing":
            return route
        return None

    route = wait_for(waiting_route, timeout=10, what="the Route waiting for slow-b")
    assigned = condition(route, "AllTrafficAssigned")
    assert (assigned["status"], assigned["message"]) == ("Unknown", 'Revision "slow-b" is not yet ready.')
    assert route["status"]["traffic"] == [{"revisionName": "slow-a", "percent": 100, "latestRevision": True}]
    svc = wait_service(cp, "slow", namespace, generation=2, ready="Unknown")
    assert condition(svc, "RoutesReady").get("reason") == "RevisionMissing"
    assert svc["status"]["traffic"][0]["revisionName"] == "slow-a"

    wait_service(cp, "slow", namespace, generation=2, where=serving("slow-b", latest=False), timeout=20)


def test_failing_revision_keeps_traffic_on_the_last_ready_one(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("crash", "registry.local/crash:v1"), namespace)
    wait_service(cp, "crash", namespace, generation=1)
    cp.apply(ksvc("crash", "registry.local/crash:crashloop-fail"), namespace)

    svc = wait_service(cp, "crash", namespace, generation=2, ready="False")
    ready = condition(svc, "Ready")
    assert ready["reason"] == "RevisionFailed"
    assert ready["message"].startswith('Revision "crash-00002" failed with message: Container failed with:')
    assert svc["status"]["latestCreatedRevisionName"] == "crash-00002"
    assert svc["status"]["latestReadyRevisionName"] == "crash-00001"
    assert svc["status"]["traffic"] == [
        {"revisionName": "crash-00001", "percent": 100, "latestRevision": True}
    ]
    rev = cp.get("revision", "crash-00002", namespace)
    assert (condition(rev, "Ready")["status"], condition(rev, "Ready")["reason"]) == ("False", "ExitCode1")
    assert condition(rev, "ContainerHealthy")["reason"] == "ExitCode1"

    cp.apply(ksvc("crash", "registry.local/crash:v3"), namespace)
    wait_service(cp, "crash", namespace, generation=3, where=serving("crash-00003"))


def test_fail_annotation_fails_the_first_revision(control_plane: ControlPlane, namespace: str, knative_sim):
    cp = control_plane
    annotations = {"simulator.paddle-kuscia.io/fail": "ProgressDeadlineExceeded"}
    cp.apply(ksvc("doomed", "registry.local/doomed:v1", annotations=annotations), namespace)

    svc = wait_service(
        cp,
        "doomed",
        namespace,
        generation=1,
        ready="False",
        where=lambda s: condition(s, "RoutesReady").get("status") == "False",
    )
    rev = cp.get("revision", "doomed-00001", namespace)
    resources = condition(rev, "ResourcesAvailable")
    assert (resources["status"], resources["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert resources["message"] == "Initial scale was never achieved"
    assert rev["status"]["actualReplicas"] == 0
    assert "latestReadyRevisionName" not in svc["status"]
    assigned = condition(cp.get("route", "doomed", namespace), "AllTrafficAssigned")
    assert assigned["reason"] == "RevisionMissing"
    assert assigned["message"] == 'Configuration "doomed" does not have any ready Revision.'


def test_fail_revision_breaks_a_ready_revision(control_plane: ControlPlane, namespace: str, knative_sim):
    cp = control_plane
    cp.apply(ksvc("victim", "registry.local/victim:v1"), namespace)
    wait_service(cp, "victim", namespace, generation=1)

    knative_sim.fail_revision(namespace, "victim-00001", "ExitCode137", "Container failed with: OOMKilled")
    svc = wait_service(
        cp,
        "victim",
        namespace,
        generation=1,
        ready="False",
        where=lambda s: condition(s, "RoutesReady").get("status") == "False",
    )
    rev = cp.get("revision", "victim-00001", namespace)
    health = condition(rev, "ContainerHealthy")
    assert (health["status"], health["reason"], health["message"]) == (
        "False",
        "ExitCode137",
        "Container failed with: OOMKilled",
    )
    config_ready = condition(cp.get("configuration", "victim", namespace), "Ready")
    assert (
        config_ready["message"]
        == 'Revision "victim-00001" failed with message: Container failed with: OOMKilled.'
    )
    # The Route's verdict is propagated after the Configuration's, so it is what the Service's Ready reports.
    ready = condition(svc, "Ready")
    assert (ready["reason"], ready["message"]) == (
        "RevisionMissing",
        'Revision "victim-00001" failed to become ready.',
    )
    assert condition(svc, "ConfigurationsReady")["reason"] == "RevisionFailed"
    assert svc["status"]["latestReadyRevisionName"] == "victim-00001", "Knative never clears latestReady"
    assert svc["status"]["traffic"] == [
        {"revisionName": "victim-00001", "percent": 100, "latestRevision": True}
    ]


def test_admission_policy_enforces_knatives_webhook_rules(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("adm", "registry.local/adm:v1", revision="adm-v1"), namespace)

    error = apply_rejected(cp, ksvc("adm", "registry.local/adm:v2", revision="adm-v1"), namespace)
    assert "Saw the following changes without a name change (-old +new)" in error
    assert 'containers[*].image: -["registry.local/adm:v1"] +["registry.local/adm:v2"]' in error

    error = apply_rejected(cp, ksvc("adm", "registry.local/adm:v2", revision="other-v2"), namespace)
    assert 'invalid value: "other-v2" must have prefix "adm-": spec.template.metadata.name' in error

    split = [{"revisionName": "adm-v1", "percent": 50}, {"latestRevision": True, "percent": 40}]
    error = apply_rejected(
        cp, ksvc("adm", "registry.local/adm:v2", revision="adm-v2", traffic=split), namespace
    )
    assert "Traffic targets sum to 90, want 100: spec.traffic" in error

    tags = [
        {"revisionName": "adm-v1", "percent": 50, "tag": "a"},
        {"latestRevision": True, "percent": 50, "tag": "a"},
    ]
    error = apply_rejected(
        cp, ksvc("adm", "registry.local/adm:v2", revision="adm-v2", traffic=tags), namespace
    )
    assert 'Multiple definitions for "a": spec.traffic[1].tag, spec.traffic[0].tag' in error

    over = [{"revisionName": "adm-v1", "percent": 150}]
    error = apply_rejected(
        cp, ksvc("adm", "registry.local/adm:v2", revision="adm-v2", traffic=over), namespace
    )
    assert "expected 0 <= 150 <= 100: spec.traffic[0].percent" in error

    assert cp.get("ksvc", "adm", namespace)["metadata"]["generation"] == 1, "nothing rejected reached storage"
    cp.apply(ksvc("adm", "registry.local/adm:v2", revision="adm-v2"), namespace)  # a renamed template is fine
    assert cp.get("ksvc", "adm", namespace)["metadata"]["generation"] == 2


def test_scale_to_zero_of_revisions_without_traffic(control_plane: ControlPlane, namespace: str, knative_sim):
    cp = control_plane
    scale_zero = {"autoscaling.knative.dev/min-scale": "0"}
    warm = {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/initial-scale": "3"}
    cp.apply(ksvc("idle", "registry.local/idle:v1", annotations=scale_zero), namespace)
    cp.apply(ksvc("warm", "registry.local/warm:v1", annotations=warm), namespace)
    wait_service(cp, "idle", namespace, generation=1)
    wait_service(cp, "warm", namespace, generation=1)
    assert status_of(cp, "revision", "warm-00001", namespace)["actualReplicas"] == 3

    cp.apply(ksvc("idle", "registry.local/idle:v2", annotations=scale_zero), namespace)
    cp.apply(ksvc("warm", "registry.local/warm:v2", annotations=warm), namespace)
    rev = wait_for(
        lambda: (r := cp.get("revision", "idle-00001", namespace))["status"].get("actualReplicas") == 0 and r,
        timeout=20,
        what="idle-00001 scaled to zero",
    )
    assert rev["status"]["desiredReplicas"] == 0
    active = condition(rev, "Active")
    assert (active["status"], active["reason"]) == ("False", "NoTraffic")
    assert condition(rev, "Ready")["status"] == "True", "a revision scaled to zero is still ready"
    assert status_of(cp, "revision", "idle-00002", namespace)["actualReplicas"] == 1
    assert status_of(cp, "revision", "warm-00001", namespace)["actualReplicas"] == 3, "min-scale keeps pods"


def test_deleting_a_service_cascades_through_garbage_collection(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("gone", "registry.local/gone:v1"), namespace)
    wait_service(cp, "gone", namespace, generation=1)
    cp.apply(ksvc("gone", "registry.local/gone:v2"), namespace)
    wait_service(cp, "gone", namespace, generation=2, where=serving("gone-00002"))

    cp.kubectl("delete", "ksvc", "gone", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not any(cp.list(kind, namespace) for kind in ("configurations", "routes", "revisions")),
        timeout=75,
        interval=1,
        what="the garbage collector to delete the Configuration, Route and Revisions",
    )


def test_status_is_written_only_when_it_changes(control_plane: ControlPlane, namespace: str, knative_sim):
    cp = control_plane
    start = cp.audit_line_count()
    cp.apply(ksvc("quiet", "registry.local/quiet:v1"), namespace)
    wait_service(cp, "quiet", namespace, generation=1, where=serving("quiet-00001"))

    settled = cp.audit_line_count()
    for team in ("a", "b"):  # metadata-only changes: the children are updated, no status changes
        cp.kubectl("label", "ksvc", "quiet", "-n", namespace, f"team={team}", "--overwrite")
        for kind in ("configuration", "route"):
            wait_for(
                lambda kind=kind, team=team: (
                    cp.get(kind, "quiet", namespace)["metadata"]["labels"].get("team") == team
                ),
                what=f"team={team} on the {kind}",
            )

    def simulator_writes(since: int) -> list[tuple[str, str, str]]:
        return [
            (event["verb"], event["objectRef"]["resource"], event["objectRef"].get("subresource", ""))
            for event in cp.audit_events(since)
            if event.get("userAgent", "").startswith("knative-sim")
            and event["objectRef"].get("namespace") == namespace
        ]

    expected = [("update", "configurations", "")] * 2 + [("update", "routes", "")] * 2
    assert sorted(simulator_writes(settled)) == expected
    service_writes = {w for w in simulator_writes(start) if w[1] == "services"}
    assert service_writes == {("update", "services", "status")}, (
        "the simulator writes only a Service's status"
    )


def test_a_second_simulator_does_not_run_beside_the_first(control_plane: ControlPlane, knative_sim):
    second = KnativeSimulator(control_plane.admin_kubeconfig, admission=False)
    with pytest.raises(
        RuntimeError, match=f"another Knative simulator .* holds lease kube-system/{LEASE_NAME}"
    ):
        second.start(timeout=5)


@pytest.mark.chaos
def test_simulator_recovers_after_an_apiserver_restart(
    control_plane: ControlPlane, namespace: str, knative_sim
):
    cp = control_plane
    cp.apply(ksvc("before", "registry.local/before:v1"), namespace)
    wait_service(cp, "before", namespace, generation=1)

    cp.restart_apiserver()
    cp.apply(ksvc("after", "registry.local/after:v1"), namespace)
    cp.apply(ksvc("before", "registry.local/before:v2"), namespace)
    wait_service(cp, "after", namespace, generation=1, timeout=45)
    wait_service(cp, "before", namespace, generation=2, where=serving("before-00002"), timeout=45)
