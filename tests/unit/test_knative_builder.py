"""The PaddleService -> Knative Service mapping, checked on ElasticServing's own samples and edge cases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia.builders.compare import is_subset
from paddle_kuscia.builders.knative import (
    InvalidSpec,
    Owner,
    build_knative_service,
    knative_warnings,
    named_template,
    plan_rollout,
)
from paddle_kuscia.builders.quantity import parse_quantity
from paddle_kuscia.cli import render_documents
from paddle_kuscia.models.observed import ConditionState, KnativeObservation, RevisionState
from paddle_kuscia.models.paddleservice import PaddleService, PaddleServiceSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OWNER = Owner("ps", "ns", "uid-1", {})


def spec(**fields: Any) -> PaddleServiceSpec:
    base: dict[str, Any] = {"default": {"containerImage": "img/default", "tag": "v1", "port": 9292}}
    base.update(fields)
    return PaddleServiceSpec.model_validate(base)


def ready(*names: str) -> KnativeObservation:
    return KnativeObservation(revisions={n: RevisionState(n, ConditionState("True")) for n in names})


def container(ksvc: dict[str, Any]) -> dict[str, Any]:
    return ksvc["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("name", ["sample_service", "lac"])
def test_elasticserving_samples_render_to_their_golden_knative_service(name: str) -> None:
    doc = yaml.safe_load((FIXTURES / "elasticserving" / f"{name}.yaml").read_text())
    rendered = yaml.safe_dump(render_documents([doc])[0], sort_keys=False)
    golden = FIXTURES / "golden" / f"{name}.ksvc.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), f"render of {name} changed; review and rerun with UPDATE_GOLDEN=1"


def test_sample_service_splits_traffic_with_tags_and_scales_to_zero() -> None:
    doc = yaml.safe_load((FIXTURES / "elasticserving" / "sample_service.yaml").read_text())
    ksvc = render_documents([doc])[0]
    traffic = ksvc["spec"]["traffic"]
    assert [(t["tag"], t["percent"]) for t in traffic] == [("default", 50), ("canary", 50)]
    assert traffic[0]["revisionName"] != traffic[1]["revisionName"]
    assert all(t["revisionName"].startswith("paddleservice-sample-") for t in traffic)
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/window"] == "10s"
    # The template is the canary's; the default revision is kept by name in the traffic block.
    assert ksvc["spec"]["template"]["metadata"]["name"] == traffic[1]["revisionName"]
    assert container(ksvc)["command"] == ["/bin/bash", "-c"]


def test_every_template_change_changes_the_revision_name() -> None:
    a, _ = named_template(OWNER, spec(), spec().default)
    b, _ = named_template(OWNER, spec(service={"minScale": 1}), spec().default)
    c, _ = named_template(OWNER, spec(workingDir="/srv"), spec().default)
    assert len({a, b, c}) == 3
    assert named_template(OWNER, spec(), spec().default)[0] == a  # deterministic


def test_promoting_the_canary_reuses_its_revision() -> None:
    canary = {"containerImage": "img/canary", "tag": "v2", "port": 9292}
    before = spec(canary=canary, canaryTrafficPercent=10)
    after = spec(default=canary)
    canary_rev = named_template(OWNER, before, before.canary)[0]  # type: ignore[arg-type]
    assert named_template(OWNER, after, after.default)[0] == canary_rev


def test_limits_are_never_below_requests() -> None:
    ksvc, _ = build_knative_service(OWNER, spec(resources={"requests": {"cpu": "4", "memory": "8Gi"}}))
    res = container(ksvc)["resources"]
    for name in ("cpu", "memory"):
        assert parse_quantity(res["limits"][name]) >= parse_quantity(res["requests"][name])
    ksvc, _ = build_knative_service(OWNER, spec(resources={"limits": {"cpu": "100m"}}))
    res = container(ksvc)["resources"]
    assert parse_quantity(res["requests"]["cpu"]) <= parse_quantity(res["limits"]["cpu"])


def test_limit_below_request_is_refused_with_the_field() -> None:
    with pytest.raises(InvalidSpec) as err:
        build_knative_service(OWNER, spec(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    assert err.value.field == "spec.resources.limits.cpu"


def test_container_concurrency_is_not_the_autoscaling_target() -> None:
    ksvc, _ = build_knative_service(OWNER, spec(service={"target": 50}))
    assert ksvc["spec"]["template"]["spec"]["containerConcurrency"] == 0
    assert ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"] == "50"
    ksvc, _ = build_knative_service(OWNER, spec(service={"containerConcurrency": 4}))
    assert ksvc["spec"]["template"]["spec"]["containerConcurrency"] == 4


def test_working_dir_and_scheduling_fields_pass_through() -> None:
    ksvc, _ = build_knative_service(
        OWNER,
        spec(
            workingDir="/srv/model",
            nodeSelector={"pool": "gpu"},
            runtimeClassName="nvidia",
            affinity={"nodeAffinity": {"x": 1}},
            tolerations=[{"key": "k", "operator": "Exists"}],
        ),
    )
    pod = ksvc["spec"]["template"]["spec"]
    assert container(ksvc)["workingDir"] == "/srv/model"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["affinity"] == {"nodeAffinity": {"x": 1}}
    assert {"key": "k", "operator": "Exists"} in pod["tolerations"]


@pytest.mark.parametrize(
    ("accelerator", "resource"),
    [
        ({"type": "nvidia-gpu", "count": 2}, "nvidia.com/gpu"),
        ({"type": "kunlun-xpu", "count": 1}, "baidu.com/xpu"),
        ({"type": "kunlun-xpu", "count": 1, "resourceName": "kunlunxin.com/vxpu"}, "kunlunxin.com/vxpu"),
    ],
)
def test_accelerators_request_equals_limit_with_a_toleration(
    accelerator: dict[str, Any], resource: str
) -> None:
    ksvc, _ = build_knative_service(OWNER, spec(accelerator=accelerator))
    res = container(ksvc)["resources"]
    assert res["requests"][resource] == res["limits"][resource] == str(accelerator["count"])
    assert {"key": resource, "operator": "Exists", "effect": "NoSchedule"} in ksvc["spec"]["template"][
        "spec"
    ]["tolerations"]


def test_raw_extended_resources_keep_working() -> None:
    ksvc, _ = build_knative_service(OWNER, spec(resources={"limits": {"nvidia.com/gpu": 1}}))
    res = container(ksvc)["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "1"


def test_scale_to_zero_with_an_accelerator_warns_unless_softened() -> None:
    assert knative_warnings(spec(accelerator={"type": "nvidia-gpu"}))
    assert not knative_warnings(spec(accelerator={"type": "nvidia-gpu"}, service={"initialScale": 1}))
    assert not knative_warnings(spec(accelerator={"type": "nvidia-gpu"}, service={"minScale": 1}))
    assert not knative_warnings(spec())


def test_autoscaling_annotations_use_knative_1x_keys_and_are_explicit() -> None:
    ksvc, _ = build_knative_service(
        OWNER,
        spec(
            service={
                "autoscaler": "hpa",
                "maxScale": 3,
                "initialScale": 1,
                "scaleDownDelay": "30s",
                "scaleToZeroPodRetentionPeriod": "5m",
            }
        ),
    )
    ann = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/class"] == "hpa.autoscaling.knative.dev"
    assert ann["autoscaling.knative.dev/metric"] == "cpu"
    assert ann["autoscaling.knative.dev/min-scale"] == "0"
    assert ann["autoscaling.knative.dev/max-scale"] == "3"
    assert ann["autoscaling.knative.dev/initial-scale"] == "1"
    assert ann["autoscaling.knative.dev/scale-down-delay"] == "30s"
    assert ann["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == "5m"
    assert not any(k.endswith(("minScale", "maxScale", "Percentage")) for k in ann)


def test_foreign_labels_are_not_copied_to_the_knative_service() -> None:
    owner = Owner(
        "ps",
        "ns",
        "u",
        {
            "app.kubernetes.io/instance": "argo-app",
            "team": "a",
            "networking.knative.dev/visibility": "cluster-local",
        },
    )
    ksvc, _ = build_knative_service(owner, spec())
    labels = ksvc["metadata"]["labels"]
    assert "app.kubernetes.io/instance" not in labels
    assert labels["team"] == "a" and labels["networking.knative.dev/visibility"] == "cluster-local"
    assert ksvc["metadata"]["ownerReferences"][0]["uid"] == "u"


# ---- the rollout state machine -------------------------------------------------------------------


def test_first_deploy_routes_to_the_new_default_at_once() -> None:
    s = spec()
    rollout = plan_rollout(OWNER, s, None)
    assert rollout.final and rollout.traffic == [
        {"revisionName": rollout.default_revision, "percent": 100, "tag": "default", "latestRevision": False}
    ]


def test_a_new_default_is_built_while_the_old_one_keeps_serving() -> None:
    old = spec()
    old_rev = named_template(OWNER, old, old.default)[0]
    new = spec(default={"containerImage": "img/default", "tag": "v2", "port": 9292})
    serving = KnativeObservation(
        traffic=({"tag": "default", "revisionName": old_rev, "percent": 100},),
        revisions={old_rev: RevisionState(old_rev, ConditionState("True"))},
    )
    rollout = plan_rollout(OWNER, new, serving)
    assert rollout.template["metadata"]["name"] == rollout.default_revision != old_rev
    assert [t["revisionName"] for t in rollout.traffic] == [old_rev] and not rollout.final
    done = plan_rollout(OWNER, new, ready(old_rev, rollout.default_revision))
    assert [t["revisionName"] for t in done.traffic] == [rollout.default_revision] and done.final


def test_canary_gets_traffic_only_once_ready() -> None:
    s = spec(canary={"containerImage": "img/canary", "tag": "v2", "port": 9292}, canaryTrafficPercent=10)
    default_rev = named_template(OWNER, s, s.default)[0]
    step = plan_rollout(OWNER, s, ready(default_rev))
    assert step.template["metadata"]["name"] == step.canary_revision
    assert [(t["revisionName"], t["percent"]) for t in step.traffic] == [(default_rev, 100)]
    done = plan_rollout(OWNER, s, ready(default_rev, step.canary_revision))  # type: ignore[arg-type]
    assert [(t["tag"], t["percent"]) for t in done.traffic] == [
        ("default", 90),
        ("canary", 10),
    ] and done.final


def test_a_failed_canary_never_receives_traffic() -> None:
    s = spec(canary={"containerImage": "img/canary", "tag": "fail", "port": 9292}, canaryTrafficPercent=50)
    default_rev = named_template(OWNER, s, s.default)[0]
    canary_rev = named_template(OWNER, s, s.canary)[0]  # type: ignore[arg-type]
    obs = KnativeObservation(
        revisions={
            default_rev: RevisionState(default_rev, ConditionState("True")),
            canary_rev: RevisionState(canary_rev, ConditionState("False", "ExitCode1", "boom")),
        }
    )
    rollout = plan_rollout(OWNER, s, obs)
    assert [t["revisionName"] for t in rollout.traffic] == [default_rev] and not rollout.final


def test_rollback_to_zero_percent_keeps_the_canary_addressable() -> None:
    s = spec(canary={"containerImage": "img/canary", "tag": "v2", "port": 9292}, canaryTrafficPercent=0)
    default_rev = named_template(OWNER, s, s.default)[0]
    canary_rev = named_template(OWNER, s, s.canary)[0]  # type: ignore[arg-type]
    done = plan_rollout(OWNER, s, ready(default_rev, canary_rev))
    assert [(t["tag"], t["percent"]) for t in done.traffic] == [("default", 100), ("canary", 0)]


def test_model_rejects_what_the_crd_rejects() -> None:
    with pytest.raises(ValueError):
        PaddleServiceSpec.model_validate(
            {"default": {"containerImage": "a", "tag": "b", "port": 1}, "canaryTrafficPercent": 150}
        )
    assert PaddleService.model_validate(
        yaml.safe_load((FIXTURES / "elasticserving" / "sample_service.yaml").read_text())
    )


def test_quantities_are_rendered_as_knative_stores_them() -> None:
    """Knative's webhook rewrites quantities canonically; rendering them so means no re-apply on every resync."""
    s = spec(
        resources={
            "requests": {"cpu": "0.2", "memory": "0.5Gi", "example.com/dongle": 1},
            "limits": {"cpu": 2, "memory": "1.5Gi", "example.com/dongle": "1000m"},
        },
        accelerator={"type": "nvidia-gpu", "count": 2},
    )
    res = container(build_knative_service(OWNER, s)[0])["resources"]
    assert res["requests"] == {
        "cpu": "200m",
        "example.com/dongle": "1",
        "memory": "512Mi",
        "nvidia.com/gpu": "2",
    }
    assert res["limits"] == {"cpu": "2", "example.com/dongle": "1", "memory": "1536Mi", "nvidia.com/gpu": "2"}


