"""A stand-in for Knative Serving's controllers, driving Knative's real CRDs in a real kube-apiserver.

Knative's data plane cannot run in the test environment (no kubelet, no container runtime), so this module
plays Knative's service, configuration, revision and route reconcilers: it watches `serving.knative.dev/v1`
objects in all namespaces and writes the children and status fields Knative would write, with Knative's
condition reasons and messages. docs/knative-simulator.md maps each behaviour to the Knative source it comes
from and lists what is not simulated.

    with KnativeSimulator(kubeconfig, ready_delay=0.3) as sim:   # thread runner for pytest
        ...
        sim.fail_revision("ns", "svc-00002", "ExitCode1", "Container failed with: boom")

`hack/knative-sim` runs the same code as a process (`KnativeSimulator.run()` on its own event loop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

log = logging.getLogger("knative_sim")

ADMISSION_MANIFEST = Path(__file__).with_name("knative-admission.yaml")

GROUP_VERSION = "serving.knative.dev/v1"
SERVICES, CONFIGURATIONS, REVISIONS, ROUTES = "services", "configurations", "revisions", "routes"
RESOURCES = (SERVICES, CONFIGURATIONS, REVISIONS, ROUTES)
KINDS = {SERVICES: "Service", CONFIGURATIONS: "Configuration", REVISIONS: "Revision", ROUTES: "Route"}

# Label and annotation keys (knative.dev/serving pkg/apis/serving/register.go).
SERVICE_LABEL = "serving.knative.dev/service"
SERVICE_UID_LABEL = "serving.knative.dev/serviceUID"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
CONFIGURATION_UID_LABEL = "serving.knative.dev/configurationUID"
CONFIGURATION_GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
ROUTING_STATE_LABEL = "serving.knative.dev/routingState"
ROUTING_STATE_MODIFIED_ANNOTATION = "serving.knative.dev/routingStateModified"
ROUTES_ANNOTATION = "serving.knative.dev/routes"
CREATOR_ANNOTATION = "serving.knative.dev/creator"
UPDATER_ANNOTATION = "serving.knative.dev/lastModifier"
ROLLOUT_DURATION_ANNOTATIONS = ("serving.knative.dev/rollout-duration", "serving.knative.dev/rolloutDuration")
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
MIN_SCALE_ANNOTATIONS = ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/minScale")
INITIAL_SCALE_ANNOTATIONS = ("autoscaling.knative.dev/initial-scale", "autoscaling.knative.dev/initialScale")

# The simulator's own hooks, read from a Revision's annotations (copied there from the template).
FAIL_ANNOTATION = "simulator.paddle-kuscia.io/fail"
FAIL_MESSAGE_ANNOTATION = "simulator.paddle-kuscia.io/fail-message"
READY_DELAY_ANNOTATION = "simulator.paddle-kuscia.io/ready-delay"

DEFAULT_CONTAINER_NAME = "user-container"
USER_AGENT = "knative-sim (paddle-kuscia-operator tests)"  # how its writes show up in the audit log
CLUSTER_LOCAL_DOMAIN = "svc.cluster.local"

# A Lease makes the simulator exclusive: two of them on one API server would fight over every status.
LEASE_NAMESPACE, LEASE_NAME, LEASE_SECONDS = "kube-system", "knative-sim.paddle-kuscia.io", 15

Key = tuple[str, str, str]  # (resource, namespace, name)
Obj = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Small helpers on plain dicts
# --------------------------------------------------------------------------------------------------


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _labels(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("labels") or {}


def _annotations(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("annotations") or {}


def _generation(obj: Obj) -> int:
    return int(_meta(obj).get("generation") or 0)


def _deleting(obj: Obj) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def _template(obj: Obj) -> Obj:
    return (obj.get("spec") or {}).get("template") or {}


def _template_name(obj: Obj) -> str:
    return (_template(obj).get("metadata") or {}).get("name") or ""


def _condition(status: Obj | None, ctype: str) -> Obj | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def _controller_ref(owner: Obj) -> Obj:
    """The ownerReference Knative's kmeta.NewControllerRef puts on a child."""
    return {
        "apiVersion": owner.get("apiVersion", GROUP_VERSION),
        "kind": owner["kind"],
        "name": _meta(owner)["name"],
        "uid": _meta(owner)["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _controller_name(obj: Obj, kind: str) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return ref.get("name")
    return None


def _controlled_by(obj: Obj, owner: Obj) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == _meta(owner).get("uid")
        for ref in _meta(obj).get("ownerReferences") or []
    )


def _semantic_equal(a: Any, b: Any) -> bool:
    """Deep equality that, like apimachinery's equality.Semantic, treats absent, null and empty alike."""

    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: norm(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v not in (None, {}, [])}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return norm(a) == norm(b)


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_annotation(annotations: dict[str, str], keys: Iterable[str], default: int) -> int:
    """The first of `keys` present (Knative's kmap.KeyPriority), parsed as an int."""
    for key in keys:
        if key in annotations:
            try:
                return int(annotations[key])
            except ValueError:
                return default
    return default


def child_name(parent: str, suffix: str) -> str:
    """Knative's kmeta.ChildName: `parent+suffix`, shortened with an md5 of the parent past 63 chars."""
    longest, head = 63, 63 - 32
    if len(parent) <= longest - len(suffix):
        return parent + suffix
    if head - len(suffix) <= 0:
        digest = hashlib.md5((parent + suffix).encode()).hexdigest()
        name = parent[:head] + digest
        name += suffix[: max(0, longest - len(name))]
    else:
        name = parent[: head - len(suffix)] + hashlib.md5(parent.encode()).hexdigest() + suffix
    return name.rstrip("-.")


def generated_revision_name(configuration: str, generation: int) -> str:
    """The name Knative's configuration reconciler gives the Revision of a template without a BYO name."""
    return child_name(configuration, f"-{generation:05d}")


def image_digest(image: str) -> str:
    """A stable stand-in for the digest Knative resolves a tag to (`repo@sha256:...`)."""
    if "@sha256:" in image:
        return image
    repo = image
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        repo = image[:colon]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


# --------------------------------------------------------------------------------------------------
# Knative's condition sets (knative.dev/pkg apis/condition_set.go), on plain status dicts
# --------------------------------------------------------------------------------------------------

READY = "Ready"


@dataclass(frozen=True)
class ConditionSet:
    """A "living" condition set: `Ready` summarises the terminal `dependents`."""

    dependents: tuple[str, ...] = ()
    happy: str = READY

    def manage(self, status: Obj) -> _ConditionManager:
        return _ConditionManager(self, status)


class _ConditionManager:
    """Knative's ConditionManager: MarkTrue/MarkUnknown/MarkFalse with the same propagation to `Ready`."""

    def __init__(self, cset: ConditionSet, status: Obj) -> None:
        self.cset, self.status = cset, status

    def get(self, ctype: str) -> Obj | None:
        return _condition(self.status, ctype)

    def _terminal(self, ctype: str) -> bool:
        return ctype == self.cset.happy or ctype in self.cset.dependents

    def set(self, ctype: str, status: str, reason: str = "", message: str = "") -> None:
        """SetCondition: keep lastTransitionTime when nothing but the time would change; keep types sorted."""
        new: Obj = {"type": ctype, "status": status}
        if not self._terminal(ctype):
            new["severity"] = "Info"
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        kept = []
        for cond in self.status.get("conditions") or []:
            if cond.get("type") != ctype:
                kept.append(cond)
            elif {k: v for k, v in cond.items() if k != "lastTransitionTime"} == new:
                return
        new["lastTransitionTime"] = _now_rfc3339()
        kept.append(new)
        self.status["conditions"] = sorted(kept, key=lambda c: c.get("type", ""))

    def _unhappy_dependent(self) -> Obj | None:
        if not self.cset.dependents:
            return None
        terminal = [
            c
            for c in self.status.get("conditions") or []
            if not c.get("severity") and c.get("type") != self.cset.happy
        ]
        terminal.sort(key=lambda c: c.get("lastTransitionTime", ""), reverse=True)
        for wanted in ("False", "Unknown"):
            for cond in terminal:
                if cond.get("status") == wanted:
                    return cond
        if len(terminal) != len(self.cset.dependents):
            return {"status": "Unknown"}
        return None

    def _mark_happy(self, ctype: str) -> None:
        unhappy = self._unhappy_dependent()
        if unhappy is not None:
            self.set(
                self.cset.happy, unhappy["status"], unhappy.get("reason", ""), unhappy.get("message", "")
            )
        elif ctype != self.cset.happy:
            self.set(self.cset.happy, "True")

    def mark_true(self, ctype: str) -> None:
        self.set(ctype, "True")
        self._mark_happy(ctype)

    def mark_true_with_reason(self, ctype: str, reason: str, message: str) -> None:
        self.set(ctype, "True", reason, message)
        self._mark_happy(ctype)

    def mark_unknown(self, ctype: str, reason: str, message: str) -> None:
        self.set(ctype, "Unknown", reason, message)
        is_dependent = False
        for dep in self.cset.dependents:
            cond = self.get(dep)
            if cond is not None and cond.get("status") == "False":
                happy = self.get(self.cset.happy)
                if not (happy and happy.get("status") == "False"):
                    self.mark_false(self.cset.happy, reason, message)
                return
            if dep == ctype:
                is_dependent = True
        if is_dependent:
            self.set(self.cset.happy, "Unknown", reason, message)

    def mark_false(self, ctype: str, reason: str, message: str) -> None:
        types = [ctype] + ([self.cset.happy] if ctype in self.cset.dependents else [])
        for t in types:
            self.set(t, "False", reason, message)


SERVICE_CONDITIONS = ConditionSet(("ConfigurationsReady", "RoutesReady"))
CONFIGURATION_CONDITIONS = ConditionSet()
REVISION_CONDITIONS = ConditionSet(("ResourcesAvailable", "ContainerHealthy"))
ROUTE_CONDITIONS = ConditionSet(("AllTrafficAssigned", "IngressReady", "CertificateProvisioned"))


def _pre_process(status: Obj, generation: int) -> None:
    """knative.dev/pkg reconciler.PreProcessReconcile: a new generation resets Ready to Unknown."""
    if status.get("observedGeneration") != generation:
        # "unsucessfully" is spelled as in Knative.
        ConditionSet().manage(status).mark_unknown(
            READY, "NewObservedGenFailure", "unsucessfully observed a new generation"
        )


def _is_ready(obj: Obj) -> bool:
    """Knative's IsReady: the current generation is observed and Ready is True."""
    status = obj.get("status") or {}
    cond = _condition(status, READY)
    return status.get("observedGeneration") == _generation(obj) and bool(
        cond and cond.get("status") == "True"
    )


# --------------------------------------------------------------------------------------------------
# Desired children, built like Knative's resources packages (pure functions of the parent)
# --------------------------------------------------------------------------------------------------


def make_configuration(service: Obj, existing: Obj | None = None) -> Obj:
    """pkg/reconciler/service/resources/configuration.go MakeConfigurationFromExisting."""
    meta = _meta(service)
    excluded = {LAST_APPLIED_ANNOTATION, *ROLLOUT_DURATION_ANNOTATIONS}
    annotations = {k: v for k, v in _annotations(service).items() if k not in excluded}
    routes = {
        r for r in (_annotations(existing).get(ROUTES_ANNOTATION, "") if existing else "").split(",") if r
    }
    routes.add(meta["name"])
    annotations[ROUTES_ANNOTATION] = ",".join(sorted(routes))
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Configuration",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "ownerReferences": [_controller_ref(service)],
            "labels": {**_labels(service), SERVICE_LABEL: meta["name"], SERVICE_UID_LABEL: meta["uid"]},
            "annotations": annotations,
        },
        "spec": {"template": copy.deepcopy(_template(service))},
    }


