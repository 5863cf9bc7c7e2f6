"""PaddleService status on the Knative backend, from what Knative reports. Pure: `now` is a parameter.

Ready is True only when the current generation's final traffic split is in place and Knative says every
revision in it is ready; Unknown while a rollout step is in flight; False with Knative's reason when a
revision of the current spec failed.
"""

from __future__ import annotations

from typing import Any

from ..builders.knative import TAG_CANARY, TAG_DEFAULT, Rollout
from ..models.observed import ConditionState, KnativeObservation
from .conditions import Cond, merge_conditions, summarize


def _endpoint_condition(ctype: str, revision: str, obs: KnativeObservation, tag: str) -> Cond:
    failed = obs.failed(revision)
    if failed is not None:
        reason = failed.reason or "RevisionFailed"
        return Cond(ctype, "False", reason, f"Revision {revision} failed: {failed.message or reason}")
    routed = (obs.routed(tag) or {}).get("revisionName")
    if obs.known_ready(revision) and routed == revision:
        return Cond(
            ctype, "True", "RevisionReady", f"Revision {revision} is ready and serving the {tag} traffic."
        )
    if obs.known_ready(revision):
        return Cond(
            ctype, "Unknown", "TrafficMigrating", f"Revision {revision} is ready; moving {tag} traffic to it."
        )
    state = obs.revisions.get(revision)
    detail = ""
    if state and state.ready.reason:
        detail = (
            f" ({state.ready.reason}: {state.ready.message})"
            if state.ready.message
            else f" ({state.ready.reason})"
        )
    serving = f"; {routed} keeps serving meanwhile" if routed and routed != revision else ""
    return Cond(
        ctype,
        "Unknown",
        "RevisionNotReady",
        f"Waiting for revision {revision} to become ready{detail}{serving}.",
    )


def _routes_condition(obs: KnativeObservation, rollout: Rollout) -> Cond:
    routes = obs.conditions.get("RoutesReady", ConditionState())
    if routes.status == "False":
        return Cond("RoutesReady", "False", routes.reason or "RouteFailed", routes.message)
    wanted = {(t["tag"], t["revisionName"], t["percent"]) for t in rollout.traffic}
    seen = {(t.get("tag"), t.get("revisionName"), t.get("percent")) for t in obs.traffic}
    if not obs.settled or not rollout.final or wanted != seen or routes.status != "True":
        return Cond(
            "RoutesReady",
            "Unknown",
            routes.reason or "TrafficNotMigrated",
            routes.message or "Knative has not applied the desired traffic split yet.",
        )
    return Cond("RoutesReady", "True", "TrafficAssigned", "Traffic is split as requested.")


def knative_status(
    *,
    generation: int,
    previous: dict[str, Any] | None,
    rollout: Rollout,
    observed: KnativeObservation | None,
    now: str,
) -> dict[str, Any]:
    """The full `status` of a Knative-backed PaddleService."""
    previous = previous or {}
    obs = observed or KnativeObservation()
    if observed is None:
        wanted = [
            Cond("DefaultEndpointReady", "Unknown", "Reconciling", "Creating the Knative Service."),
            Cond("RoutesReady", "Unknown", "Reconciling", "Creating the Knative Service."),
        ]
    else:
        wanted = [_endpoint_condition("DefaultEndpointReady", rollout.default_revision, obs, TAG_DEFAULT)]
        if rollout.canary_revision is not None:
            wanted.append(
                _endpoint_condition("CanaryEndpointReady", rollout.canary_revision, obs, TAG_CANARY)
            )
        wanted.append(_routes_condition(obs, rollout))
    ready = summarize(
        wanted, ready_reason="Serving", ready_message="All traffic is served by ready revisions."
    )
    conditions = merge_conditions(
        [c for c in previous.get("conditions") or [] if c.get("type") not in _ALL_TYPES or _keep(c, wanted)],
        [ready, *wanted],
        generation=generation,
        now=now,
    )
    status: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
    if obs.url:
        status["url"] = obs.url
    if obs.address_url:
        status["address"] = {"url": obs.address_url}
    default_routed = (obs.routed(TAG_DEFAULT) or {}).get("revisionName")
    canary_routed = (obs.routed(TAG_CANARY) or {}).get("revisionName")
    if default_routed:
        status["default"] = {"name": default_routed}
    if canary_routed:
        status["canary"] = {"name": canary_routed}
    if obs.traffic:
        status["traffic"] = [
            {k: t[k] for k in ("tag", "revisionName", "percent", "url") if t.get(k) is not None}
            for t in obs.traffic
        ]
    if obs.latest_created:
        status["latestCreatedRevision"] = obs.latest_created
    if obs.latest_ready:
        status["latestReadyRevision"] = obs.latest_ready
    routed = {t.get("revisionName") for t in obs.traffic if t.get("revisionName")}
    replicas = [obs.revisions[r].actual_replicas for r in routed if r in obs.revisions]
    if replicas and all(r is not None for r in replicas):
        status["replicas"] = sum(r for r in replicas if r is not None)
    return status


_ALL_TYPES = {"Ready", "DefaultEndpointReady", "CanaryEndpointReady", "RoutesReady", "KusciaServingReady"}


def _keep(condition: dict[str, Any], wanted: list[Cond]) -> bool:
    """A dependency condition we no longer report (e.g. CanaryEndpointReady after the canary left) is dropped."""
    return condition.get("type") in {c.type for c in wanted} or condition.get("type") == "Ready"
