"""PaddleService status on the Knative backend, from what Knative reports. Pure: `now` is a parameter.

Ready is True only when the current generation's final traffic split is in place and Knative says every
revision in it is ready; Unknown while a rollout step is in flight; False with Knative's reason when a
revision of the current spec failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..builders.knative import TAG_CANARY, TAG_DEFAULT, Rollout
from ..models.observed import ConditionState, KnativeObservation
from ..models.paddleservice import (
    Addressable,
    Condition,
    PaddleServiceStatus,
    TrafficTarget,
    VariantStatus,
)
from .conditions import condition, merge_conditions, summarize

# Ready is Unknown for this reason while applying the Knative Service fails and is retried.
APPLY_FAILED = "KnativeServiceApplyFailed"


def _endpoint_condition(ctype: str, revision: str, obs: KnativeObservation, tag: str, now: str) -> Condition:
    failed = obs.failed(revision)
    if failed is not None:
        reason = failed.reason or "RevisionFailed"
        return condition(
            ctype, "False", reason, f"Revision {revision} failed: {failed.message or reason}", now=now
        )
    routed = (obs.routed(tag) or {}).get("revisionName")
    if obs.known_ready(revision) and routed == revision:
        message = f"Revision {revision} is ready and serving the {tag} traffic."
        return condition(ctype, "True", "RevisionReady", message, now=now)
    if obs.known_ready(revision):
        message = f"Revision {revision} is ready; moving {tag} traffic to it."
        return condition(ctype, "Unknown", "TrafficMigrating", message, now=now)
    state = obs.revisions.get(revision)
    detail = ""
    if state and state.ready.reason:
        detail = (
            f" ({state.ready.reason}: {state.ready.message})"
            if state.ready.message
            else f" ({state.ready.reason})"
        )
    serving = f"; {routed} keeps serving meanwhile" if routed and routed != revision else ""
    message = f"Waiting for revision {revision} to become ready{detail}{serving}."
    return condition(ctype, "Unknown", "RevisionNotReady", message, now=now)


def _routes_condition(obs: KnativeObservation, rollout: Rollout, now: str) -> Condition:
    routes = obs.conditions.get("RoutesReady", ConditionState())
    if routes.status == "False":
        return condition("RoutesReady", "False", routes.reason or "RouteFailed", routes.message, now=now)
    wanted = {(t["tag"], t["revisionName"], t["percent"]) for t in rollout.traffic}
    seen = {(t.get("tag"), t.get("revisionName"), t.get("percent")) for t in obs.traffic}
    if not obs.settled or not rollout.final or wanted != seen or routes.status != "True":
        return condition(
            "RoutesReady",
            "Unknown",
            routes.reason or "TrafficNotMigrated",
            routes.message or "Knative has not applied the desired traffic split yet.",
            now=now,
        )
    return condition("RoutesReady", "True", "TrafficAssigned", "Traffic is split as requested.", now=now)


def knative_status(
    *,
    generation: int,
    previous: PaddleServiceStatus | None,
    rollout: Rollout,
    observed: KnativeObservation | None,
    now: str,
) -> PaddleServiceStatus:
    """The full `status` of a Knative-backed PaddleService."""
    obs = observed or KnativeObservation()
    if observed is None:
        creating = "Creating the Knative Service."
        wanted = [
            condition("DefaultEndpointReady", "Unknown", "Reconciling", creating, now=now),
            condition("RoutesReady", "Unknown", "Reconciling", creating, now=now),
        ]
    else:
        wanted = [
            _endpoint_condition("DefaultEndpointReady", rollout.default_revision, obs, TAG_DEFAULT, now)
        ]
        if rollout.canary_revision is not None:
            wanted.append(
                _endpoint_condition("CanaryEndpointReady", rollout.canary_revision, obs, TAG_CANARY, now)
            )
        wanted.append(_routes_condition(obs, rollout, now))
    ready = summarize(
        wanted, ready_reason="Serving", ready_message="All traffic is served by ready revisions.", now=now
    )
    before = (previous.conditions if previous is not None else None) or []
    conditions = merge_conditions(
        [c for c in before if c.type not in _ALL_TYPES or _keep(c, wanted)],
        [ready, *wanted],
        generation=generation,
    )
    default_routed = (obs.routed(TAG_DEFAULT) or {}).get("revisionName")
    canary_routed = (obs.routed(TAG_CANARY) or {}).get("revisionName")
    traffic = [
        TrafficTarget(
            tag=t.get("tag"), revision_name=t.get("revisionName"), percent=t.get("percent"), url=t.get("url")
        )
        for t in obs.traffic
    ]
    return PaddleServiceStatus(
        observed_generation=generation,
        conditions=conditions,
        url=obs.url or None,
        address=Addressable(url=obs.address_url) if obs.address_url else None,
        default=VariantStatus(name=default_routed) if default_routed else None,
        canary=VariantStatus(name=canary_routed) if canary_routed else None,
        replicas=_replicas(obs),
        traffic=traffic or None,
        latest_created_revision=obs.latest_created or None,
        latest_ready_revision=obs.latest_ready or None,
    )


def worth_writing(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether status `new` (as written to the API) must be written now, or may wait for a later write.

    A rollout's Knative steps would otherwise each be a status write. A status whose Ready is True or False,
    or that changes Ready's status, is written whole at once, so a verdict is exact and `kubectl wait` sees
    it. While Ready stays Unknown only the generation, the set of conditions and the end of a failed apply
    count; the rest (the steps' reasons and messages, a URL and traffic that Knative publishes before its
    Route is ready, revisions, replicas) waits for the next write.
    """
    if stored == new:
        return False
    before, after = _ready(stored), _ready(new)
    if before.get("status") != "Unknown" or after.get("status") != "Unknown":
        return True
    if before.get("reason") == APPLY_FAILED != after.get("reason"):
        return True
    return _progress(stored) != _progress(new)


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})


def _progress(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where a rollout stands for Argo CD and `kubectl wait`: the generation it is for, what it waits on."""
    return status.get("observedGeneration"), sorted(
        str(c.get("type")) for c in status.get("conditions") or []
    )


def _replicas(obs: KnativeObservation) -> int | None:
    """Pods serving the routed revisions; None until Knative reports them for every routed revision."""
    routed = {t.get("revisionName") for t in obs.traffic if t.get("revisionName")}
    replicas = [obs.revisions[r].actual_replicas for r in routed if r in obs.revisions]
    if not replicas or any(r is None for r in replicas):
        return None
    return sum(r for r in replicas if r is not None)


_ALL_TYPES = {"Ready", "DefaultEndpointReady", "CanaryEndpointReady", "RoutesReady", "KusciaServingReady"}


def _keep(previous: Condition, wanted: Sequence[Condition]) -> bool:
    """A dependency condition we no longer report (e.g. CanaryEndpointReady after the canary left) is dropped."""
    return previous.type in {c.type for c in wanted} or previous.type == "Ready"
