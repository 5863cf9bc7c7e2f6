"""Statuses from what Kuscia reports (ServingStatusDetail, JobStatusDetail), pure: `now` is a parameter.

What Kuscia last said about an id is a `Remote`: `Reported` (a detail in Kuscia's snake_case wire shape),
`Missing` (Kuscia does not know the id), `Unseen` (not polled since the operator started: what the status
already says still stands) or `Awaiting` (we have just sent something; nothing reported since).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..models.kuscia import KusciaDeploymentStatus, KusciaJobStatus
from ..models.paddleservice import PaddleServiceStatus
from .conditions import Cond, merge_conditions, summarize


@dataclass(frozen=True)
class Reported:
    """Kuscia's last report about the id."""

    detail: dict[str, Any]


@dataclass(frozen=True)
class Missing:
    """Kuscia does not know the id."""


@dataclass(frozen=True)
class Unseen:
    """Not polled since the operator started: the status written before still stands."""


@dataclass(frozen=True)
class Awaiting:
    """Sent just now; Kuscia has not reported since."""


Remote = Reported | Missing | Unseen | Awaiting
MISSING, UNSEEN, AWAITING = Missing(), Unseen(), Awaiting()

SERVING_READY = {"Available"}
SERVING_PROGRESSING = {"Pending", "Progressing", "PartialAvailable", "Unknown", ""}
JOB_TERMINAL = {"Succeeded", "Failed", "Cancelled", "ApprovalReject"}


@dataclass(frozen=True)
class Problem:
    """Why we could not talk to Kuscia or it refused us (shown as a condition)."""

    status: Literal["False", "Unknown"]
    reason: str
    message: str


def int_or_none(value: Any) -> int | None:
    """A count as Kuscia (or a hand-edited status) wrote it: 64-bit integers come as strings."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _previous_condition(previous: dict[str, Any], ctype: str) -> Cond | None:
    for c in previous.get("conditions") or []:
        if c.get("type") == ctype:
            return Cond(ctype, c.get("status", "Unknown"), c.get("reason", ""), c.get("message", ""))
    return None


def serving_condition(
    ctype: str,
    remote: Remote,
    problem: Problem | None,
    previous: dict[str, Any] | None = None,
) -> Cond:
    if problem is not None:
        return Cond(ctype, problem.status, problem.reason, problem.message)
    if isinstance(remote, Unseen):
        kept = _previous_condition(previous or {}, ctype)
        if kept is not None:
            return kept
    if isinstance(remote, Missing):
        return Cond(
            ctype, "Unknown", "ServingMissing", "Kuscia does not know the serving; creating it again."
        )
    if not isinstance(remote, Reported):
        return Cond(ctype, "Unknown", "Pending", "Waiting for Kuscia to report the serving's status.")
    detail = remote.detail
    state = detail.get("state") or "Pending"
    available = int_or_none(detail.get("available_parties")) or 0
    parties = f"{available}/{int_or_none(detail.get('total_parties')) or 0} parties available"
    message = "; ".join(x for x in (parties, detail.get("reason") or "", detail.get("message") or "") if x)
    if state in SERVING_READY:
        return Cond(ctype, "True", "Available", message)
    if state == "Failed":
        return Cond(ctype, "False", detail.get("reason") or "Failed", message)
    return Cond(ctype, "Unknown", state or "Pending", message)


def _party_statuses(detail: dict[str, Any]) -> list[dict[str, Any]]:
    parties = []
    for p in sorted(
        detail.get("party_statuses") or [], key=lambda p: (p.get("domain_id", ""), p.get("role", ""))
    ):
        entry: dict[str, Any] = {
            "domainId": p.get("domain_id", ""),
            "state": p.get("state", ""),
            "replicas": int_or_none(p.get("replicas")) or 0,
            "availableReplicas": int_or_none(p.get("available_replicas")) or 0,
        }
        if p.get("role"):
            entry["role"] = p["role"]
        endpoints = sorted(
            (
                {
                    "portName": e.get("port_name", ""),
                    "scope": e.get("scope", ""),
                    "endpoint": e.get("endpoint", ""),
                }
                for e in p.get("endpoints") or []
            ),
            key=lambda e: (e["portName"], e["endpoint"]),
        )
        if endpoints:
            entry["endpoints"] = endpoints
        parties.append(entry)
    return parties


def service_url(remote: Remote, initiator: str) -> str | None:
    """The initiator's `service` endpoint (the port Kuscia allocated), where the serving answers."""
    if not isinstance(remote, Reported):
        return None
    for party in remote.detail.get("party_statuses") or []:
        if party.get("domain_id") != initiator:
            continue
        for endpoint in party.get("endpoints") or []:
            if endpoint.get("port_name") == "service" and endpoint.get("endpoint"):
                return f"http://{endpoint['endpoint']}"
    return None


