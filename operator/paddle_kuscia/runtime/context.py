"""Everything a reconcile needs, created once at operator start-up."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..adapters.kube import KubeClient
from ..models.base import LAST_APPLIED
from .cache import IndexedCache, ObjectCache
from .queue import WorkQueue

if TYPE_CHECKING:
    from .kuscia_hub import KusciaHub  # it takes the Context: a run-time import would be circular

# Settings that the environment can set when no flag does (the flag wins). A Kubernetes Deployment sets
# POD_NAMESPACE from the downward API; the Kuscia ones are there for whoever prefers them to flags.
ENVIRONMENT = {
    "kuscia_url": "KUSCIA_API_URL",
    "kuscia_credentials_dir": "KUSCIA_CREDENTIALS_DIR",
    "bfia_url": "KUSCIA_BFIA_URL",
    "kuscia_timeout": "KUSCIA_API_TIMEOUT",
    "leader_election_namespace": "POD_NAMESPACE",
    "log_format": "PADDLE_KUSCIA_LOG_FORMAT",
}


@dataclass(frozen=True)
class Config:
    """Every operator setting, from `paddle-kuscia run`'s flags and the environment; the defaults live here."""

    namespaces: tuple[str, ...] = ()  # watched namespaces, globs allowed; empty: all namespaces
    workers: int = 16  # concurrent reconciles per kind
    kuscia_url: str | None = None
    kuscia_credentials_dir: str | None = None
    bfia_url: str | None = None
    mirror_all: bool = False  # mirror every KusciaJob/KusciaDeployment, not only annotated ones
    kuscia_poll_interval: float = 10.0  # seconds between status batch queries
    kuscia_timeout: float = 10.0  # seconds one Kuscia API attempt may take
    backoff_base: float = 1.0  # first retry delay after a failed reconcile
    backoff_max: float = 300.0
    leader_elect: bool = False  # several instances; only the holder of the Lease reconciles
    leader_election_namespace: str = "paddle-kuscia-system"
    leader_election_name: str = "paddle-kuscia-operator"  # one Lease per shard when namespaces are split
    liveness: str | None = None  # kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    log_format: str = "plain"  # or json
    verbose: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Config:
        """The defaults, with what the environment sets (empty variables count as unset)."""
        defaults = cls()
        given: dict[str, Any] = {}
        for name, variable in ENVIRONMENT.items():
            value = environ.get(variable)
            if value:
                given[name] = float(value) if isinstance(getattr(defaults, name), float) else value
        return replace(defaults, **given)

    @property
    def lease_namespace(self) -> str | None:
        """Where the leader-election Lease lives; None: no leader election, this instance acts at once."""
        return self.leader_election_namespace if self.leader_elect else None

    def watches(self, namespace: str) -> bool:
        """Whether `namespace` is one this operator serves (its `--namespace` names and globs; all without)."""
        return not self.namespaces or any(fnmatch.fnmatchcase(namespace, n) for n in self.namespaces)

    @property
    def listed_namespaces(self) -> list[str] | None:
        """The namespaces to list one by one, or None to list across all (every namespace, or globs)."""
        if not self.namespaces or any(c in n for n in self.namespaces for c in "*?["):
            return None
        return list(self.namespaces)


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
    """The operator's state, made at start-up from its `Config` and handed to every reconcile."""

    config: Config
    kube: KubeClient
    paddleservices: ObjectCache = field(default_factory=lambda: ObjectCache(slim_object))
    knative_services: ObjectCache = field(default_factory=lambda: ObjectCache(slim_knative_service))
    revisions: IndexedCache = field(default_factory=lambda: IndexedCache(revision_service, slim_revision))
    kuscia_jobs: ObjectCache = field(default_factory=lambda: ObjectCache(slim_object))
    kuscia_deployments: ObjectCache = field(default_factory=lambda: ObjectCache(slim_object))
    # Per object: what we last told the user through a Warning Event, so it is said once per generation.
    warned: dict[tuple[str, str], int] = field(default_factory=dict)
    # Per object: since when (monotonic) a status step has been held back, to be written by a deadline.
    held: dict[tuple[str, str], float] = field(default_factory=dict)
    queues: dict[str, WorkQueue] = field(default_factory=dict)
    kuscia: KusciaHub = field(init=False)  # set right after the context is made: the hub needs it
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
