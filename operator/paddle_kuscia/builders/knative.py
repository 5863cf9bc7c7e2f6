"""PaddleService -> Knative Service: the whole Knative mapping, pure (no I/O, no clock, no environment).

ElasticServing's mapping is kept where it worked (one Knative Service named like the PaddleService, image
`containerImage:tag`, `/bin/bash -c <arg>`, port name `http1`, its autoscaling defaults with `min-scale: 0`) and
fixed where it broke: every template gets a content-derived revision name, traffic only ever points at revisions
that are ready, limits are never below requests and `containerConcurrency` is not the autoscaling target.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..models.observed import KnativeObservation
from ..models.paddleservice import (
    DEFAULT_CANARY_TRAFFIC_PERCENT,
    DEFAULT_CPU,
    DEFAULT_MEMORY,
    AcceleratorType,
    EndpointSpec,
    PaddleServiceSpec,
)
from .quantity import InvalidQuantity, canonical_quantity, parse_quantity

KNATIVE_API_VERSION = "serving.knative.dev/v1"
FIELD_MANAGER = "paddle-kuscia-operator"
PS_LABEL = "elasticserving.paddlepaddle.org/paddleservice"
ES_TEMPLATE_LABEL = "PaddleService"  # ElasticServing's own template label, kept for existing selectors
MANAGED_BY = {"app.kubernetes.io/managed-by": "paddle-kuscia-operator"}
TAG_DEFAULT = "default"
TAG_CANARY = "canary"
MAX_NAME = 52  # 63 (revision name limit) - 1 (dash) - 10 (hash)

DEFAULT_TIMEOUT_SECONDS = 300

ACCELERATOR_RESOURCES = {
    AcceleratorType.NVIDIA_GPU: "nvidia.com/gpu",
    AcceleratorType.KUNLUN_XPU: "baidu.com/xpu",  # Kunlunxin's xpu-device-plugin
}

_CLASS = {"kpa": "kpa.autoscaling.knative.dev", "hpa": "hpa.autoscaling.knative.dev"}
# Labels that belong to the tools that deployed the PaddleService; copying them would make Argo CD or Flux
# treat the Knative Service as their own (and prune it).
_FOREIGN_LABEL_PREFIXES = ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")
_FOREIGN_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by"}


class InvalidSpec(ValueError):
    """The spec passed schema validation but cannot be turned into a valid Knative Service."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Owner:
    """The identity of the PaddleService that owns the Knative Service."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str]


def knative_service_name(owner_name: str) -> str:
    """The Knative Service keeps the PaddleService's name, so ElasticServing's hosts stay valid."""
    return owner_name


def revision_name(service_name: str, template: dict[str, Any]) -> str:
    """`<service>-<hash of the template>`: every template change is a name change, equal templates share one."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return f"{service_name}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


# ---- the revision template --------------------------------------------------------------------------


def _annotations(spec: PaddleServiceSpec) -> dict[str, str]:
    svc = spec.service
    get = (lambda name: getattr(svc, name)) if svc is not None else (lambda name: None)
    autoscaler: str = get("autoscaler") or "kpa"
    klass = _CLASS.get(autoscaler, autoscaler)
    is_kpa = klass == _CLASS["kpa"]
    prefix = "autoscaling.knative.dev/"
    out = {
        prefix + "class": klass,
        prefix + "metric": get("metric") or ("concurrency" if is_kpa else "cpu"),
        prefix + "target": str(get("target") if get("target") is not None else 100),
        prefix + "target-utilization-percentage": str(get("target_utilization") or 70),
        prefix + "min-scale": str(get("min_scale") if get("min_scale") is not None else 0),
        prefix + "max-scale": str(get("max_scale") or 0),
    }
    if is_kpa:  # window and panic settings exist only for Knative's own autoscaler
        out[prefix + "window"] = get("window") or "60s"
        out[prefix + "panic-window-percentage"] = str(get("panic_window") or 10)
        out[prefix + "panic-threshold-percentage"] = str(get("panic_threshold") or 200)
    if get("initial_scale") is not None:
        out[prefix + "initial-scale"] = str(get("initial_scale"))
    if get("scale_down_delay"):
        out[prefix + "scale-down-delay"] = get("scale_down_delay")
    if get("scale_to_zero_pod_retention_period"):
        out[prefix + "scale-to-zero-pod-retention-period"] = get("scale_to_zero_pod_retention_period")
    return out


