"""PaddleService, `elasticserving.paddlepaddle.org/v1`: ElasticServing's API kept field for field, plus extensions.

ElasticServing fields keep their names and meaning so its YAML applies unchanged; what it lacked (validation,
accelerators, scheduling, the Kuscia backend, a status that is actually filled) is added around them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from . import autoscaling as limits
from .base import DNS1123_LABEL, INT_OR_STRING, KUSCIA_ID, PRESERVE_UNKNOWN, QUANTITY_MAP, WireModel

GROUP = "elasticserving.paddlepaddle.org"
VERSION = "v1"
KIND = "PaddleService"
PLURAL = "paddleservices"

DEFAULT_CANARY_TRAFFIC_PERCENT = 50  # ElasticServing's, when a canary has no canaryTrafficPercent
# What a container requests when its spec names no cpu or memory, on either backend (ElasticServing's values).
DEFAULT_CPU = "200m"
DEFAULT_MEMORY = "512Mi"

DURATION_OR_SECONDS = r"^(([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|[0-9]+)$"


class Backend(StrEnum):
    KNATIVE = "knative"
    KUSCIA = "kuscia"


class AcceleratorType(StrEnum):
    NVIDIA_GPU = "nvidia-gpu"
    KUNLUN_XPU = "kunlun-xpu"


class EndpointSpec(WireModel):
    """One variant (default or canary): ElasticServing's EndpointSpec."""

    container_image: str = Field(
        min_length=1, max_length=512, description="Image repository, without the tag."
    )
    tag: Annotated[
        str, Field(min_length=1, max_length=256, description="Image tag; the image is `containerImage:tag`.")
    ]
    port: int = Field(ge=1, le=65535, description="Port the model server listens on.")
    arg: str | None = Field(
        default=None, max_length=65536, description="Command run as `/bin/bash -c <arg>`."
    )


