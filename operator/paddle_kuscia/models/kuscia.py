"""KusciaJob and KusciaDeployment, `kuscia.secretflow/v1alpha1`, with Kuscia's own field names.

The spec mirrors Kuscia's Go types (pkg/crd/apis/kuscia/v1alpha1) so YAML written for Kuscia applies unchanged.
The status keeps Kuscia's shape and adds `conditions` entries of this operator (`Ready`, `Mirrored`) and a
`mirror` block with the operator's bookkeeping.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from .base import KUSCIA_ID, PRESERVE_UNKNOWN, WireModel
from .paddleservice import ConditionedStatus, ResourceRequirements

GROUP = "kuscia.secretflow"
VERSION = "v1alpha1"

RFC1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Kind(StrEnum):
    """The kinds the operator runs on Kuscia. The value is the Kubernetes kind, which also names the
    kind's work queue and its `kind` metric label."""

    PADDLESERVICE = "PaddleService"
    DEPLOYMENT = "KusciaDeployment"
    JOB = "KusciaJob"


# ---- KusciaDeployment ---------------------------------------------------------------------------------


class DeploymentTemplate(WireModel):
    replicas: int | None = Field(default=None, ge=0)
    strategy: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    spec: dict[str, Any] | None = Field(
        default=None, json_schema_extra=PRESERVE_UNKNOWN, description="restartPolicy, containers, affinity."
    )


class KusciaDeploymentParty(WireModel):
    domain_id: str = Field(alias="domainID", min_length=1, pattern=KUSCIA_ID)
    app_image_ref: str = Field(alias="appImageRef", min_length=1)
    role: str | None = None
    service_name_prefix: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]{0,46}[a-z0-9])?$")
    template: DeploymentTemplate | None = None


class KusciaDeploymentSpec(WireModel):
    initiator: str = Field(min_length=1, pattern=KUSCIA_ID)
    input_config: str = Field(
        description="For serving: SecretFlow Serving's serving_input_config JSON string."
    )
    parties: list[KusciaDeploymentParty] = Field(min_length=1)


class MirrorStatus(WireModel):
    """What this operator submitted to Kuscia, so changes are detected and reported."""

    remote_id: str | None = None
    spec_hash: str | None = None
    submitted_generation: int | None = None
    connection: str | None = Field(default=None, description="Kuscia API URL the object is mirrored to.")


class KusciaDeploymentStatus(ConditionedStatus):
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    total_parties: int | None = None
    available_parties: int | None = None
    party_deployment_statuses: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    last_reconcile_time: str | None = None
    mirror: MirrorStatus | None = None


class KusciaDeployment(WireModel):
    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = "KusciaDeployment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: KusciaDeploymentSpec
    status: KusciaDeploymentStatus | None = None


# ---- KusciaJob ----------------------------------------------------------------------------------------


class BandwidthLimit(WireModel):
    destination_id: str = Field(alias="destinationID", min_length=1)
    limit_k_bps: int = Field(alias="limitKBps", ge=1)


class JobParty(WireModel):
    domain_id: str = Field(alias="domainID", min_length=1, max_length=63, pattern=KUSCIA_ID)
    role: str | None = None
    resources: ResourceRequirements | None = None
    bandwidth_limits: list[BandwidthLimit] | None = None


class ScheduleConfig(WireModel):
    min_reserved_members: int | None = Field(default=None, ge=0)
    resource_reserved_seconds: int | None = Field(default=None, ge=0)
    lifecycle_seconds: int | None = Field(default=None, ge=0)
    retry_interval_seconds: int | None = Field(default=None, ge=0)


class KusciaTaskTemplate(WireModel):
    alias: str = Field(min_length=1)
    task_id: str | None = Field(default=None, alias="taskID", pattern=RFC1123, max_length=63)
    dependencies: list[str] | None = None
    tolerable: bool | None = None
    app_image: str = Field(min_length=1)
    task_input_config: str = Field(
        description="JSON string given to the task (BFIA: the component's config)."
    )
    schedule_config: ScheduleConfig | None = None
    priority: int | None = None
    parties: list[JobParty] = Field(min_length=1, max_length=32)


class KusciaJobSpec(WireModel):
    flow_id: str | None = Field(default=None, alias="flowID")
    initiator: str = Field(min_length=1, max_length=63, pattern=KUSCIA_ID)
    schedule_mode: Literal["Strict", "BestEffort"] | None = None
    max_parallelism: int | None = Field(default=None, ge=1, le=128)
    tasks: list[KusciaTaskTemplate] = Field(min_length=1, max_length=128)

    model_config = WireModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.tasks.exists(t, t.parties.exists(p, p.domainID == self.initiator))",
                    "message": "initiator must be the domainID of a party of at least one task",
                    "fieldPath": ".initiator",
                }
            ]
        }
    }


class KusciaJobStatus(ConditionedStatus):
    phase: str | None = None
    approve_status: dict[str, str] | None = None
    stage_status: dict[str, str] | None = None
    reason: str | None = None
    message: str | None = None
    party_task_create_status: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    task_status: dict[str, str] | None = None
    start_time: str | None = None
    completion_time: str | None = None
    last_reconcile_time: str | None = None
    mirror: MirrorStatus | None = None


class KusciaJob(WireModel):
    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = "KusciaJob"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: KusciaJobSpec
    status: KusciaJobStatus | None = None


KD_PRINTER_COLUMNS = [
    {"name": "TotalParties", "type": "integer", "jsonPath": ".status.totalParties"},
    {"name": "AvailableParties", "type": "integer", "jsonPath": ".status.availableParties"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

KJ_PRINTER_COLUMNS = [
    {"name": "StartTime", "type": "date", "jsonPath": ".status.startTime"},
    {"name": "CompletionTime", "type": "date", "jsonPath": ".status.completionTime"},
    {"name": "LastReconcileTime", "type": "date", "jsonPath": ".status.lastReconcileTime"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