def default_traffic(traffic: list[Obj] | None) -> list[Obj]:
    """The traffic Knative's defaulting webhook leaves on a Service (route_defaults.go SetDefaults)."""
    targets = copy.deepcopy(traffic) if traffic else [{"percent": 100, "latestRevision": True}]
    for target in targets:
        target.setdefault("latestRevision", not target.get("revisionName"))
        target.setdefault("percent", 0)
    return targets


def make_route(service: Obj) -> Obj:
    """pkg/reconciler/service/resources/route.go MakeRoute (on the defaulted Service spec)."""
    meta = _meta(service)
    traffic = default_traffic((service.get("spec") or {}).get("traffic"))
    for target in traffic:
        if not target.get("revisionName"):
            target["configurationName"] = meta["name"]
    route_meta: Obj = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "ownerReferences": [_controller_ref(service)],
        "labels": {**_labels(service), SERVICE_LABEL: meta["name"]},
    }
    annotations = {k: v for k, v in _annotations(service).items() if k != LAST_APPLIED_ANNOTATION}
    if annotations:
        route_meta["annotations"] = annotations
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Route",
        "metadata": route_meta,
        "spec": {"traffic": traffic},
    }


def make_revision(configuration: Obj, now: str) -> Obj:
    """pkg/reconciler/configuration/resources/revision.go MakeRevision."""
    cmeta = _meta(configuration)
    template = _template(configuration)
    meta = copy.deepcopy(template.get("metadata") or {})
    meta["namespace"] = cmeta["namespace"]
    if not meta.get("name"):
        meta["name"] = generated_revision_name(cmeta["name"], _generation(configuration))
    labels = meta.setdefault("labels", {})
    annotations = meta.setdefault("annotations", {})
    labels[ROUTING_STATE_LABEL] = "pending"
    annotations[ROUTING_STATE_MODIFIED_ANNOTATION] = now
    labels[CONFIGURATION_LABEL] = cmeta["name"]
    labels[CONFIGURATION_GENERATION_LABEL] = str(_generation(configuration))
    labels[CONFIGURATION_UID_LABEL] = cmeta["uid"]
    for key in (SERVICE_LABEL, SERVICE_UID_LABEL):
        if _labels(configuration).get(key):
            labels[key] = _labels(configuration)[key]
    cann = _annotations(configuration)
    if UPDATER_ANNOTATION in cann:
        annotations[CREATOR_ANNOTATION] = cann[UPDATER_ANNOTATION]
    if ROUTES_ANNOTATION in cann:
        annotations[ROUTES_ANNOTATION] = cann[ROUTES_ANNOTATION]
        labels[ROUTING_STATE_LABEL] = "active"
    meta["ownerReferences"] = [*meta.get("ownerReferences", []), _controller_ref(configuration)]
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Revision",
        "metadata": meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


@dataclass(frozen=True)
class Failure:
    """Why a Revision failed: a Knative reason, its message, and the condition Knative would put it on."""

    reason: str
    message: str

    @property
    def condition(self) -> str:
        # Knative reports a missing image or a crashing container on ContainerHealthy and a Deployment or Pod
        # that never becomes available (progress deadline, unschedulable, image pull) on ResourcesAvailable.
        if self.reason == "ContainerMissing" or self.reason.startswith("ExitCode"):
            return "ContainerHealthy"
        return "ResourcesAvailable"