def test_the_lac_sample_matches_its_stored_knative_service() -> None:
    """ElasticServing's lac sample asks for cpu 0.2; the stored Service says 200m, and nothing is re-applied."""
    doc = yaml.safe_load((FIXTURES / "elasticserving" / "lac.yaml").read_text())
    desired = render_documents([doc])[0]
    assert container(desired)["resources"]["requests"]["cpu"] == "200m"
    stored = yaml.safe_load(yaml.safe_dump(desired))
    container(stored)["resources"]["requests"]["memory"] = "1024Mi"  # another spelling of the same value
    assert is_subset(desired, stored)


def test_an_unparsable_quantity_is_refused_with_the_field() -> None:
    with pytest.raises(InvalidSpec) as err:
        build_knative_service(OWNER, spec(resources={"requests": {"cpu": "1e99999"}}))
    assert err.value.field == "spec.resources"


def test_a_canary_without_a_percentage_gets_elasticservings_half() -> None:
    s = spec(canary={"containerImage": "img/canary", "tag": "v2", "port": 9292})
    default_rev = named_template(OWNER, s, s.default)[0]
    canary_rev = named_template(OWNER, s, s.canary)[0]  # type: ignore[arg-type]
    done = plan_rollout(OWNER, s, ready(default_rev, canary_rev))
    assert [(t["tag"], t["percent"]) for t in done.traffic] == [("default", 50), ("canary", 50)]


def test_mounts_of_volumes_other_than_emptydir_and_pvc_are_read_only_as_knative_stores_them() -> None:
    ksvc, _ = build_knative_service(
        OWNER,
        spec(
            volumes=[
                {"name": "scratch", "emptyDir": {}},
                {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                {"name": "conf", "configMap": {"name": "serving-conf"}},
            ],
            volumeMounts=[
                {"name": "scratch", "mountPath": "/tmp/scratch"},
                {"name": "models", "mountPath": "/models", "readOnly": False},
                {"name": "conf", "mountPath": "/etc/serving", "readOnly": False},
            ],
        ),
    )
    mounts = {m["name"]: m for m in container(ksvc)["volumeMounts"]}
    assert "readOnly" not in mounts["scratch"]
    assert mounts["models"]["readOnly"] is False
    assert mounts["conf"]["readOnly"] is True
