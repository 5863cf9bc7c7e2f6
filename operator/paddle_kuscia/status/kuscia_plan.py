"""Every Kuscia decision, pure: from the parsed spec, the previous status and what Kuscia last reported,
what to send to Kuscia and which status to write once it is sent.

The Knative path reads build -> apply if different -> observe -> status; these plans are the Kuscia
counterpart, one per kind (a PaddleService on Kuscia, a KusciaDeployment, a KusciaJob). The reconcilers
in `reconcile/` only carry a plan out: they call Kuscia, record what it accepted and write the status.
Nothing here touches the network, the clock (`now` is a parameter) or the process's memory (what this
process last sent or saw refused is passed in).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..builders.compare import digest
from ..builders.knative import InvalidSpec, container_resources
from ..builders.kuscia import (
    InvalidKusciaJob,
    appimage_name,
    bfia_create_request,
    build_appimage,
    deployment_create_request,
    job_create_request,
    paddleservice_create_request,
    serving_id,
    unsupported_on_kuscia,
    update_request,
)
from ..models.base import LAST_APPLIED
from ..models.kuscia import KusciaDeploymentSpec, KusciaDeploymentStatus, KusciaJobSpec, KusciaJobStatus
from ..models.paddleservice import PaddleServiceSpec, PaddleServiceStatus
from .kuscia import (
    AWAITING,
    JOB_TERMINAL,
    MirrorReport,
    Missing,
    Problem,
    Remote,
    Reported,
    Unseen,
    deployment_status,
    job_status,
    paddleservice_kuscia_status,
)


class Send(StrEnum):
    """How a serving request goes to Kuscia; both ways end with Kuscia running the request."""

    CREATE = "create"  # create; if the id is taken, it is ours to adopt: update it
    UPDATE = "update"  # update; if the id is gone, create it again


@dataclass(frozen=True)
class ServingSend:
    mode: Send
    create: dict[str, Any]

    @property
    def update(self) -> dict[str, Any]:
        return update_request(self.create)


@dataclass(frozen=True)
class Refusal:
    """Nothing is sent: `Ready=False` with this reason and message (and `KusciaServingReady` alike)."""

    reason: str
    message: str


#: What the operator remembers Kuscia refused: (attempt, why). See `attempt_key`.
Refused = tuple[str, Problem]


def attempt_key(request_digest: str, generation: int, annotations: Mapping[str, str] | None) -> str:
    """What a refused request is remembered by: the request plus the object's generation and annotations,
    so editing the object (or only annotating it) allows one new attempt, and nothing else does. kubectl's
    last-applied copy is left out: the caches drop it, so a reconcile from the cache and one from a fresh API
    answer must remember the same attempt (they once did not, and a refused job was sent twice)."""
    kept = {k: v for k, v in (annotations or {}).items() if k != LAST_APPLIED}
    return f"{request_digest}/{generation}/{json.dumps(kept, sort_keys=True)}"


def _still_refused(refused: Refused | None, attempt: str) -> Problem | None:
    return refused[1] if refused is not None and refused[0] == attempt else None


def _send_mode(recorded: str | None, wanted: str, remote: Remote) -> Send | None:
    """Create when nothing was ever accepted or Kuscia lost it, update when the spec moved, else nothing."""
    if recorded is None or isinstance(remote, Missing):
        return Send.CREATE
    if recorded != wanted:
        return Send.UPDATE
    return None


# ---- PaddleService on Kuscia ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingPlan:
    """What to do for a PaddleService on Kuscia, in order: register `appimage`, delete the servings in
    `delete` (an id the object no longer uses), send `send`; then write `status`. A `refusal` replaces all
    of it. `drift_checked` tells the executor the one post-restart drift check has been made."""

    serving_id: str
    refusal: Refusal | None = None
    still_refused: Problem | None = None
    appimage: dict[str, Any] | None = None
    delete: tuple[str, ...] = ()
    send: ServingSend | None = None
    applied_hash: str = ""
    attempt: str = ""
    status: PaddleServiceStatus | None = None
    drift_checked: bool = False


def _replicas_drifted(request: dict[str, Any], detail: dict[str, Any]) -> bool:
    for party in request.get("parties") or []:
        for seen in detail.get("party_statuses") or []:
            same = seen.get("domain_id") == party["domain_id"] and (seen.get("role") or "") == party.get(
                "role", ""
            )
            known = "replicas" in party and seen.get("replicas") is not None
            if same and known and int(seen["replicas"]) != int(party["replicas"]):
                return True
    return False


def plan_serving(
    *,
    name: str,
    spec: PaddleServiceSpec,
    generation: int,
    annotations: Mapping[str, str] | None,
    previous: dict[str, Any] | None,
    remote: Remote,
    sent_by_this_process: str | None,
    first_look: bool,
    other_owners: list[str],
    refused: Refused | None,
    problem: Problem | None,
    now: str,
) -> ServingPlan:
    """The plan for a live PaddleService with `spec.kuscia` (deletion and a backend switch are the
    executor's: they only delete the serving).

    `sent_by_this_process` is the digest of the last request Kuscia accepted from this process (it wins
    over the status, whose write may have failed after a send); `first_look` is true until the serving's
    reported replicas have been compared with the spec once since the operator started; `refused` is the
    attempt Kuscia last refused and why; `problem` what is wrong with polling Kuscia right now.
    """
    assert spec.kuscia is not None
    sid = serving_id(name, spec)
    previous = previous or {}
    block = previous.get("kuscia") or {}

    problems = unsupported_on_kuscia(spec)
    if problems:
        message = "Not supported on the Kuscia backend: " + "; ".join(problems)
        return ServingPlan(sid, refusal=Refusal("UnsupportedOnKuscia", message))
    try:
        container_resources(spec)  # the same request/limit rules as on Knative
    except InvalidSpec as err:
        return ServingPlan(sid, refusal=Refusal("InvalidSpec", str(err)))
    if other_owners:
        message = (
            f"Kuscia serving {sid!r} is already run for PaddleService {sorted(other_owners)[0]}; "
            "set spec.kuscia.servingId to a distinct id."
        )
        return ServingPlan(sid, refusal=Refusal("ServingIdConflict", message))

    app_image = appimage_name(name, spec) if any(p.app_image is None for p in spec.kuscia.parties) else None
    request = paddleservice_create_request(name, spec, app_image)
    wanted = digest(request)
    attempt = attempt_key(wanted, generation, annotations)
    known_refusal = _still_refused(refused, attempt)
    if known_refusal is not None:  # Kuscia would answer the same again: say so, send nothing
        return ServingPlan(sid, still_refused=problem or known_refusal, applied_hash=wanted, attempt=attempt)

    appimage = build_appimage(name, spec) if app_image and block.get("appImage") != app_image else None
    recorded = sent_by_this_process or block.get("appliedHash")
    delete: tuple[str, ...] = ()
    old_id = block.get("servingId")
    if old_id and old_id != sid:  # spec.kuscia.servingId changed: the serving under the old id goes
        delete, recorded = (old_id,), None

    drift_checked = False
    if recorded == wanted and sent_by_this_process is None and isinstance(remote, Reported) and first_look:
        # The recorded digest may predate an update a crashed predecessor sent (its status write lost):
        # when Kuscia runs other replicas than the spec asks for, the spec is sent once more.
        drift_checked = True
        if _replicas_drifted(request, remote.detail):
            recorded = "drifted"
    mode = _send_mode(recorded, wanted, remote)
    send = ServingSend(mode, request) if mode else None
    seen: Remote = AWAITING if send else remote
    status = paddleservice_kuscia_status(
        generation=generation,
        previous=previous,
        serving_id=sid,
        initiator=spec.kuscia.initiator,
        remote=seen,
        problem=problem,
        applied_hash=wanted,
        app_image=app_image,
        now=now,
    )
    return ServingPlan(
        sid,
        appimage=appimage,
        delete=delete,
        send=send,
        applied_hash=wanted,
        attempt=attempt,
        status=status,
        drift_checked=drift_checked,
    )


# ---- Mirrors: KusciaDeployment and KusciaJob -------------------------------------------------------------


@dataclass(frozen=True)
class MirrorInputs:
    """What a mirror's plan reads besides its spec: the object's name, generation and annotations, its
    previous status, what Kuscia last reported, the attempt it last refused, what is wrong with polling
    it right now, and `now`."""

    name: str
    generation: int
    annotations: Mapping[str, str] | None
    previous: dict[str, Any] | None
    remote: Remote
    connection_url: str
    refused: Refused | None
    problem: Problem | None
    now: str

    def attempt(self, wanted: str) -> str:
        return attempt_key(wanted, self.generation, self.annotations)

    def submitted(self, wanted: str) -> dict[str, Any]:
        """The status's `mirror` block once the request with digest `wanted` is sent."""
        return {
            "remoteId": self.name,
            "specHash": wanted,
            "submittedGeneration": self.generation,
            "connection": self.connection_url,
        }

    def report(
        self, remote: Remote, problem: Problem | None, mirror: dict[str, Any], *, spec_changed: bool = False
    ) -> MirrorReport:
        """What the status is made from, once the plan has decided what Kuscia is sent."""
        return MirrorReport(
            self.generation, self.previous or {}, remote, problem, mirror, self.now, spec_changed
        )


# ---- KusciaDeployment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentPlan:
    """Send `send` (or nothing); then write `status`, or keep saying `still_refused`."""

    send: ServingSend | None
    status: KusciaDeploymentStatus | None
    attempt: str
    still_refused: Problem | None = None


def deployment_request(name: str, spec: KusciaDeploymentSpec) -> tuple[dict[str, Any], str]:
    request = deployment_create_request(name, spec)
    return request, digest(request)


def plan_deployment(spec: KusciaDeploymentSpec, seen: MirrorInputs) -> DeploymentPlan:
    """A KusciaDeployment is a serving: created, updated when its spec moves, re-created if it vanished."""
    previous = seen.previous or {}
    request, wanted = deployment_request(seen.name, spec)
    attempt = seen.attempt(wanted)
    mirror = dict(previous.get("mirror") or {})
    known_refusal = _still_refused(seen.refused, attempt)
    if known_refusal is not None:
        return DeploymentPlan(None, None, attempt, still_refused=seen.problem or known_refusal)
    mode = _send_mode(mirror.get("specHash"), wanted, seen.remote)
    if mode:
        mirror = seen.submitted(wanted)
    remote = AWAITING if mode else seen.remote
    status = deployment_status(seen.name, seen.report(remote, seen.problem, mirror))
    return DeploymentPlan(ServingSend(mode, request) if mode else None, status, attempt)


# ---- KusciaJob ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobPlan:
    """Submit `submit` through `bfia` or the job API (or nothing), then write `status`; `invalid` and
    `still_refused` replace all of it. `poll` says whether Kuscia has anything left to tell."""

    submit: dict[str, Any] | None = None
    bfia: bool = False
    status: KusciaJobStatus | None = None
    poll: bool = True
    invalid: str | None = None
    still_refused: Problem | None = None
    attempt: str = ""


def job_request(name: str, spec: KusciaJobSpec, *, bfia: bool) -> tuple[dict[str, Any], str]:
    """The submission and its digest; raises `InvalidKusciaJob` for a job Kuscia would fail."""
    request = bfia_create_request(name, spec) if bfia else job_create_request(name, spec)
    return request, digest(request)


def plan_job(spec: KusciaJobSpec, seen: MirrorInputs, *, bfia: bool) -> JobPlan:
    """Jobs are immutable in Kuscia: submitted once, then only observed (a later spec change is reported
    with `SpecSynced=False`). A job Kuscia would fail is refused before it is sent."""
    previous = seen.previous or {}
    try:
        request, wanted = job_request(seen.name, spec, bfia=bfia)
    except InvalidKusciaJob as err:
        return JobPlan(invalid=str(err))
    attempt = seen.attempt(wanted)
    mirror = dict(previous.get("mirror") or {})
    remote = seen.remote
    submit = None
    poll = True
    if not mirror.get("specHash"):
        known_refusal = _still_refused(seen.refused, attempt)
        if known_refusal is not None:
            return JobPlan(still_refused=known_refusal, attempt=attempt)
        submit = request
        mirror = seen.submitted(wanted)
        remote = AWAITING
    elif isinstance(remote, Unseen) and previous.get("phase") in JOB_TERMINAL:
        # Finished before this operator started: Kuscia has nothing new to say, so it is not polled.
        poll = False
    changed = mirror.get("specHash") != wanted
    status = job_status(seen.report(remote, seen.problem if poll else None, mirror, spec_changed=changed))
    return JobPlan(submit=submit, bfia=bfia, status=status, poll=poll, attempt=attempt)


__all__ = [
    "DeploymentPlan",
    "JobPlan",
    "MirrorInputs",
    "Refusal",
    "Refused",
    "Send",
    "ServingPlan",
    "ServingSend",
    "attempt_key",
    "plan_deployment",
    "plan_job",
    "plan_serving",
]