def _default_failure_message(reason: str, image: str) -> str:
    if reason == "ContainerMissing":
        return f'Unable to fetch image "{image}": simulated failure'
    if reason.startswith("ExitCode"):
        return "Container failed with: simulated failure"
    if reason == "ProgressDeadlineExceeded":
        return "Initial scale was never achieved"
    return "simulated failure"


def requested_failure(revision: Obj) -> Failure | None:
    """The failure asked of a Revision: its fail annotation (from the template or added later), or an image
    containing "fail"."""
    annotations = _annotations(revision)
    images = [c.get("image", "") for c in (revision.get("spec") or {}).get("containers") or []]
    if FAIL_ANNOTATION in annotations:
        reason = annotations[FAIL_ANNOTATION]
        if reason in ("", "true"):
            reason = "ProgressDeadlineExceeded"
        message = annotations.get(FAIL_MESSAGE_ANNOTATION) or _default_failure_message(
            reason, images[0] if images else ""
        )
        return Failure(reason, message)
    for image in images:
        if "fail" in image:
            return Failure("ExitCode1", f'Container failed with: simulated crash of image "{image}"')
    return None


# --------------------------------------------------------------------------------------------------
# A small REST client over a kubeconfig
# --------------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message

    @classmethod
    def from_response(cls, resp: httpx.Response) -> ApiError:
        try:
            body = resp.json()
        except ValueError:
            body = {"message": resp.text}
        return cls(resp.status_code, body.get("reason", ""), body.get("message", ""))


class _Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


@dataclass(frozen=True)
class _Connection:
    server: str
    ssl_context: ssl.SSLContext
    headers: dict[str, str]


def _read_kubeconfig(path: Path) -> _Connection:
    """Server, TLS and credentials of the current context (inline data or file references, cert or token)."""
    cfg = yaml.safe_load(Path(path).read_text())
    base = Path(path).resolve().parent
    ctx_name = cfg.get("current-context")
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts") or []}
    ctx = contexts.get(ctx_name) or next(iter(contexts.values()))
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in cfg.get("users") or [] if u["name"] == ctx.get("user")), {})

    def blob(entry: Obj, key: str) -> bytes | None:
        if entry.get(f"{key}-data"):
            return base64.b64decode(entry[f"{key}-data"])
        if entry.get(key):
            return (base / entry[key]).read_bytes()
        return None

    ssl_context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    elif (ca := blob(cluster, "certificate-authority")) is not None:
        ssl_context = ssl.create_default_context(cadata=ca.decode())
    cert, key = blob(user, "client-certificate"), blob(user, "client-key")
    if cert and key:
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            cert_file.write_bytes(cert)
            key_file.touch(mode=0o600)
            key_file.write_bytes(key)
            ssl_context.load_cert_chain(cert_file, key_file)
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    token = user.get("token") or (
        Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None
    )
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return _Connection(cluster["server"].rstrip("/"), ssl_context, headers)


def _path(
    resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    path = f"/apis/{GROUP_VERSION}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{resource}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class _Api:
    """Async JSON requests and watch streams against one API server."""

    def __init__(self, kubeconfig: Path) -> None:
        conn = _read_kubeconfig(kubeconfig)
        self.server = conn.server
        self._client = httpx.AsyncClient(
            base_url=conn.server, verify=conn.ssl_context, headers=conn.headers, timeout=httpx.Timeout(15.0)
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, body: Obj | None = None, **params: str) -> Obj:
        resp = await self._client.request(method, path, json=body, params=params or None)
        if resp.status_code >= 400:
            raise ApiError.from_response(resp)
        return resp.json()

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[Obj]:
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "240",
        }
        timeout = httpx.Timeout(connect=5.0, read=300.0, write=5.0, pool=5.0)
        async with self._client.stream("GET", path, params=params, timeout=timeout) as resp:
            if resp.status_code == 410:
                raise _Gone()
            if resp.status_code >= 400:
                await resp.aread()
                raise ApiError.from_response(resp)
            async for line in resp.aiter_lines():
                if line.strip():
                    yield json.loads(line)


# --------------------------------------------------------------------------------------------------
# Informer caches and the work queue
# --------------------------------------------------------------------------------------------------


def _rv(obj: Obj) -> int:
    # The simulator only talks to an etcd-backed kube-apiserver, whose resourceVersions are increasing
    # integers; comparing them keeps a late watch event from overwriting an object this process just wrote.
    try:
        return int(_meta(obj).get("resourceVersion") or 0)
    except ValueError:
        return 0


class _Store:
    """The informer cache of one resource: what Knative's listers read.

    Deleted names keep a tombstone (the resourceVersion of their deletion), so a write response that arrives after
    the watch already reported the deletion cannot bring the object back.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Obj] = {}
        self._tombstones: dict[tuple[str, str], int] = {}
        # Indexes, as client-go's indexers keep them: by namespace, and by namespace + label.
        self._by_ns: dict[str, dict[str, Obj]] = {}
        self._by_label: dict[tuple[str, str, str], set[str]] = {}

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._items.get((namespace, name))

    def list(self, namespace: str, labels: dict[str, str] | None = None) -> list[Obj]:
        in_ns = self._by_ns.get(namespace) or {}
        if labels:
            first, *rest = labels.items()
            names = self._by_label.get((namespace, *first)) or set()
            out = [in_ns[n] for n in names if all(_labels(in_ns[n]).get(k) == v for k, v in rest)]
        else:
            out = list(in_ns.values())
        return sorted(out, key=lambda o: _meta(o)["name"])

    def names(self, namespace: str) -> list[str]:
        return list(self._by_ns.get(namespace) or ())

    def _index(self, key: tuple[str, str], old: Obj | None, new: Obj | None) -> None:
        ns, name = key
        for k, v in _labels(old).items() if old is not None else ():
            names = self._by_label.get((ns, k, v))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_label[(ns, k, v)]
        if new is None:
            in_ns = self._by_ns.get(ns)
            if in_ns is not None:
                in_ns.pop(name, None)
                if not in_ns:
                    del self._by_ns[ns]
            return
        self._by_ns.setdefault(ns, {})[name] = new
        for k, v in _labels(new).items():
            self._by_label.setdefault((ns, k, v), set()).add(name)

    def upsert(self, obj: Obj) -> bool:
        key = (_meta(obj)["namespace"], _meta(obj)["name"])
        old = self._items.get(key)
        if (old is not None and _rv(old) >= _rv(obj)) or _rv(obj) <= self._tombstones.get(key, -1):
            return False
        self._tombstones.pop(key, None)
        self._items[key] = obj
        self._index(key, old, obj)
        return True

    def delete(self, obj: Obj) -> bool:
        key = (_meta(obj)["namespace"], _meta(obj)["name"])
        self._tombstones[key] = max(_rv(obj), self._tombstones.get(key, 0))
        old = self._items.pop(key, None)
        if old is not None:
            self._index(key, old, None)
        return old is not None

    def replace(self, objs: list[Obj], resource_version: str) -> list[Obj]:
        """Swap in a fresh list; return every object that was added, changed or removed."""
        fresh = {(_meta(o)["namespace"], _meta(o)["name"]): o for o in objs}
        changed = [o for k, o in fresh.items() if _rv(self._items.get(k) or {}) != _rv(o)]
        removed = [o for k, o in self._items.items() if k not in fresh]
        listed_at = _rv({"metadata": {"resourceVersion": resource_version}})
        self._tombstones = {k: v for k, v in self._tombstones.items() if k not in fresh}
        for obj in removed:
            self._tombstones[(_meta(obj)["namespace"], _meta(obj)["name"])] = listed_at
        self._items = fresh
        self._by_ns, self._by_label = {}, {}
        for key, obj in fresh.items():
            self._index(key, None, obj)
        return changed + removed


class _WorkQueue:
    """client-go's workqueue semantics: a key is queued once and never reconciled by two workers at once."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(delay, 0.0), self.add, key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)