def paddleservice_kuscia_status(
    *,
    generation: int,
    previous: dict[str, Any] | None,
    serving_id: str,
    initiator: str,
    remote: Remote,
    problem: Problem | None,
    applied_hash: str | None,
    app_image: str | None,
    now: str,
) -> PaddleServiceStatus:
    previous = previous or {}
    serving = serving_condition("KusciaServingReady", remote, problem, previous)
    ready = summarize([serving], ready_reason="Serving", ready_message="The Kuscia serving is available.")
    stale = {"DefaultEndpointReady", "CanaryEndpointReady", "RoutesReady"}
    kept = [c for c in previous.get("conditions") or [] if c.get("type") not in stale]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(kept, [ready, serving], generation=generation, now=now),
    }
    block: dict[str, Any] = {"servingId": serving_id}
    if isinstance(remote, Unseen):
        observed = ("state", "reason", "message", "totalParties", "availableParties", "parties")
        block.update({k: v for k, v in (previous.get("kuscia") or {}).items() if k in observed})
    elif isinstance(remote, Reported):
        detail = remote.detail
        block.update(
            {
                "state": detail.get("state") or "Pending",
                "totalParties": int_or_none(detail.get("total_parties")) or 0,
                "availableParties": int_or_none(detail.get("available_parties")) or 0,
                "parties": _party_statuses(detail),
            }
        )
        if detail.get("reason"):
            block["reason"] = detail["reason"]
        if detail.get("message"):
            block["message"] = detail["message"]
    elif isinstance(remote, Missing):
        block["state"] = "Missing"
    if applied_hash:
        block["appliedHash"] = applied_hash
    if app_image:
        block["appImage"] = app_image
    status["kuscia"] = block
    url = service_url(remote, initiator) or (
        previous.get("url") if not isinstance(remote, Reported) else None
    )
    if url:
        status["url"] = url
        status["address"] = {"url": url}
    return PaddleServiceStatus.model_validate(status)


@dataclass(frozen=True)
class MirrorReport:
    """What a KusciaDeployment's or KusciaJob's status is made from: the object's generation and previous
    status, what Kuscia last reported (or why it could not be asked), the operator's `mirror` block, and
    whether the spec moved after it was sent."""

    generation: int
    previous: dict[str, Any] | None
    remote: Remote
    problem: Problem | None
    mirror: dict[str, Any]
    now: str
    spec_changed_after_submit: bool = False


def deployment_status(name: str, report: MirrorReport) -> KusciaDeploymentStatus:
    """KusciaDeployment status in Kuscia's own shape, plus `Ready` and `mirror`."""
    previous, remote = report.previous or {}, report.remote
    status: dict[str, Any] = {}
    if isinstance(remote, Reported):
        detail = remote.detail
        state = detail.get("state") or ""
        status["phase"] = {"Pending": "Progressing", "Unknown": "Progressing"}.get(
            state, state
        ) or "Progressing"
        status["totalParties"] = int_or_none(detail.get("total_parties")) or 0
        status["availableParties"] = int_or_none(detail.get("available_parties")) or 0
        if detail.get("reason"):
            status["reason"] = detail["reason"]
        if detail.get("message"):
            status["message"] = detail["message"]
        per_domain: dict[str, Any] = {}
        for p in detail.get("party_statuses") or []:
            per_domain.setdefault(p.get("domain_id", ""), {})[name] = {
                "phase": p.get("state", ""),
                "role": p.get("role", ""),
                "replicas": int_or_none(p.get("replicas")) or 0,
                "availableReplicas": int_or_none(p.get("available_replicas")) or 0,
                "unavailableReplicas": int_or_none(p.get("unavailable_replicas")) or 0,
                "updatedReplicas": int_or_none(p.get("updatedReplicas")) or 0,
                "creationTimestamp": p.get("create_time", ""),
            }
        status["partyDeploymentStatuses"] = dict(sorted(per_domain.items()))
    else:
        # Until Kuscia reports again, the last report stands (Kuscia's own KusciaDeployment keeps it too).
        observed: tuple[str, ...] = ("phase", "reason", "message", "partyDeploymentStatuses")
        if isinstance(remote, Missing):
            observed = ()
        status.update({k: v for k, v in previous.items() if k in observed})
        status["totalParties"] = previous.get("totalParties", 0)
        status["availableParties"] = previous.get("availableParties", 0)
    ready = serving_condition("Ready", remote, report.problem, previous)
    synced = Cond("SpecSynced", "False", "UpdatePending", "The spec changed; updating the Kuscia serving.")
    return _mirror_status(KusciaDeploymentStatus, report, status, ready, synced)


