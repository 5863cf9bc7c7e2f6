"""Everything a reconcile needs, created once at operator start-up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..adapters.kube import KubeClient
from .cache import IndexedCache, ObjectCache


@dataclass
class Config:
    """Operator settings from the command line and environment."""

    workers: int = 16
    namespaces: list[str] | None = None  # None: all namespaces
    kuscia_url: str | None = None
    kuscia_credentials_dir: str | None = None
    bfia_url: str | None = None
    mirror_all: bool = False
    kuscia_poll_interval: float = 10.0
    kuscia_timeout: float = 10.0  # seconds one Kuscia API attempt may take
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    leader_election_namespace: str | None = None  # set: only the holder of the Lease reconciles


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim_object(obj: dict[str, Any]) -> dict[str, Any]:
    """Our own objects minus what no reconcile reads: managedFields, and the copy of the whole object that
    client-side `kubectl apply` keeps in an annotation. Both grow with the object; at a few thousand
    objects they are most of the cache."""
    meta = obj.get("metadata") or {}
    if "managedFields" not in meta and LAST_APPLIED not in (meta.get("annotations") or {}):
        return obj
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
    return {**obj, "metadata": meta}


def slim_revision(obj: dict[str, Any]) -> dict[str, Any]:
    """Revisions are kept only for readiness and replicas; dropping the rest keeps memory flat at scale."""
    meta = obj.get("metadata", {})
    status = obj.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "resourceVersion": meta.get("resourceVersion"),
            "labels": {
                k: v
                for k, v in (meta.get("labels") or {}).items()
                if k.startswith("serving.knative.dev/")
                or k == "elasticserving.paddlepaddle.org/paddleservice"
            },
        },
        "status": {
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
            "actualReplicas": status.get("actualReplicas"),
        },
    }


def revision_service(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, Knative Service) a Revision belongs to."""
    meta = obj.get("metadata", {})
    service = (meta.get("labels") or {}).get("serving.knative.dev/service")
    return (meta.get("namespace", ""), service) if service else None


def slim_knative_service(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            k: meta[k]
            for k in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "labels",
                "annotations",
                "ownerReferences",
                "deletionTimestamp",
            )
            if k in meta
        },
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }


@dataclass
class Context:
    config: Config
    kube: KubeClient
    paddleservices: ObjectCache = field(default_factory=lambda: ObjectCache(slim_object))
    knative_services: ObjectCache = field(default_factory=lambda: ObjectCache(slim_knative_service))
    revisions: IndexedCache = field(default_factory=lambda: IndexedCache(revision_service, slim_revision))
    kuscia_jobs: ObjectCache = field(default_factory=lambda: ObjectCache(slim_object))
    kuscia_deployments: ObjectCache = field(default_factory=lambda: ObjectCache(slim_object))
    # Per object: what we last told the user through a Warning Event, so it is said once per generation.
    warned: dict[tuple[str, str], int] = field(default_factory=dict)
    queues: dict[str, Any] = field(default_factory=dict)
    kuscia: Any = None  # KusciaHub, when a Kuscia connection is configured or objects need one
    tasks: list[Any] = field(default_factory=list)