class _Backoff:
    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first, self.cap, self.attempt = first, cap, 0

    def next(self) -> float:
        delay = min(self.first * (2**self.attempt), self.cap)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class _ReconcileError(Exception):
    """The reconcile recorded its failure in status; retry later."""


# --------------------------------------------------------------------------------------------------
# Route traffic resolution (pkg/reconciler/route/traffic)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TargetError:
    """traffic.TargetError: why a Route cannot assign its traffic; failures win over not-yet-ready."""

    kind: str  # missing, unready-configuration, unready-revision, not-owned
    name: str
    failure: bool
    detail: str = ""

    def mark(self, status: Obj) -> None:
        m = ROUTE_CONDITIONS.manage(status)
        if self.kind == "missing":
            target_kind, name = self.name.split("/", 1)
            m.mark_false(
                "AllTrafficAssigned",
                f"{target_kind}Missing",
                f'{target_kind} "{name}" referenced in traffic not found.',
            )
        elif self.kind == "unready-configuration":
            if self.failure:
                m.mark_false(
                    "AllTrafficAssigned",
                    "RevisionMissing",
                    f'Configuration "{self.name}" does not have any ready Revision.',
                )
            else:
                m.mark_unknown(
                    "AllTrafficAssigned",
                    "RevisionMissing",
                    f'Configuration "{self.name}" is waiting for a Revision to become ready.',
                )
        elif self.kind == "unready-revision":
            if self.failure:
                m.mark_false(
                    "AllTrafficAssigned", "RevisionMissing", f'Revision "{self.name}" failed to become ready.'
                )
            else:
                m.mark_unknown(
                    "AllTrafficAssigned", "RevisionMissing", f'Revision "{self.name}" is not yet ready.'
                )
        else:
            m.mark_false("AllTrafficAssigned", "RevisionNotOwned", self.detail)


def _unready(obj: Obj, kind: str) -> _TargetError:
    cond = _condition(obj.get("status"), READY)
    return _TargetError(kind, _meta(obj)["name"], failure=bool(cond and cond.get("status") == "False"))


def resolve_traffic(
    route: Obj, configurations: _Store, revisions: _Store
) -> tuple[list[Obj] | None, _TargetError | None]:
    """traffic.BuildTrafficConfiguration + GetRevisionTrafficTargets: status traffic, or why none."""
    ns = _meta(route)["namespace"]
    route_service = _labels(route).get(SERVICE_LABEL, "")
    resolved: list[Obj] = []
    deferred: _TargetError | None = None
    for spec_target in default_traffic((route.get("spec") or {}).get("traffic") or []):
        error: _TargetError | None = None
        revision_name = ""
        if spec_target.get("revisionName"):
            revision_name = spec_target["revisionName"]
            rev = revisions.get(ns, revision_name)
            if rev is None:
                error = _TargetError("missing", f"Revision/{revision_name}", True)
            elif route_service and _labels(rev).get(SERVICE_LABEL, "") != route_service:
                owner = _labels(rev).get(SERVICE_LABEL, "")
                detail = (
                    f'Revision "{revision_name}" belongs to Service "{owner}", not Service "{route_service}".'
                    if owner
                    else f'Revision "{revision_name}" does not belong to Service "{route_service}".'
                )
                error = _TargetError("not-owned", revision_name, True, detail)
            elif not _is_ready(rev):
                error = _unready(rev, "unready-revision")
            elif (cfg_name := _labels(rev).get(CONFIGURATION_LABEL)) and configurations.get(
                ns, cfg_name
            ) is None:
                error = _TargetError("missing", f"Configuration/{cfg_name}", True)
        elif spec_target.get("configurationName"):
            cfg = configurations.get(ns, spec_target["configurationName"])
            if cfg is None:
                error = _TargetError("missing", f"Configuration/{spec_target['configurationName']}", True)
            elif not (cfg.get("status") or {}).get("latestReadyRevisionName"):
                error = _unready(cfg, "unready-configuration")
            else:
                revision_name = cfg["status"]["latestReadyRevisionName"]
                rev = revisions.get(ns, revision_name)
                if rev is None:
                    error = _TargetError("missing", f"Revision/{revision_name}", True)
                elif not _is_ready(rev):
                    error = _unready(rev, "unready-revision")
        else:
            continue
        if error is not None:
            if deferred is None or error.failure:
                deferred = error
            continue
        tag = spec_target.get("tag") or ""
        for entry in resolved:  # mergeIfNecessary
            if (
                (entry.get("tag") or "") == tag
                and entry["revisionName"] == revision_name
                and (entry["latestRevision"] == spec_target["latestRevision"])
            ):
                entry["percent"] += spec_target["percent"]
                break
        else:
            entry = {
                "revisionName": revision_name,
                "percent": spec_target["percent"],
                "latestRevision": spec_target["latestRevision"],
            }
            if tag:
                entry["tag"] = tag
            resolved.append(entry)
    if deferred is not None:
        return None, deferred
    return resolved, None


# --------------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------------