def job_status(report: MirrorReport) -> KusciaJobStatus:
    """KusciaJob status in Kuscia's own shape (phase, taskStatus, times), plus `Ready`/`Succeeded` and `mirror`."""
    previous, remote, problem = report.previous or {}, report.remote, report.problem
    status: dict[str, Any] = {}
    state = ""
    detail: dict[str, Any] = remote.detail if isinstance(remote, Reported) else {}
    if isinstance(remote, Reported):
        state = detail.get("state") or "Pending"
        status["phase"] = state
        tasks = {
            t.get("task_id") or t.get("alias", ""): t.get("state", "Pending")
            for t in detail.get("tasks") or []
        }
        if tasks:
            status["taskStatus"] = dict(sorted(tasks.items()))
        if detail.get("start_time"):
            status["startTime"] = detail["start_time"]
        if detail.get("end_time") and state in JOB_TERMINAL:
            status["completionTime"] = detail["end_time"]
        if detail.get("err_msg"):
            status["message"] = detail["err_msg"]
            status["reason"] = "JobFailed" if state == "Failed" else "KusciaMessage"
    elif isinstance(remote, Missing):
        status = {
            k: v for k, v in previous.items() if k in ("phase", "taskStatus", "startTime", "completionTime")
        }
    elif isinstance(remote, Unseen):
        observed = ("phase", "taskStatus", "startTime", "completionTime", "reason", "message")
        status = {k: v for k, v in previous.items() if k in observed}
    kept = _previous_condition(previous, "Ready") if isinstance(remote, Unseen) else None
    if problem is not None:
        ready = Cond("Ready", problem.status, problem.reason, problem.message)
    elif kept is not None:
        ready = kept
    elif isinstance(remote, Awaiting | Unseen):
        ready = Cond("Ready", "Unknown", "Submitted", "Waiting for Kuscia to report the job's status.")
    elif isinstance(remote, Missing) and previous.get("phase") not in JOB_TERMINAL:
        ready = Cond("Ready", "False", "JobMissing", "Kuscia no longer knows this job.")
    elif isinstance(remote, Missing):
        ready = Cond(
            "Ready",
            "True" if previous.get("phase") == "Succeeded" else "False",
            previous.get("phase", "Unknown"),
            "Kuscia no longer keeps this finished job.",
        )
    elif state == "Succeeded":
        ready = Cond("Ready", "True", "Succeeded", "The job succeeded.")
    elif state in JOB_TERMINAL:
        ready = Cond(
            "Ready",
            "False",
            state,
            detail.get("err_msg") or f"The job is {state}.",
        )
    else:
        ready = Cond("Ready", "Unknown", state or "Pending", f"The job is {state or 'Pending'}.")
    synced = Cond(
        "SpecSynced",
        "False",
        "ImmutableAfterSubmit",
        "The spec changed after the job was submitted; Kuscia jobs cannot be changed. "
        "Delete and re-create the KusciaJob to run the new spec.",
    )
    return _mirror_status(KusciaJobStatus, report, status, ready, synced)


_Status = TypeVar("_Status", KusciaDeploymentStatus, KusciaJobStatus)


def _mirror_status(
    model: type[_Status], report: MirrorReport, status: dict[str, Any], ready: Cond, synced: Cond
) -> _Status:
    """What both mirrors add to Kuscia's own shape: `Ready` (and `synced` while the spec moved after it was
    sent), `observedGeneration`, the `mirror` block and `lastReconcileTime`."""
    previous = report.previous or {}
    conditions = [ready, synced] if report.spec_changed_after_submit else [ready]
    status["conditions"] = merge_conditions(
        [c for c in previous.get("conditions") or [] if c.get("type") != "SpecSynced"],
        conditions,
        generation=report.generation,
        now=report.now,
    )
    status["observedGeneration"] = report.generation
    status["mirror"] = report.mirror
    status["lastReconcileTime"] = _keep_time(previous, status, report.now)
    return model.model_validate(status)


def _keep_time(previous: dict[str, Any], status: dict[str, Any], now: str) -> str:
    """lastReconcileTime moves only when something else in the status moved (no churn for Argo CD)."""

    def strip(s: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in s.items() if k != "lastReconcileTime"}
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []
        ]
        return out

    kept = previous.get("lastReconcileTime")
    if isinstance(kept, str) and kept and strip(previous) == strip(status):
        return kept
    return now