class ServiceSpec(WireModel):
    """Knative autoscaling knobs; ElasticServing's defaults are applied by the builder, not stored.

    Values that Knative would refuse are refused when the PaddleService is applied.
    """

    autoscaler: Literal["kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev", "kpa", "hpa"] | None = (
        Field(default=None, description="Autoscaler class (`kpa`/`hpa` accepted as short forms).")
    )
    metric: Literal["concurrency", "rps", "cpu", "memory"] | None = Field(
        default=None, description="concurrency or rps with kpa; cpu or memory need hpa."
    )
    window: Annotated[str | None, AfterValidator(limits.WINDOW.check)] = Field(
        default=None,
        pattern=limits.DURATION,
        max_length=64,
        description="Stable window, 6s to 1h in whole seconds, e.g. 60s (Knative window).",
    )
    panic_window: Annotated[int | str | None, AfterValidator(limits.PANIC_WINDOW.check)] = Field(
        default=None,
        json_schema_extra=INT_OR_STRING | {"pattern": limits.NUMBER},
        description="Panic window as a percentage of the stable window, 1 to 100 (Knative panic-window-percentage).",
    )
    panic_threshold: Annotated[int | str | None, AfterValidator(limits.PANIC_THRESHOLD.check)] = Field(
        default=None,
        json_schema_extra=INT_OR_STRING | {"pattern": limits.NUMBER},
        description="Percentage of the target that starts panic mode, 110 to 1000 "
        "(Knative panic-threshold-percentage).",
    )
    min_scale: int | None = Field(
        default=None, ge=0, le=limits.INT32_MAX, description="Minimum replicas; 0 allows scale to zero."
    )
    max_scale: int | None = Field(
        default=None, ge=0, le=limits.INT32_MAX, description="Maximum replicas; 0 means no limit."
    )
    target: int | None = Field(
        default=None, ge=limits.TARGET_MIN, description="Soft autoscaling target per replica, at least 1."
    )
    target_utilization: Annotated[int | str | None, AfterValidator(limits.TARGET_UTILIZATION.check)] = Field(
        default=None,
        json_schema_extra=INT_OR_STRING | {"pattern": limits.NUMBER},
        description="Percentage of the target to aim for, 1 to 100 (Knative target-utilization-percentage).",
    )
    initial_scale: int | None = Field(
        default=None,
        ge=0,
        le=limits.INT32_MAX,
        description="Replicas started for a new revision (0 only where Knative's allow-zero-initial-scale is on).",
    )
    scale_down_delay: Annotated[str | None, AfterValidator(limits.SCALE_DOWN_DELAY.check)] = Field(
        default=None, pattern=limits.DURATION, max_length=64, description="0s to 1h in whole seconds."
    )
    scale_to_zero_pod_retention_period: Annotated[
        str | None, AfterValidator(limits.SCALE_TO_ZERO_POD_RETENTION.check)
    ] = Field(default=None, pattern=limits.DURATION, max_length=64, description="0s to 1h.")
    container_concurrency: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Hard limit of concurrent requests per replica (0 = unlimited).",
    )
    timeout_seconds: int | None = Field(default=None, ge=1, le=3600)
    rollout_duration: str | None = Field(default=None, pattern=DURATION_OR_SECONDS)

    model_config = WireModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxScale) || self.maxScale == 0 || !has(self.minScale) "
                    "|| self.minScale <= self.maxScale",
                    "message": "minScale must be less than or equal to maxScale when maxScale is greater than 0",
                    "fieldPath": ".minScale",
                },
                {
                    "rule": "!has(self.maxScale) || self.maxScale == 0 || !has(self.initialScale) "
                    "|| self.initialScale <= self.maxScale",
                    "message": "initialScale must be less than or equal to maxScale when maxScale is greater than 0",
                    "fieldPath": ".initialScale",
                },
                *limits.cel_rules(),
            ]
        }
    }

    @field_validator("metric")
    @classmethod
    def _metric_fits_the_autoscaler(cls, value: str | None, info: ValidationInfo) -> str | None:
        kpa = info.data.get("autoscaler") not in limits.HPA_CLASSES
        if value is not None and kpa and value not in limits.KPA_METRICS:
            raise ValueError(limits.METRIC_MESSAGE)
        return value

    @field_validator("max_scale")
    @classmethod
    def _max_scale_is_not_below_min_scale(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_scale")
        if value and low is not None and low > value:
            raise ValueError(
                "minScale must be less than or equal to maxScale when maxScale is greater than 0"
            )
        return value

    @field_validator("initial_scale")
    @classmethod
    def _initial_scale_is_not_above_max_scale(cls, value: int | None, info: ValidationInfo) -> int | None:
        high = info.data.get("max_scale")
        if value is not None and high and value > high:
            raise ValueError(
                "initialScale must be less than or equal to maxScale when maxScale is greater than 0"
            )
        return value


class ResourceRequirements(WireModel):
    limits: dict[str, int | str] | None = Field(default=None, json_schema_extra=QUANTITY_MAP)
    requests: dict[str, int | str] | None = Field(default=None, json_schema_extra=QUANTITY_MAP)


class VolumeMount(WireModel):
    name: str = Field(min_length=1)
    mount_path: str = Field(min_length=1)
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None


class Volume(WireModel):
    """A core/v1 Volume; only `name` is checked here, the source is passed through to Knative."""

    model_config = WireModel.model_config | {"extra": "allow"}
    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)


class Toleration(WireModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Accelerator(WireModel):
    """Shorthand for a GPU or Kunlun XPU request: requests = limits, plus the matching toleration."""

    type: AcceleratorType
    count: int = Field(default=1, ge=1, le=64)
    resource_name: str | None = Field(
        default=None,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Extended resource to request instead of the type's default (e.g. kunlunxin.com/xpu).",
    )


class UpdateStrategy(WireModel):
    type: Literal["Recreate", "RollingUpdate"] = "RollingUpdate"
    max_surge: str | None = Field(default=None, pattern=r"^[0-9]+%?$")
    max_unavailable: str | None = Field(default=None, pattern=r"^[0-9]+%?$")


class KusciaParty(WireModel):
    domain_id: str = Field(min_length=1, max_length=63, pattern=KUSCIA_ID)
    app_image: str | None = Field(
        default=None,
        max_length=253,
        pattern=KUSCIA_ID,
        description="Kuscia AppImage; when empty the operator registers one built from spec.default.",
    )
    role: str | None = Field(default=None, max_length=63)
    replicas: int | None = Field(default=None, ge=0, le=1000)
    update_strategy: UpdateStrategy | None = None
    service_name_prefix: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]{0,46}[a-z0-9])?$")