def accelerator_resource(spec: PaddleServiceSpec) -> str | None:
    if spec.accelerator is None:
        return None
    return spec.accelerator.resource_name or ACCELERATOR_RESOURCES[spec.accelerator.type]


def container_resources(spec: PaddleServiceSpec) -> dict[str, dict[str, str]]:
    """Requests and limits with ElasticServing's cpu/memory defaults, limits never below requests.

    Quantities are written in Kubernetes' canonical form (`0.2` -> `200m`), as Knative's webhook stores them.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    try:
        given_requests = {
            k: canonical_quantity(v) for k, v in ((spec.resources and spec.resources.requests) or {}).items()
        }
        given_limits = {
            k: canonical_quantity(v) for k, v in ((spec.resources and spec.resources.limits) or {}).items()
        }
        for name, fallback in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
            req, lim = given_requests.get(name), given_limits.get(name)
            if req is not None and lim is not None and parse_quantity(lim) < parse_quantity(req):
                raise InvalidSpec(f"spec.resources.limits.{name}", f"limit {lim} is below the request {req}")
            if req is None:
                req = lim if lim is not None and parse_quantity(lim) < parse_quantity(fallback) else fallback
            if lim is None:
                lim = req if parse_quantity(req) > parse_quantity(fallback) else fallback
            requests[name], limits[name] = req, lim
        # Extended resources (GPUs, XPUs) cannot be overcommitted: requests must equal limits.
        for name in sorted((set(given_requests) | set(given_limits)) - {"cpu", "memory"}):
            req, lim = given_requests.get(name), given_limits.get(name)
            if (
                req is not None
                and lim is not None
                and parse_quantity(req) != parse_quantity(lim)
                and "/" in name
            ):
                raise InvalidSpec(f"spec.resources.requests.{name}", f"must equal the limit {lim} for {name}")
            requests[name] = req if req is not None else lim  # type: ignore[assignment]
            limits[name] = lim if lim is not None else req  # type: ignore[assignment]
    except InvalidQuantity as err:
        raise InvalidSpec("spec.resources", str(err)) from err
    accel = accelerator_resource(spec)
    if accel is not None and spec.accelerator is not None:
        requests[accel] = limits[accel] = str(spec.accelerator.count)
    return {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}


def _tolerations(spec: PaddleServiceSpec) -> list[dict[str, Any]]:
    tolerations = [t.wire() for t in spec.tolerations or []]
    accel = accelerator_resource(spec)
    if accel is not None:
        # What the ExtendedResourceToleration admission plugin adds for a pod requesting `accel`.
        auto = {"key": accel, "operator": "Exists", "effect": "NoSchedule"}
        if auto not in tolerations:
            tolerations.append(auto)
    return tolerations


def _image(endpoint: EndpointSpec) -> str:
    separator = "@" if endpoint.tag.startswith("sha256:") else ":"
    return f"{endpoint.container_image}{separator}{endpoint.tag}"


def _volume_mounts(spec: PaddleServiceSpec) -> list[dict[str, Any]]:
    """Mounts as Knative stores them: only emptyDir and PVC volumes may be writable; Knative's defaulting
    webhook makes every other mount read-only (pkg/apis/serving/v1/revision_defaults.go), so we say so too,
    or the stored template would differ from ours on every resync."""
    writable = {v.name for v in spec.volumes or [] if {"emptyDir", "persistentVolumeClaim"} & set(v.wire())}
    mounts = []
    for mount in spec.volume_mounts or []:
        wire = mount.wire()
        if mount.name not in writable:
            wire["readOnly"] = True
        mounts.append(wire)
    return mounts


def revision_template(owner: Owner, spec: PaddleServiceSpec, endpoint: EndpointSpec) -> dict[str, Any]:
    """The revision template for one variant, without its name (the name is derived from it)."""
    container: dict[str, Any] = {
        "name": "paddleserving",
        "image": _image(endpoint),
        "ports": [{"containerPort": endpoint.port, "name": "http1", "protocol": "TCP"}],
        "resources": container_resources(spec),
        "readinessProbe": {"tcpSocket": {"port": endpoint.port}, "successThreshold": 1},
        "livenessProbe": {
            "tcpSocket": {"port": endpoint.port},
            "initialDelaySeconds": 60,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
    }
    if endpoint.arg:
        container["command"] = ["/bin/bash", "-c"]
        container["args"] = [endpoint.arg]
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    if spec.volume_mounts:
        container["volumeMounts"] = _volume_mounts(spec)

    svc = spec.service
    pod: dict[str, Any] = {
        "containerConcurrency": (
            svc.container_concurrency if svc and svc.container_concurrency is not None else 0
        ),
        "timeoutSeconds": (svc.timeout_seconds if svc and svc.timeout_seconds else DEFAULT_TIMEOUT_SECONDS),
        "enableServiceLinks": False,  # Knative's own default; written so the template never drifts
        "containers": [container],
    }
    if spec.volumes:
        pod["volumes"] = [v.wire() for v in spec.volumes]
    if spec.node_selector:
        pod["nodeSelector"] = dict(sorted(spec.node_selector.items()))
    tolerations = _tolerations(spec)
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.affinity:
        pod["affinity"] = spec.affinity
    if spec.runtime_class_name:
        pod["runtimeClassName"] = spec.runtime_class_name

    annotations = _annotations(spec)
    if spec.runtime_version:
        annotations["elasticserving.paddlepaddle.org/runtime-version"] = spec.runtime_version
    return {
        "metadata": {
            "labels": {ES_TEMPLATE_LABEL: owner.name, PS_LABEL: owner.name},
            "annotations": dict(sorted(annotations.items())),
        },
        "spec": pod,
    }


def named_template(
    owner: Owner, spec: PaddleServiceSpec, endpoint: EndpointSpec
) -> tuple[str, dict[str, Any]]:
    template = revision_template(owner, spec, endpoint)
    name = revision_name(knative_service_name(owner.name), template)
    return name, {"metadata": {"name": name, **template["metadata"]}, "spec": template["spec"]}


# ---- the rollout: which template to build and where traffic goes --------------------------------------


@dataclass(frozen=True)
class Rollout:
    """The next step towards the desired split; `final` when it is the desired split itself."""

    template: dict[str, Any]
    traffic: list[dict[str, Any]]
    default_revision: str
    canary_revision: str | None
    final: bool


def canary_percent(spec: PaddleServiceSpec) -> int:
    if spec.canary is None:
        return 0
    if spec.canary_traffic_percent is None:
        return DEFAULT_CANARY_TRAFFIC_PERCENT
    return spec.canary_traffic_percent


def _target(revision: str, percent: int, tag: str) -> dict[str, Any]:
    return {"revisionName": revision, "percent": percent, "tag": tag, "latestRevision": False}


def plan_rollout(owner: Owner, spec: PaddleServiceSpec, observed: KnativeObservation | None) -> Rollout:
    """Decide the template and traffic for this step.

    Knative freezes a Route while any target is not ready, so traffic only names revisions that are ready
    (except on the first deployment, when nothing serves yet). A variant whose new revision is still being
    built keeps serving from the revision that served it before; the template builds the default first,
    then the canary.
    """
    default_name, default_tpl = named_template(owner, spec, spec.default)
    canary_name, canary_tpl = (None, None)
    if spec.canary is not None:
        canary_name, canary_tpl = named_template(owner, spec, spec.canary)
    percent = canary_percent(spec)

    final_traffic = [_target(default_name, 100 - percent, TAG_DEFAULT)]
    if canary_name is not None:
        final_traffic.append(_target(canary_name, percent, TAG_CANARY))
    final_template = canary_tpl if canary_tpl is not None else default_tpl

    obs = observed or KnativeObservation()
    serving_default = (obs.routed(TAG_DEFAULT) or {}).get("revisionName")
    serving_canary = (obs.routed(TAG_CANARY) or {}).get("revisionName")

    if not obs.known_ready(default_name):
        default_now = (
            serving_default
            if serving_default is not None and obs.known_ready(serving_default)
            else default_name
        )
        canary_now = None
        if canary_name is not None:
            canary_now = canary_name if obs.known_ready(canary_name) else serving_canary
            if canary_now is not None and not obs.known_ready(canary_now):
                canary_now = None
        traffic = [_target(default_now, 100 - (percent if canary_now else 0), TAG_DEFAULT)]
        if canary_now is not None:
            traffic.append(_target(canary_now, percent, TAG_CANARY))
        final = default_now == default_name and canary_name is None
        return Rollout(default_tpl, traffic, default_name, canary_name, final)

    if canary_name is None or obs.known_ready(canary_name):
        return Rollout(final_template, final_traffic, default_name, canary_name, True)

    # The default is ready, the canary is still being built: keep the old canary (if ready) meanwhile.
    traffic = [_target(default_name, 100, TAG_DEFAULT)]
    if serving_canary is not None and obs.known_ready(serving_canary):
        traffic = [
            _target(default_name, 100 - percent, TAG_DEFAULT),
            _target(serving_canary, percent, TAG_CANARY),
        ]
    assert canary_tpl is not None
    return Rollout(canary_tpl, traffic, default_name, canary_name, False)


# ---- the Knative Service --------------------------------------------------------------------------------


def propagated_labels(labels: dict[str, str]) -> dict[str, str]:
    kept = {
        k: v
        for k, v in labels.items()
        if k not in _FOREIGN_LABELS and not k.startswith(_FOREIGN_LABEL_PREFIXES)
    }
    return dict(sorted({**kept, **MANAGED_BY, PS_LABEL: labels.get(PS_LABEL, "")}.items()))


def build_knative_service(
    owner: Owner, spec: PaddleServiceSpec, observed: KnativeObservation | None = None
) -> tuple[dict[str, Any], Rollout]:
    """The Knative Service to apply (server-side apply, our fields only) and the rollout step it encodes."""
    rollout = plan_rollout(owner, spec, observed)
    labels = propagated_labels({**owner.labels, PS_LABEL: owner.name})
    metadata: dict[str, Any] = {
        "name": knative_service_name(owner.name),
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "elasticserving.paddlepaddle.org/v1",
                "kind": "PaddleService",
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if spec.service and spec.service.rollout_duration:
        duration = spec.service.rollout_duration
        metadata["annotations"] = {
            "serving.knative.dev/rollout-duration": duration if not duration.isdigit() else f"{duration}s"
        }
    ksvc = {
        "apiVersion": KNATIVE_API_VERSION,
        "kind": "Service",
        "metadata": metadata,
        "spec": {"template": rollout.template, "traffic": rollout.traffic},
    }
    return ksvc, rollout


def knative_warnings(spec: PaddleServiceSpec) -> list[str]:
    """Advice worth a Warning Event: configurations that work but hurt users."""
    warnings = []
    svc = spec.service
    min_scale = svc.min_scale if svc and svc.min_scale is not None else 0
    softened = svc is not None and bool(svc.scale_to_zero_pod_retention_period or svc.initial_scale)
    if spec.accelerator is not None and min_scale == 0 and not softened:
        warnings.append(
            f"Scale to zero is on (service.minScale 0) with an accelerator ({accelerator_resource(spec)}): "
            "each cold start waits for a GPU/XPU node and model load. Set service.minScale >= 1, or "
            "service.scaleToZeroPodRetentionPeriod / service.initialScale to soften cold starts."
        )
    return warnings
