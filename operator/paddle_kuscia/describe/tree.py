"""What `paddle-kuscia describe` shows, from plain dicts: the object, its conditions, the tree below it, and
the first thing that is wrong with what to do about it. Pure: no I/O, the objects are read elsewhere.

On Knative the tree is Knative Service -> Revisions (traffic, tag URL, replicas) -> Route; on Kuscia it is the
serving (or job) -> parties (or tasks), as the operator recorded Kuscia's last report in the object's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..builders.knative import InvalidSpec, Owner, named_template
from ..models.paddleservice import PaddleServiceSpec
from ..status.kuscia import int_or_none
from . import advice as A

# Node states (a Finding's severity is FAILED or PROGRESSING).
FAILED = "failed"
PROGRESSING = "progressing"
MISSING = "missing"
OK = "ok"

REVISION_LABEL = "serving.knative.dev/service"  # on a Revision: the Knative Service it belongs to
OTHER_REVISIONS_SHOWN = 3


@dataclass
class Node:
    kind: str
    name: str
    state: str
    summary: str
    fields: dict[str, Any] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Finding:
    """The first thing that is wrong: where (a node's `ref`), what, and what to do."""

    ref: str
    severity: str  # FAILED or PROGRESSING
    problem: str
    advice: str


@dataclass
class Description:
    kind: str
    namespace: str
    name: str
    fields: dict[str, Any]
    conditions: list[dict[str, Any]]
    tree: Node
    finding: Finding | None


# ---- helpers ---------------------------------------------------------------------------------------------


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for c in _status(obj).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def _state_of(cond: dict[str, Any] | None) -> str:
    if cond is None or cond.get("status") == "Unknown":
        return PROGRESSING
    return OK if cond.get("status") == "True" else FAILED


def _ready_text(cond: dict[str, Any] | None) -> str:
    """`Ready=False: reason: message` (only the status when it is True or says nothing more)."""
    text = f"Ready={(cond or {}).get('status', 'Unknown')}"
    why = _why(cond) if _state_of(cond) != OK else ""
    return f"{text}: {why}" if why else text


def _why(cond: dict[str, Any] | None) -> str:
    if cond is None:
        return "no Ready condition yet"
    reason, message = cond.get("reason") or "", cond.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("type", "status", "reason", "message", "lastTransitionTime", "observedGeneration")
    return [{k: c[k] for k in keys if k in c} for c in _status(obj).get("conditions") or []]


def _status_finding(obj: dict[str, Any], ref: str) -> Finding | None:
    """No status yet, or a status for an older generation: the operator has not caught up."""
    status = _status(obj)
    generation = _meta(obj).get("generation")
    if not status.get("conditions"):
        return Finding(ref, PROGRESSING, "The operator has not reported a status yet.", A.NO_STATUS)
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return Finding(
            ref,
            PROGRESSING,
            f"The status is for generation {observed}; the spec is at generation {generation}.",
            A.STALE_STATUS,
        )
    return None


def _condition_finding(obj: dict[str, Any], ref: str, ctype: str, **values: str) -> Finding | None:
    """The condition `ctype` when it is not True, with the advice for its reason."""
    cond = condition(obj, ctype)
    if cond is None or cond.get("status") == "True":
        return None
    return Finding(
        ref,
        FAILED if cond.get("status") == "False" else PROGRESSING,
        f"{ctype}={cond.get('status')}: {_why(cond)}",
        A.advice_for(cond.get("reason"), **values),
    )


def _root(obj: dict[str, Any], kind: str) -> Node:
    """The object itself, as its Ready condition says."""
    ready = condition(obj, "Ready")
    return Node(kind, _meta(obj).get("name", ""), _state_of(ready), _why(ready) or "", {})


# ---- PaddleService -------------------------------------------------------------------------------------

# Reasons that say the operator itself could not go on: nothing below the object explains more.
OPERATOR_REASONS = {
    "InvalidSpec",
    "KnativeServiceConflict",
    "KnativeServiceRejected",
    "UnsupportedOnKuscia",
    "KusciaNotConfigured",
    "KusciaUnavailable",
    "KusciaAuthFailed",
    "KusciaTLSFailed",
    "KusciaRequestRejected",
}


def wanted_revisions(ps: dict[str, Any]) -> dict[str, str]:
    """{variant: revision name} the current spec asks for (the operator's own naming), {} if unbuildable."""
    try:
        spec = PaddleServiceSpec.model_validate(ps.get("spec") or {})
    except ValueError:
        return {}
    meta = _meta(ps)
    owner = Owner(
        meta.get("name", ""), meta.get("namespace", ""), meta.get("uid", ""), meta.get("labels") or {}
    )
    try:
        out = {"default": named_template(owner, spec, spec.default)[0]}
        if spec.canary is not None:
            out["canary"] = named_template(owner, spec, spec.canary)[0]
    except InvalidSpec:
        return {}
    return out


def _revision_node(rev: dict[str, Any], traffic: list[dict[str, Any]], role: str | None) -> Node:
    name = _meta(rev).get("name", "")
    ready = condition(rev, "Ready")
    status = _status(rev)
    routes = [t for t in traffic if t.get("revisionName") == name]
    percent = sum(int_or_none(t.get("percent")) or 0 for t in routes)
    tags = [t for t in routes if t.get("tag")]
    fields: dict[str, Any] = {
        "role": role,
        "ready": (ready or {}).get("status", "Unknown"),
        "reason": (ready or {}).get("reason"),
        "message": (ready or {}).get("message"),
        "trafficPercent": percent,
        "tags": {t["tag"]: t.get("url") for t in tags},
        "actualReplicas": status.get("actualReplicas"),
        "desiredReplicas": status.get("desiredReplicas"),
    }
    parts = [f"Ready={fields['ready']}" + (f" ({fields['reason']})" if fields["reason"] else "")]
    parts.append(f"{percent}% traffic")
    for tag, url in fields["tags"].items():
        parts.append(f"tag {tag} {url}" if url else f"tag {tag}")
    if fields["actualReplicas"] is not None:
        parts.append(f"replicas {fields['actualReplicas']}")
    if role:
        parts.insert(0, role)
    return Node(
        "Revision",
        name,
        _state_of(ready),
        ", ".join(parts),
        {k: v for k, v in fields.items() if v is not None},
    )


def _missing_revision(name: str, role: str) -> Node:
    return Node("Revision", name, MISSING, f"{role}, not created yet", {"role": role})


def _ordered_revisions(
    revisions: list[dict[str, Any]], traffic: list[dict[str, Any]], wanted: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """Routed and wanted revisions first, then the newest few others; and how many others were left out."""
    # In the order of the traffic block (default first), then default and canary of the spec.
    order = list(dict.fromkeys([*(t.get("revisionName") for t in traffic), *wanted.values()]))
    important = set(order)
    first = sorted(
        (r for r in revisions if _meta(r).get("name") in important),
        key=lambda r: order.index(_meta(r).get("name")),
    )
    others = sorted(
        (r for r in revisions if _meta(r).get("name") not in important),
        key=lambda r: _meta(r).get("creationTimestamp") or "",
        reverse=True,
    )
    return first + others[:OTHER_REVISIONS_SHOWN], max(0, len(others) - OTHER_REVISIONS_SHOWN)


def _owned_by(obj: dict[str, Any], ps: dict[str, Any]) -> bool:
    uid = _meta(ps).get("uid")
    return any(
        ref.get("kind") == "PaddleService" and (ref.get("uid") == uid or not uid)
        for ref in _meta(obj).get("ownerReferences") or []
    )


def describe_paddleservice(
    ps: dict[str, Any],
    *,
    knative_service: dict[str, Any] | None = None,
    revisions: list[dict[str, Any]] | None = None,
    route: dict[str, Any] | None = None,
) -> Description:
    """A PaddleService and what it runs on (`knative_service` etc. are ignored on the Kuscia backend)."""
    meta, status, spec = _meta(ps), _status(ps), ps.get("spec") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    backend = spec.get("backend") or "knative"
    root = _root(ps, "PaddleService")
    fields: dict[str, Any] = {
        "backend": backend,
        "url": status.get("url"),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
    }
    if backend == "kuscia":
        fields["kuscia"] = {k: v for k, v in (status.get("kuscia") or {}).items() if k != "parties"}
        root.children = [_kuscia_serving_node(status.get("kuscia") or {})]
        finding = _status_finding(ps, root.ref) or _operator_finding(ps, root.ref) or _kuscia_finding(root)
    else:
        traffic = list(status.get("traffic") or [])
        fields["traffic"] = traffic
        fields["default"] = (status.get("default") or {}).get("name")
        fields["canary"] = (status.get("canary") or {}).get("name")
        fields["replicas"] = status.get("replicas")
        wanted = wanted_revisions(ps)
        ksvc_node, rev_nodes = _knative_tree(ps, knative_service, revisions or [], route, wanted)
        root.children = [ksvc_node]
        finding = (
            _status_finding(ps, root.ref)
            or _operator_finding(ps, root.ref)
            or _knative_finding(ps, ksvc_node, rev_nodes, wanted)
            or _condition_finding(ps, root.ref, "Ready", namespace=namespace)
        )
    return Description(
        "PaddleService",
        namespace,
        name,
        {k: v for k, v in fields.items() if v not in (None, [], {})},
        _conditions(ps),
        root,
        finding,
    )


def _operator_finding(ps: dict[str, Any], ref: str) -> Finding | None:
    ready = condition(ps, "Ready")
    if ready is None or ready.get("status") == "True" or ready.get("reason") not in OPERATOR_REASONS:
        return None
    return _condition_finding(ps, ref, "Ready")


def _knative_tree(
    ps: dict[str, Any],
    ksvc: dict[str, Any] | None,
    revisions: list[dict[str, Any]],
    route: dict[str, Any] | None,
    wanted: dict[str, str],
) -> tuple[Node, list[Node]]:
    name = _meta(ps).get("name", "")
    if ksvc is None:
        return Node("Service", name, MISSING, "the Knative Service does not exist", {}), []
    ready = condition(ksvc, "Ready")
    kstatus = _status(ksvc)
    traffic = list(kstatus.get("traffic") or [])
    fields = {
        "url": kstatus.get("url"),
        "latestCreatedRevision": kstatus.get("latestCreatedRevisionName"),
        "latestReadyRevision": kstatus.get("latestReadyRevisionName"),
        "ownedByPaddleService": _owned_by(ksvc, ps),
    }
    node = Node(
        "Service",
        _meta(ksvc).get("name", name),
        _state_of(ready),
        _ready_text(ready),
        {k: v for k, v in fields.items() if v is not None},
    )
    role_of = {rev: role for role, rev in wanted.items()}
    for t in traffic:
        if t.get("tag") in ("default", "canary") and t.get("revisionName") not in role_of:
            role_of[t["revisionName"]] = f"{t['tag']} (serving)"
    shown, left_out = _ordered_revisions(revisions, traffic, wanted)
    rev_nodes = [_revision_node(r, traffic, role_of.get(_meta(r).get("name", ""))) for r in shown]
    present = {_meta(r).get("name") for r in revisions}
    for role, rev in wanted.items():
        if rev not in present:
            rev_nodes.append(_missing_revision(rev, role))
    node.children = list(rev_nodes)
    if left_out:
        node.fields["olderRevisionsNotShown"] = left_out
    node.children.append(_route_node(route, name))
    return node, rev_nodes


def _route_node(route: dict[str, Any] | None, name: str) -> Node:
    if route is None:
        return Node("Route", name, MISSING, "the Route does not exist (Knative creates it)", {})
    ready = condition(route, "Ready")
    status = _status(route)
    split = ", ".join(
        f"{t.get('tag') or t.get('revisionName')}={t.get('percent')}%"
        for t in status.get("traffic") or []
        if t.get("percent")
    )
    summary = _ready_text(ready)
    if split:
        summary += f", {split}"
    fields = {"url": status.get("url"), "traffic": status.get("traffic")}
    return Node(
        "Route",
        _meta(route).get("name", name),
        _state_of(ready),
        summary,
        {k: v for k, v in fields.items() if v},
    )


def _canary_failed(revisions: list[Node]) -> str:
    """The advice for a failed canary, saying where the canary's share of the traffic went."""
    previous = next((n for n in revisions if "canary" in n.fields.get("tags", {})), None)
    serving = (
        f"the previous canary revision {previous.name} keeps the canary's share"
        if previous is not None and previous.fields.get("trafficPercent")
        else "the default revision keeps all the traffic"
    )
    return A.fill(A.CANARY_FAILED, serving=serving)


def _knative_finding(
    ps: dict[str, Any], ksvc: Node, revisions: list[Node], wanted: dict[str, str]
) -> Finding | None:
    namespace = _meta(ps).get("namespace", "")
    if ksvc.state == MISSING:
        return Finding(ksvc.ref, FAILED, "The Knative Service does not exist.", A.KNATIVE_SERVICE_MISSING)
    if ksvc.fields.get("ownedByPaddleService") is False:
        return Finding(
            ksvc.ref,
            FAILED,
            "The Knative Service is not owned by this PaddleService.",
            A.ADVICE["KnativeServiceConflict"],
        )
    by_name = {n.name: n for n in revisions}
    for role in ("default", "canary"):  # a failed default matters more than a failed canary
        node = by_name.get(wanted.get(role, ""))
        if node is not None and node.state == FAILED:
            return Finding(
                node.ref,
                FAILED,
                f"The {role} revision {node.name} failed: "
                f"{node.fields.get('reason', '')}: {node.fields.get('message', '')}".rstrip(": "),
                _canary_failed(revisions) if role == "canary" else A.DEFAULT_FAILED,
            )
    for node in revisions:  # a routed revision that failed after it was ready
        if node.state == FAILED and node.fields.get("trafficPercent"):
            return Finding(
                node.ref,
                FAILED,
                f"Revision {node.name} serves {node.fields['trafficPercent']}% of the traffic and is not ready: "
                f"{node.fields.get('reason', '')}: {node.fields.get('message', '')}".rstrip(": "),
                A.fill(A.REVISION_PENDING, namespace=namespace, revision=node.name),
            )
    for role in ("default", "canary"):
        node = by_name.get(wanted.get(role, ""))
        if node is not None and node.state in (MISSING, PROGRESSING):
            what = "has not been created yet" if node.state == MISSING else "is not ready yet"
            detail = f" ({node.fields['reason']})" if node.fields.get("reason") else ""
            return Finding(
                node.ref,
                PROGRESSING,
                f"The {role} revision {node.name} {what}{detail}.",
                A.fill(A.REVISION_PENDING, namespace=namespace, revision=node.name),
            )
    route = ksvc.children[-1]
    if route.state in (FAILED, MISSING) or (route.state == PROGRESSING and ksvc.state != OK):
        return Finding(route.ref, route.state if route.state != MISSING else PROGRESSING, route.summary, "")
    if ksvc.state == FAILED:
        return Finding(ksvc.ref, FAILED, ksvc.summary, "")
    return None


# ---- Kuscia ----------------------------------------------------------------------------------------------


def _party_state(replicas: int | None, available: int | None, state: str) -> str:
    if state == "Failed":
        return FAILED
    if replicas is not None and available is not None and available < replicas:
        return PROGRESSING
    return OK if state in ("Available", "") else PROGRESSING


def _kuscia_serving_node(block: dict[str, Any]) -> Node:
    state = block.get("state") or ""
    serving_state = {"Available": OK, "Failed": FAILED, "Missing": MISSING}.get(state, PROGRESSING)
    summary = state or "not reported yet"
    if block.get("totalParties") is not None:
        summary += f", {block.get('availableParties') or 0}/{block.get('totalParties')} parties available"
    if block.get("reason") or block.get("message"):
        summary += ": " + ": ".join(x for x in (block.get("reason"), block.get("message")) if x)
    node = Node("KusciaServing", block.get("servingId", ""), serving_state, summary, {})
    for p in block.get("parties") or []:
        replicas, available = int_or_none(p.get("replicas")), int_or_none(p.get("availableReplicas"))
        endpoints = [e.get("endpoint") for e in p.get("endpoints") or [] if e.get("endpoint")]
        pstate = p.get("state") or ""
        text = f"{pstate or 'no state'}, {available or 0}/{replicas or 0} replicas available"
        if endpoints:
            text += ", endpoints " + " ".join(endpoints)
        name = p.get("domainId", "") + (f" ({p['role']})" if p.get("role") else "")
        node.children.append(
            Node(
                "Party",
                name,
                _party_state(replicas, available, pstate),
                text,
                {k: v for k, v in p.items() if v not in (None, [])},
            )
        )
    return node


def _kuscia_finding(root: Node) -> Finding | None:
    for node in root.children:
        for party in node.children:
            if party.state != OK:
                return Finding(
                    party.ref, party.state, f"Party {party.name}: {party.summary}.", A.PARTY_UNAVAILABLE
                )
        if node.state == MISSING:
            return Finding(
                node.ref, PROGRESSING, "Kuscia does not know the serving.", A.ADVICE["ServingMissing"]
            )
        if node.state != OK:
            return Finding(node.ref, node.state, f"The Kuscia serving is {node.summary}.", "")
    if root.state != OK:
        return Finding(root.ref, root.state, root.summary, "")
    return None


def _mirror_finding(obj: dict[str, Any], ref: str) -> Finding | None:
    """What keeps a KusciaDeployment or KusciaJob from being mirrored at all, or at its current spec."""
    return _not_mirrored(obj, ref) or _status_finding(obj, ref) or _condition_finding(obj, ref, "SpecSynced")


def _mirror_description(
    obj: dict[str, Any], phase: str | None, root: Node, finding: Finding | None
) -> Description:
    """A KusciaDeployment or KusciaJob: its phase, the operator's `mirror` block and its generations."""
    meta, status = _meta(obj), _status(obj)
    mirror = status.get("mirror") or {}
    fields = {
        "phase": phase,
        **{
            k: mirror[k]
            for k in ("remoteId", "connection", "submittedGeneration")
            if mirror.get(k) is not None
        },
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
    }
    return Description(
        root.kind,
        meta.get("namespace", ""),
        meta.get("name", ""),
        {k: v for k, v in fields.items() if v is not None},
        _conditions(obj),
        root,
        finding,
    )


def describe_kuscia_deployment(kd: dict[str, Any]) -> Description:
    status = _status(kd)
    root = _root(kd, "KusciaDeployment")
    parties: list[dict[str, Any]] = []
    for domain, by_name in sorted((status.get("partyDeploymentStatuses") or {}).items()):
        for p in (by_name or {}).values():
            parties.append(
                {
                    "domainId": domain,
                    "role": p.get("role"),
                    "state": p.get("phase", ""),
                    "replicas": p.get("replicas"),
                    "availableReplicas": p.get("availableReplicas"),
                }
            )
    block = {
        "servingId": (status.get("mirror") or {}).get("remoteId") or root.name,
        "state": status.get("phase") or "",
        "reason": status.get("reason"),
        "message": status.get("message"),
        "totalParties": status.get("totalParties"),
        "availableParties": status.get("availableParties"),
        "parties": parties,
    }
    root.children = [_kuscia_serving_node(block)]
    finding = _mirror_finding(kd, root.ref)
    finding = finding or _operator_finding(kd, root.ref) or _kuscia_finding(root)
    return _mirror_description(kd, status.get("phase"), root, finding)


def describe_kuscia_job(kj: dict[str, Any]) -> Description:
    status = _status(kj)
    root = _root(kj, "KusciaJob")
    phase = status.get("phase") or ""
    job_state = {"Succeeded": OK, "Failed": FAILED, "Cancelled": FAILED, "ApprovalReject": FAILED}.get(
        phase, PROGRESSING
    )
    job = Node(
        "KusciaJobRun",
        (status.get("mirror") or {}).get("remoteId") or root.name,
        job_state,
        (phase or "not reported yet") + (f": {status['message']}" if status.get("message") else ""),
        {k: status[k] for k in ("startTime", "completionTime") if status.get(k)},
    )
    for task, state in sorted((status.get("taskStatus") or {}).items()):
        tstate = {"Succeeded": OK, "Failed": FAILED}.get(state, PROGRESSING)
        job.children.append(Node("Task", task, tstate, state, {}))
    root.children = [job]
    finding = _mirror_finding(kj, root.ref)
    if finding is None:
        failed_task = next((t for t in job.children if t.state == FAILED), None)
        if failed_task is not None:
            finding = Finding(
                failed_task.ref,
                FAILED,
                f"Task {failed_task.name} failed"
                + (f": {status['message']}" if status.get("message") else "."),
                A.JOB_FAILED,
            )
    finding = finding or _condition_finding(kj, root.ref, "Ready")
    if (
        finding is not None
        and finding.severity == PROGRESSING
        and phase in ("Running", "Pending", "Initialized")
    ):
        finding = None  # a job that runs is not a problem
    return _mirror_description(kj, phase or None, root, finding)


MIRROR_ANNOTATION = "paddle-kuscia.io/mirror"


def _not_mirrored(obj: dict[str, Any], ref: str) -> Finding | None:
    """No status and no mirror annotation: most likely the operator ignores the object."""
    if _status(obj) or (_meta(obj).get("annotations") or {}).get(MIRROR_ANNOTATION) == "true":
        return None
    return Finding(
        ref,
        PROGRESSING,
        f"No status, and the object lacks the annotation {MIRROR_ANNOTATION}.",
        A.NOT_MIRRORED,
    )