class KusciaServingSpec(WireModel):
    """Where and how the service runs on Kuscia (spec.backend: kuscia)."""

    serving_id: str | None = Field(
        default=None,
        max_length=63,
        pattern=KUSCIA_ID,
        description="Kuscia serving id (default: the object name).",
    )
    initiator: str = Field(min_length=1, max_length=63, pattern=KUSCIA_ID)
    parties: list[KusciaParty] = Field(min_length=1, max_length=32)
    serving_input_config: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=PRESERVE_UNKNOWN,
        description="SecretFlow Serving config (partyConfigs, ...); sent to Kuscia as a JSON string.",
    )
    affinity_mode: Literal["none", "affinity", "anti-affinity"] | None = None
    connection_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_LABEL,
        description="Secret in this namespace with ca.crt, tls.crt, tls.key, token and optional url.",
    )

    model_config = WireModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.parties.exists(p, p.domainId == self.initiator)",
                    "message": "initiator must be the domainId of one of the parties",
                    "fieldPath": ".initiator",
                }
            ]
        }
    }


class PaddleServiceSpec(WireModel):
    # ElasticServing's fields, same names and meaning.
    runtime_version: str | None = Field(
        default=None, max_length=253, description="Version label of the runtime."
    )
    resources: ResourceRequirements | None = None
    default: EndpointSpec = Field(
        description="The variant that receives 100 - canaryTrafficPercent of traffic."
    )
    canary: EndpointSpec | None = None
    canary_traffic_percent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description=f"Share of the traffic for the canary (default {DEFAULT_CANARY_TRAFFIC_PERCENT} with a canary).",
    )
    service: ServiceSpec | None = None
    working_dir: str | None = Field(default=None, max_length=4096)
    volume_mounts: list[VolumeMount] | None = Field(default=None, max_length=64)
    volumes: list[Volume] | None = Field(default=None, max_length=64)
    # Extensions.
    backend: Backend | None = Field(default=None, description="knative (default) or kuscia.")
    accelerator: Accelerator | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = Field(default=None, max_length=64)
    affinity: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    runtime_class_name: str | None = Field(default=None, max_length=253)
    kuscia: KusciaServingSpec | None = None

    model_config = WireModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.backend) || self.backend != 'kuscia' || has(self.kuscia)",
                    "message": "spec.kuscia is required when spec.backend is kuscia",
                    "fieldPath": ".kuscia",
                }
            ]
        }
    }

    @property
    def effective_backend(self) -> Backend:
        return self.backend or Backend.KNATIVE


# ---- status -------------------------------------------------------------------------------------------


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(WireModel):
    """metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = None


class TrafficTarget(WireModel):
    tag: str | None = None
    revision_name: str | None = None
    percent: int | None = None
    url: str | None = None
    latest_revision: bool | None = None


class VariantStatus(WireModel):
    name: str | None = Field(default=None, description="Revision serving this variant.")


class Addressable(WireModel):
    url: str | None = None


class KusciaPartyStatus(WireModel):
    domain_id: str | None = None
    role: str | None = None
    state: str | None = None
    replicas: int | None = None
    available_replicas: int | None = None
    endpoints: list[dict[str, str]] | None = None


class KusciaServingStatus(WireModel):
    serving_id: str | None = None
    state: str | None = None
    reason: str | None = None
    message: str | None = None
    total_parties: int | None = None
    available_parties: int | None = None
    parties: list[KusciaPartyStatus] | None = None
    app_image: str | None = Field(default=None, description="AppImage registered by the operator, if any.")
    applied_hash: str | None = Field(default=None, description="Digest of the last request Kuscia accepted.")


class ConditionedStatus(WireModel):
    """What every status this operator writes has: the generation it describes, and conditions."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class PaddleServiceStatus(ConditionedStatus):
    url: str | None = None
    address: Addressable | None = None
    default: VariantStatus | None = None
    canary: VariantStatus | None = None
    replicas: int | None = Field(default=None, ge=0)
    traffic: list[TrafficTarget] | None = None
    latest_created_revision: str | None = None
    latest_ready_revision: str | None = None
    kuscia: KusciaServingStatus | None = None


class PaddleService(WireModel):
    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PaddleServiceSpec
    status: PaddleServiceStatus | None = None


PRINTER_COLUMNS: list[dict[str, str | int]] = [
    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].reason"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Default %", "type": "integer", "jsonPath": ".status.traffic[?(@.tag=='default')].percent"},
    {"name": "Canary %", "type": "integer", "jsonPath": ".status.traffic[?(@.tag=='canary')].percent"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Backend", "type": "string", "jsonPath": ".spec.backend", "priority": 1},
    {"name": "Default Revision", "type": "string", "jsonPath": ".status.default.name", "priority": 1},
    {"name": "Canary Revision", "type": "string", "jsonPath": ".status.canary.name", "priority": 1},
    {"name": "Kuscia", "type": "string", "jsonPath": ".status.kuscia.state", "priority": 1},
]