class KnativeSimulator:
    """Knative Serving's controllers for Services, Configurations, Revisions and Routes, minus a data plane.

    `ready_delay`: seconds a new Revision spends deploying before it becomes Ready (or fails).
    `scale_to_zero_delay`: seconds a ready, unrouted Revision without min-scale keeps its pods.
    `domain`: the config-domain suffix of external URLs.
    `admission`: install tests/support/knative-admission.yaml (Knative's webhook rules) on start.
    """

    def __init__(
        self,
        kubeconfig_path: str | os.PathLike[str],
        *,
        ready_delay: float = 0.3,
        scale_to_zero_delay: float = 2.0,
        domain: str = "example.com",
        admission: bool = True,
        workers: int = 4,
    ) -> None:
        self.kubeconfig_path = Path(kubeconfig_path)
        self.ready_delay = ready_delay
        self.scale_to_zero_delay = scale_to_zero_delay
        self.domain = domain
        self.admission = admission
        self.workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._api: _Api | None = None
        self._stores = {r: _Store() for r in RESOURCES}
        self._queue: _WorkQueue | None = None
        self._retries: dict[Key, _Backoff] = {}
        self._identity = f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.lease_holder: str | None = None  # another simulator's identity while waiting for the lease
        self._deploy_started: dict[str, float] = {}  # revision uid -> monotonic time first seen
        self._idle_since: dict[str, float] = {}  # revision uid -> monotonic time it was last seen unrouted

    # -- thread runner (pytest) -----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> KnativeSimulator:
        """Install the admission policy, then run the controllers in a background thread until stop()."""
        if self.admission:
            install_admission(self.kubeconfig_path)
        ready = threading.Event()

        def main() -> None:
            try:
                asyncio.run(self.run(on_ready=ready.set))
            except BaseException as exc:  # reported by start()/stop()
                self._thread_error = exc
                ready.set()

        self._thread = threading.Thread(target=main, name="knative-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            holder = self.lease_holder
            self.stop()
            if holder:
                raise RuntimeError(
                    f"another Knative simulator ({holder}) holds lease {LEASE_NAMESPACE}/{LEASE_NAME} on this "
                    "API server; run only one (stop hack/knative-sim or the other test session)"
                )
            raise TimeoutError(f"Knative simulator did not sync its caches within {timeout:.0f}s")
        if self._thread_error is not None:
            raise RuntimeError("Knative simulator failed to start") from self._thread_error
        return self

    def stop(self) -> None:
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def __enter__(self) -> KnativeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_revision(
        self,
        namespace: str,
        name: str,
        reason: str = "ExitCode1",
        message: str = "Container failed with: injected",
    ) -> None:
        """Make a Revision fail now (even a ready one), as if its pods crashed or never became available.

        Writes the fail annotations on the Revision (the same as `kubectl annotate revision NAME
        simulator.paddle-kuscia.io/fail=REASON`), so the failure is visible, survives a simulator restart and
        works whichever process runs the controllers. Returns once the API server accepted the annotation.
        """
        patch = {"metadata": {"annotations": {FAIL_ANNOTATION: reason, FAIL_MESSAGE_ANNOTATION: message}}}
        conn = _read_kubeconfig(self.kubeconfig_path)
        with httpx.Client(
            base_url=conn.server, verify=conn.ssl_context, headers=conn.headers, timeout=15
        ) as client:
            resp = client.patch(
                _path(REVISIONS, namespace, name),
                content=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"},
            )
        if resp.status_code >= 400:
            raise ApiError.from_response(resp)

    # -- event loop -----------------------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until stop() or request_stop(); `on_ready` fires once the lease is held and every cache synced.

        While another simulator holds the lease, wait for it (a crashed one's lease expires after 15 s).
        """
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._queue = _WorkQueue()
        self._stores = {r: _Store() for r in RESOURCES}
        self._api = _Api(self.kubeconfig_path)
        acquired = asyncio.Event()
        synced = {r: asyncio.Event() for r in RESOURCES}
        tasks = [asyncio.create_task(self._hold_lease(acquired), name="lease")]
        try:
            if not await self._wait_or_stop(acquired.wait(), tasks):
                return
            tasks += [asyncio.create_task(self._inform(r, synced[r]), name=f"watch-{r}") for r in RESOURCES]
            if not await self._wait_or_stop(asyncio.gather(*(e.wait() for e in synced.values())), tasks):
                return
            tasks += [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
            log.info("Started Knative simulator server=%s ready_delay=%s", self._api.server, self.ready_delay)
            if on_ready is not None:
                on_ready()
            await self._wait_or_stop(None, tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if acquired.is_set():
                await self._release_lease()
            await self._api.close()
            log.info("Stopped Knative simulator")

    async def _wait_or_stop(self, goal: Awaitable[Any] | None, tasks: list[asyncio.Task[None]]) -> bool:
        """Wait for `goal` (None: for ever). False once stop is requested; a background task's failure raises."""
        assert self._stop_event is not None
        stop = asyncio.create_task(self._stop_event.wait())
        target = asyncio.ensure_future(goal) if goal is not None else None
        try:
            waiting = [stop, *tasks, *([target] if target else [])]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done:
                    task.result()  # re-raises the task's error
                    raise RuntimeError(f"simulator task {task.get_name()} ended unexpectedly")
            return target is not None and target in done
        finally:
            stop.cancel()
            if target is not None and not target.done():
                target.cancel()

    async def _hold_lease(self, acquired: asyncio.Event) -> None:
        """Acquire the simulator's Lease (waiting while another live simulator holds it), then keep renewing it."""
        assert self._api is not None
        backoff, waiting_logged = _Backoff(0.2, 2.0), False
        while True:
            try:
                holder = await self._try_lease()
                backoff.reset()
                if holder is None:
                    if not acquired.is_set():
                        log.info(
                            "Acquired lease %s/%s identity=%s", LEASE_NAMESPACE, LEASE_NAME, self._identity
                        )
                        acquired.set()
                    self.lease_holder = None
                    await asyncio.sleep(LEASE_SECONDS / 3)
                    continue
                if acquired.is_set():
                    raise RuntimeError(f"another Knative simulator ({holder}) took over lease {LEASE_NAME}")
                self.lease_holder = holder
                if not waiting_logged:
                    log.warning("Waiting for lease %s/%s held by %s", LEASE_NAMESPACE, LEASE_NAME, holder)
                    waiting_logged = True
                await asyncio.sleep(1.0)
            except (httpx.HTTPError, ApiError, OSError) as exc:
                delay = backoff.next()
                log.info("Lease renewal failed error=%r retry_in=%.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def _try_lease(self) -> str | None:
        """Take or renew the Lease; return the other live holder's identity when it is not ours to take."""
        assert self._api is not None
        collection = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            lease = await self._api.request("GET", f"{collection}/{LEASE_NAME}")
        except ApiError as exc:
            if exc.code != 404:
                raise
            spec = {
                "holderIdentity": self._identity,
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": stamp,
                "renewTime": stamp,
            }
            body = {"metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE}, "spec": spec}
            await self._api.request(
                "POST", collection, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body}
            )
            return None
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = datetime.fromisoformat(spec["renewTime"]) if spec.get("renewTime") else None
        duration = spec.get("leaseDurationSeconds") or LEASE_SECONDS
        if holder and holder != self._identity and renewed and (now - renewed).total_seconds() < duration:
            return holder
        if holder != self._identity:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self._identity, leaseDurationSeconds=LEASE_SECONDS, renewTime=stamp)
        await self._api.request("PUT", f"{collection}/{LEASE_NAME}", {**lease, "spec": spec})
        return None

    async def _release_lease(self) -> None:
        """Hand the Lease back on a clean stop, so the next simulator need not wait for it to expire."""
        assert self._api is not None
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{LEASE_NAME}"
        with contextlib.suppress(httpx.HTTPError, ApiError, OSError):
            lease = await self._api.request("GET", path)
            if (lease.get("spec") or {}).get("holderIdentity") == self._identity:
                lease["spec"]["holderIdentity"] = ""
                await self._api.request("PUT", path, lease)

    def request_stop(self) -> None:
        """Stop run() from inside its own event loop (signal handlers)."""
        if self._stop_event is not None:
            self._stop_event.set()

    async def _inform(self, resource: str, synced: asyncio.Event) -> None:
        """List then watch one resource in all namespaces, forever; relist on 410 Gone, back off on errors."""
        assert self._api is not None
        store, backoff = self._stores[resource], _Backoff(0.2, 5.0)
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    listing = await self._api.request("GET", _path(resource))
                    items = listing.get("items") or []
                    for obj in items:
                        obj.setdefault("apiVersion", GROUP_VERSION)
                        obj.setdefault("kind", KINDS[resource])
                    resource_version = listing["metadata"]["resourceVersion"]
                    for obj in store.replace(items, resource_version):
                        self._on_change(resource, obj)
                    synced.set()
                async for event in self._api.watch(_path(resource), resource_version):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise _Gone()
                        raise ApiError(obj.get("code", 500), obj.get("reason", ""), obj.get("message", ""))
                    resource_version = _meta(obj).get("resourceVersion") or resource_version
                    if kind in ("ADDED", "MODIFIED"):
                        obj.setdefault("apiVersion", GROUP_VERSION)
                        obj.setdefault("kind", KINDS[resource])
                        if store.upsert(obj):
                            self._on_change(resource, obj)
                    elif kind == "DELETED" and store.delete(obj):
                        self._on_change(resource, obj)
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except _Gone:
                log.info("Relisting after 410 Gone resource=%s", resource)
                resource_version = None
            except (httpx.HTTPError, ApiError, OSError, ValueError) as exc:
                delay = backoff.next()
                log.info("Watch failed resource=%s error=%r retry_in=%.2fs", resource, exc, delay)
                await asyncio.sleep(delay)

    def _on_change(self, resource: str, obj: Obj) -> None:
        """Enqueue the object and everything whose reconcile reads it (Knative's informer event handlers)."""
        assert self._queue is not None
        ns, name = _meta(obj)["namespace"], _meta(obj)["name"]
        add = self._queue.add
        add((resource, ns, name))
        if resource in (CONFIGURATIONS, ROUTES) and (owner := _controller_name(obj, "Service")):
            add((SERVICES, ns, owner))
        if resource in (CONFIGURATIONS, REVISIONS):
            for route in self._stores[ROUTES].names(ns):
                add((ROUTES, ns, route))
        if resource == REVISIONS:
            # Configurations list revisions by label and look up BYO names; Services check BYO names too.
            for dependent in (CONFIGURATIONS, SERVICES):
                for other in self._stores[dependent].names(ns):
                    add((dependent, ns, other))
        if resource == ROUTES:
            for rev in self._stores[REVISIONS].names(ns):  # routing decides scale-to-zero
                add((REVISIONS, ns, rev))
        if resource == REVISIONS and _meta(obj).get("uid") and self._stores[REVISIONS].get(ns, name) is None:
            self._deploy_started.pop(_meta(obj)["uid"], None)
            self._idle_since.pop(_meta(obj)["uid"], None)

    async def _work(self) -> None:
        assert self._queue is not None
        reconcilers = {
            SERVICES: self._reconcile_service,
            CONFIGURATIONS: self._reconcile_configuration,
            REVISIONS: self._reconcile_revision,
            ROUTES: self._reconcile_route,
        }
        while True:
            key = await self._queue.get()
            try:
                await reconcilers[key[0]](key[1], key[2])
                self._retries.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._retries.setdefault(key, _Backoff()).next()
                if isinstance(exc, ApiError) and (exc.code == 409 or "is being terminated" in exc.message):
                    # Conflicts and writes into a namespace being deleted are routine; Knative retries them too.
                    log.debug("Requeued key=%s error=%r retry_in=%.2fs", "/".join(key), exc, delay)
                else:
                    log.info("Reconcile failed key=%s error=%r retry_in=%.2fs", "/".join(key), exc, delay)
                self._queue.add_after(key, delay)
            finally:
                self._queue.done(key)

    # -- writes ---------------------------------------------------------------------------------------------

    async def _write(self, resource: str, method: str, obj: Obj, sub: str | None = None) -> Obj:
        assert self._api is not None
        meta = _meta(obj)
        name = meta["name"] if method != "POST" else None
        written = await self._api.request(method, _path(resource, meta["namespace"], name, sub), obj)
        if self._stores[resource].upsert(written):
            self._on_change(resource, written)
        return written

    async def _write_status(self, resource: str, obj: Obj, status: Obj) -> None:
        if status == (obj.get("status") or {}):
            return
        try:
            await self._write(resource, "PUT", {**obj, "status": status}, sub="status")
        except ApiError as exc:
            if exc.code != 404:
                raise
            # The object is gone although the cache still had it: forget it rather than retry forever.
            if self._stores[resource].delete(obj):
                self._on_change(resource, obj)

    # -- Service (pkg/reconciler/service/service.go) --------------------------------------------------------

    async def _reconcile_service(self, ns: str, name: str) -> None:
        svc = self._stores[SERVICES].get(ns, name)
        if svc is None or _deleting(svc):
            return
        status = copy.deepcopy(svc.get("status") or {})
        _pre_process(status, _generation(svc))
        try:
            await self._service_body(svc, status)
        finally:
            status["observedGeneration"] = _generation(svc)
            await self._write_status(SERVICES, svc, status)

    async def _service_body(self, svc: Obj, status: Obj) -> None:
        m = SERVICE_CONDITIONS.manage(status)
        config = await self._service_child(
            svc, status, CONFIGURATIONS, make_configuration, "ConfigurationsReady"
        )
        config_status = config.get("status") or {}
        if _generation(config) != config_status.get("observedGeneration"):
            m.mark_unknown(
                "ConfigurationsReady",
                "OutOfDate",
                "The Configuration is still working to reflect the latest desired specification.",
            )
            if _template_name(config):
                return
        else:
            _propagate_configuration_status(status, config_status)
        if self._revision_name_taken(config):
            m.mark_false(
                "RoutesReady",
                "RevisionNameTaken",
                f'The revision name "{_template_name(config)}" is taken by a conflicting Revision, '
                "so traffic will not be migrated",
            )
            return
        route = await self._service_child(
            svc, status, ROUTES, lambda s, _existing: make_route(s), "RoutesReady"
        )
        route_status = route.get("status") or {}
        if _generation(route) != route_status.get("observedGeneration"):
            m.mark_unknown(
                "RoutesReady",
                "OutOfDate",
                "The Route is still working to reflect the latest desired specification.",
            )
        else:
            _propagate_route_status(status, route_status)
        _check_routes_not_ready(status, config, route)

    async def _service_child(
        self,
        svc: Obj,
        status: Obj,
        resource: str,
        build: Callable[[Obj, Obj | None], Obj],
        condition: str,
    ) -> Obj:
        """Create the Service's Configuration or Route, or clobber its spec, labels and annotations."""
        ns, name = _meta(svc)["namespace"], _meta(svc)["name"]
        kind = KINDS[resource]
        existing = self._stores[resource].get(ns, name)
        if existing is None:
            created = await self._write(resource, "POST", build(svc, None))
            log.info("Created %s namespace=%s name=%s", kind, ns, name)
            return created
        if not _controlled_by(existing, svc):
            SERVICE_CONDITIONS.manage(status).mark_false(
                condition, "NotOwned", f'There is an existing {kind} "{name}" that we do not own.'
            )
            raise _ReconcileError(f'service: "{name}" does not own {kind.lower()}: "{name}"')
        desired = build(svc, existing)
        if (
            _semantic_equal(desired["spec"], existing.get("spec"))
            and _semantic_equal(_labels(desired), _labels(existing))
            and _semantic_equal(_annotations(desired), _annotations(existing))
        ):
            return existing
        updated = copy.deepcopy(existing)
        updated["spec"] = desired["spec"]
        updated["metadata"]["labels"] = _labels(desired)
        updated["metadata"]["annotations"] = _annotations(desired)
        written = await self._write(resource, "PUT", updated)
        log.info("Updated %s namespace=%s name=%s generation=%s", kind, ns, name, _generation(written))
        return written

    def _revision_name_taken(self, config: Obj) -> bool:
        """service.go CheckNameAvailability: the BYO name belongs to another owner or to a different spec."""
        name = _template_name(config)
        if not name:
            return False
        rev = self._stores[REVISIONS].get(_meta(config)["namespace"], name)
        if rev is None:
            return False
        if not _controlled_by(rev, config):
            return True
        if _labels(rev).get(CONFIGURATION_GENERATION_LABEL) == str(_generation(config)):
            return False
        return not _semantic_equal(_template(config).get("spec"), rev.get("spec"))

    # -- Configuration (pkg/reconciler/configuration/configuration.go) --------------------------------------

    async def _reconcile_configuration(self, ns: str, name: str) -> None:
        cfg = self._stores[CONFIGURATIONS].get(ns, name)
        if cfg is None or _deleting(cfg):
            return
        status = copy.deepcopy(cfg.get("status") or {})
        _pre_process(status, _generation(cfg))
        try:
            await self._configuration_body(cfg, status)
        finally:
            status["observedGeneration"] = _generation(cfg)
            await self._write_status(CONFIGURATIONS, cfg, status)

    async def _configuration_body(self, cfg: Obj, status: Obj) -> None:
        m = CONFIGURATION_CONDITIONS.manage(status)
        ns = _meta(cfg)["namespace"]
        lcr, byo, problem = self._latest_created_revision(cfg)
        if problem == "missing":
            try:
                lcr = await self._write(REVISIONS, "POST", make_revision(cfg, _now_rfc3339()))
            except ApiError as exc:
                if exc.reason == "AlreadyExists":
                    raise  # a stale cache; the watch brings the revision and the retry finds it
                m.mark_false(
                    "Ready", "RevisionFailed", f"Revision creation failed with message: {exc.message}."
                )
                raise
            log.info("Created Revision namespace=%s name=%s", ns, _meta(lcr)["name"])
        elif problem == "conflict":
            message = f'revisions.serving.knative.dev "{_template_name(cfg)}" already exists'
            m.mark_false("Ready", "RevisionFailed", f"Revision creation failed with message: {message}.")
            return
        assert lcr is not None
        lcr_name = _meta(lcr)["name"]
        status["latestCreatedRevisionName"] = lcr_name
        if status.get("latestReadyRevisionName") != lcr_name:
            m.mark_unknown("Ready", "", "")
        ready = _condition(lcr.get("status"), READY)
        if ready is not None and ready.get("status") == "False":
            m.mark_false(
                "Ready",
                "RevisionFailed",
                f'Revision "{lcr_name}" failed with message: {ready.get("message", "")}.',
            )
        self._find_latest_ready(cfg, status, lcr, byo)

    def _latest_created_revision(self, cfg: Obj) -> tuple[Obj | None, bool, str | None]:
        """latestCreatedRevision + CheckNameAvailability: (revision, BYO?, None | "missing" | "conflict")."""
        revisions = self._stores[REVISIONS]
        ns, byo = _meta(cfg)["namespace"], _template_name(cfg)
        if byo:
            rev = revisions.get(ns, byo)
            if rev is None:
                return None, True, "missing"
            if not _controlled_by(rev, cfg):
                return None, True, "conflict"
            if _labels(rev).get(CONFIGURATION_GENERATION_LABEL) == str(_generation(cfg)):
                return rev, True, None
            if not _semantic_equal(_template(cfg).get("spec"), rev.get("spec")):
                return None, True, "conflict"
            return rev, True, None
        matches = revisions.list(
            ns,
            {CONFIGURATION_GENERATION_LABEL: str(_generation(cfg)), CONFIGURATION_LABEL: _meta(cfg)["name"]},
        )
        return (matches[0], False, None) if matches else (None, False, "missing")

    def _find_latest_ready(self, cfg: Obj, status: Obj, lcr: Obj, byo: bool) -> None:
        """findAndSetLatestReadyRevision: the newest ready revision between the last ready one and now."""
        revisions = self._stores[REVISIONS]
        ns, generation = _meta(cfg)["namespace"], _generation(cfg)
        candidates = revisions.list(ns, {CONFIGURATION_LABEL: _meta(cfg)["name"]})

        def config_generation(rev: Obj) -> int | None:
            try:
                return int(_labels(rev).get(CONFIGURATION_GENERATION_LABEL, ""))
            except ValueError:
                return None

        lrr_name = status.get("latestReadyRevisionName") or ""
        lrr = revisions.get(ns, lrr_name) if lrr_name else None
        if lrr is not None:
            start = config_generation(lrr)
            wanted = set(range(generation if start is None else start, generation + 1))
            if byo and (lcr_gen := config_generation(lcr)) is not None:
                wanted.add(lcr_gen)
            candidates = [r for r in candidates if config_generation(r) in wanted]
        template_name = _template_name(cfg)
        candidates.sort(key=lambda r: (_meta(r)["name"] != template_name, -(config_generation(r) or 0)))
        for rev in candidates:
            if _is_ready(rev):
                status["latestReadyRevisionName"] = _meta(rev)["name"]
                if status["latestReadyRevisionName"] == status.get("latestCreatedRevisionName"):
                    CONFIGURATION_CONDITIONS.manage(status).mark_true("Ready")
                if _meta(rev)["name"] != lrr_name:
                    log.info(
                        "Moved latestReadyRevisionName namespace=%s configuration=%s revision=%s",
                        ns,
                        _meta(cfg)["name"],
                        _meta(rev)["name"],
                    )
                return

    # -- Revision (pkg/reconciler/revision + the autoscaler's effect on it) ---------------------------------

    async def _reconcile_revision(self, ns: str, name: str) -> None:
        rev = self._stores[REVISIONS].get(ns, name)
        if rev is None or _deleting(rev):
            return
        assert self._queue is not None
        key: Key = (REVISIONS, ns, name)
        uid, generation = _meta(rev)["uid"], _generation(rev)
        status = copy.deepcopy(rev.get("status") or {})
        observed = status.get("observedGeneration") == generation
        ready = _condition(status, READY)
        _pre_process(status, generation)
        m = REVISION_CONDITIONS.manage(status)
        containers = (rev.get("spec") or {}).get("containers") or []
        status["containerStatuses"] = [
            {"name": c.get("name") or DEFAULT_CONTAINER_NAME, "imageDigest": image_digest(c.get("image", ""))}
            for c in containers
        ]
        if init := (rev.get("spec") or {}).get("initContainers"):
            status["initContainerStatuses"] = [
                {"name": c.get("name", ""), "imageDigest": image_digest(c.get("image", ""))} for c in init
            ]
        now = time.monotonic()
        started = self._deploy_started.setdefault(uid, now)
        delay = self.ready_delay
        with contextlib.suppress(ValueError):
            delay = float(_annotations(rev).get(READY_DELAY_ANNOTATION, delay))
        was_ready = observed and ready is not None and ready.get("status") == "True"
        was_failed = observed and ready is not None and ready.get("status") == "False"
        failure = requested_failure(rev)

        if was_failed:
            return  # failure is terminal; nothing brings a failed revision back
        if not was_ready and now - started < delay:
            for ctype in ("ResourcesAvailable", "ContainerHealthy", "Active"):
                m.mark_unknown(ctype, "Deploying", "")
            status["desiredReplicas"] = self._initial_scale(rev)
            status["actualReplicas"] = 0
            self._queue.add_after(key, started + delay - now)
        elif failure is not None:
            self._mark_failed(m, status, failure)
            log.info("Revision failed namespace=%s name=%s reason=%s", ns, name, failure.reason)
        else:
            m.mark_true("ResourcesAvailable")
            m.mark_true("ContainerHealthy")
            if self._idle(rev, status, now):
                m.mark_false("Active", "NoTraffic", "The target is not receiving traffic.")
                status["desiredReplicas"] = status["actualReplicas"] = 0
            else:
                m.mark_true("Active")
                status["desiredReplicas"] = status["actualReplicas"] = self._initial_scale(rev)
        status["observedGeneration"] = generation
        await self._write_status(REVISIONS, rev, status)
        if not was_ready and _condition(status, READY) and _condition(status, READY)["status"] == "True":
            log.info("Revision became ready namespace=%s name=%s", ns, name)

    @staticmethod
    def _mark_failed(m: _ConditionManager, status: Obj, failure: Failure) -> None:
        m.mark_false(failure.condition, failure.reason, failure.message)
        m.mark_false("Active", "TimedOut", "The target could not be activated.")
        status["desiredReplicas"] = status["actualReplicas"] = 0

    @staticmethod
    def _initial_scale(rev: Obj) -> int:
        """Pods a revision runs once deployed: max(initial-scale (default 1), min-scale), at least 1."""
        annotations = _annotations(rev)
        min_scale = _int_annotation(annotations, MIN_SCALE_ANNOTATIONS, 0)
        return max(_int_annotation(annotations, INITIAL_SCALE_ANNOTATIONS, 1), min_scale, 1)

    def _idle(self, rev: Obj, status: Obj, now: float) -> bool:
        """Scaled to zero: min-scale 0 and no Route gives it a percentage, for scale_to_zero_delay seconds."""
        uid, ns, name = _meta(rev)["uid"], _meta(rev)["namespace"], _meta(rev)["name"]
        routed = any(
            t.get("revisionName") == name and (t.get("percent") or 0) > 0
            for route in self._stores[ROUTES].list(ns)
            for t in (route.get("status") or {}).get("traffic") or []
        )
        if routed or _int_annotation(_annotations(rev), MIN_SCALE_ANNOTATIONS, 0) > 0:
            self._idle_since.pop(uid, None)
            return False
        active = _condition(status, "Active")
        if active and active.get("status") == "False" and active.get("reason") == "NoTraffic":
            return True
        since = self._idle_since.setdefault(uid, now)
        if now - since >= self.scale_to_zero_delay:
            return True
        assert self._queue is not None
        self._queue.add_after((REVISIONS, ns, name), since + self.scale_to_zero_delay - now)
        return False

    # -- Route (pkg/reconciler/route/route.go) --------------------------------------------------------------

    async def _reconcile_route(self, ns: str, name: str) -> None:
        route = self._stores[ROUTES].get(ns, name)
        if route is None or _deleting(route):
            return
        status = copy.deepcopy(route.get("status") or {})
        generation_changed = status.get("observedGeneration") != _generation(route)
        _pre_process(status, _generation(route))
        m = ROUTE_CONDITIONS.manage(status)
        if generation_changed:
            m.mark_unknown("IngressReady", "IngressNotConfigured", "Ingress has not yet been reconciled.")
        traffic, error = resolve_traffic(route, self._stores[CONFIGURATIONS], self._stores[REVISIONS])
        status["url"] = self._url(route, "")
        if error is not None:
            error.mark(status)  # Knative leaves status.traffic as it was
        else:
            assert traffic is not None
            for target in traffic:
                if target.get("tag"):
                    target["url"] = self._url(route, target["tag"])
            if status.get("traffic") != traffic:
                log.info(
                    "Assigned traffic namespace=%s route=%s traffic=%s", ns, name, _traffic_summary(traffic)
                )
            status["traffic"] = traffic
            m.mark_true("AllTrafficAssigned")
            status["address"] = {"url": f"http://{name}.{ns}.svc.cluster.local"}
            m.mark_true_with_reason(
                "CertificateProvisioned", "TLSNotEnabled", "external-domain-tls is not enabled"
            )
            m.mark_true("IngressReady")  # the simulated ingress is programmed at once
        status["observedGeneration"] = _generation(route)
        await self._write_status(ROUTES, route, status)

    def _url(self, route: Obj, tag: str) -> str:
        """Knative's default templates: {{.Name}}.{{.Namespace}}.{{.Domain}} and tag {{.Tag}}-{{.Name}}."""
        name, ns = _meta(route)["name"], _meta(route)["namespace"]
        host = f"{tag}-{name}" if tag else name
        domain = (
            CLUSTER_LOCAL_DOMAIN if _labels(route).get(VISIBILITY_LABEL) == "cluster-local" else self.domain
        )
        return f"http://{host}.{ns}.{domain}"


def _traffic_summary(traffic: list[Obj]) -> str:
    return ",".join(
        f"{t['revisionName']}:{t['percent']}" + (f"@{t['tag']}" if t.get("tag") else "") for t in traffic
    )


def _propagate_configuration_status(status: Obj, config_status: Obj) -> None:
    """service_lifecycle.go PropagateConfigurationStatus."""
    for field in ("latestReadyRevisionName", "latestCreatedRevisionName"):
        if config_status.get(field):
            status[field] = config_status[field]
        else:
            status.pop(field, None)
    cond = _condition(config_status, READY)
    if cond is None:
        return
    m = SERVICE_CONDITIONS.manage(status)
    if cond["status"] == "True":
        m.mark_true("ConfigurationsReady")
    elif cond["status"] == "False":
        m.mark_false("ConfigurationsReady", cond.get("reason", ""), cond.get("message", ""))
    else:
        m.mark_unknown("ConfigurationsReady", cond.get("reason", ""), cond.get("message", ""))


def _propagate_route_status(status: Obj, route_status: Obj) -> None:
    """service_lifecycle.go PropagateRouteStatus."""
    for field in ("url", "address", "traffic"):
        if route_status.get(field):
            status[field] = copy.deepcopy(route_status[field])
        else:
            status.pop(field, None)
    cond = _condition(route_status, READY)
    if cond is None:
        return
    m = SERVICE_CONDITIONS.manage(status)
    if cond["status"] == "True":
        m.mark_true("RoutesReady")
    elif cond["status"] == "False":
        m.mark_false("RoutesReady", cond.get("reason", ""), cond.get("message", ""))
    else:
        m.mark_unknown("RoutesReady", cond.get("reason", ""), cond.get("message", ""))


def _check_routes_not_ready(status: Obj, config: Obj, route: Obj) -> None:
    """service.go checkRoutesNotReady: a ready Route lagging the Configuration is TrafficNotMigrated."""
    routes_ready = _condition(status, "RoutesReady")
    if routes_ready is None or routes_ready.get("status") != "True":
        return
    want = copy.deepcopy((route.get("spec") or {}).get("traffic") or [])
    got = (route.get("status") or {}).get("traffic") or []
    latest_ready = (config.get("status") or {}).get("latestReadyRevisionName", "")
    for target in want:
        if target.get("configurationName") == _meta(config)["name"]:
            target["revisionName"] = latest_ready
            target.pop("configurationName")

    def comparable(targets: list[Obj]) -> list[Obj]:
        return [
            {k: v for k, v in t.items() if k not in ("url", "latestRevision") and v not in ("", None)}
            for t in targets
        ]

    if len(want) != len(got) or comparable(want) != comparable(got):
        SERVICE_CONDITIONS.manage(status).mark_unknown(
            "RoutesReady", "TrafficNotMigrated", "Traffic is not yet migrated to the latest revision."
        )


# --------------------------------------------------------------------------------------------------
# Knative's validating webhook, as a ValidatingAdmissionPolicy
# --------------------------------------------------------------------------------------------------


def install_admission(kubeconfig_path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
    """Create or update the policy in knative-admission.yaml and wait until the API server enforces it."""
    conn = _read_kubeconfig(Path(kubeconfig_path))
    base = "/apis/admissionregistration.k8s.io/v1"
    docs = list(yaml.safe_load_all(ADMISSION_MANIFEST.read_text()))
    policy = next(d["metadata"]["name"] for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
    with httpx.Client(
        base_url=conn.server, verify=conn.ssl_context, headers=conn.headers, timeout=15.0
    ) as client:
        for doc in docs:
            plural = {
                "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
                "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
            }[doc["kind"]]
            url = f"{base}/{plural}/{doc['metadata']['name']}"
            current = client.get(url)
            if current.status_code == 404:
                resp = client.post(f"{base}/{plural}", json=doc)
            else:
                current.raise_for_status()
                doc["metadata"]["resourceVersion"] = current.json()["metadata"]["resourceVersion"]
                resp = client.put(url, json=doc)
            if resp.status_code >= 400:
                raise ApiError.from_response(resp)
        # The policy is live once a dry-run create of an invalid Service is refused by it.
        probe = {
            "apiVersion": GROUP_VERSION,
            "kind": "Service",
            "metadata": {"name": "knative-sim-admission-probe", "namespace": "default"},
            "spec": {
                "template": {"spec": {"containers": [{"image": "probe"}]}},
                "traffic": [{"latestRevision": True, "percent": 1}],
            },
        }
        deadline = time.monotonic() + timeout
        while True:
            resp = client.post(_path(SERVICES, "default"), json=probe, params={"dryRun": "All"})
            if resp.status_code == 422 and policy in resp.text:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"admission policy {policy} not enforced after {timeout:.0f}s: {resp.text[:300]}"
                )
            time.sleep(0.2)
