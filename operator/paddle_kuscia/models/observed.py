"""What the operator observed of its children, in plain immutable data (parsed from API objects elsewhere).

Builders and status functions take these instead of raw API objects, so they stay pure and easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConditionState:
    status: str = "Unknown"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RevisionState:
    name: str
    ready: ConditionState = ConditionState()
    actual_replicas: int | None = None

    @property
    def is_ready(self) -> bool:
        return self.ready.status == "True"

    @property
    def has_failed(self) -> bool:
        return self.ready.status == "False"


@dataclass(frozen=True)
class KnativeObservation:
    """The live Knative Service (and the Revisions it routes or builds) as last seen."""

    generation: int = 0
    observed_generation: int = 0
    template_name: str | None = None
    latest_created: str | None = None
    latest_ready: str | None = None
    url: str | None = None
    address_url: str | None = None
    traffic: tuple[dict[str, Any], ...] = ()
    spec_traffic: tuple[dict[str, Any], ...] = ()
    conditions: dict[str, ConditionState] = field(default_factory=dict)
    revisions: dict[str, RevisionState] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Knative has reconciled the latest spec we wrote."""
        return self.observed_generation >= self.generation > 0

    def routed(self, tag: str) -> dict[str, Any] | None:
        return next((t for t in self.traffic if t.get("tag") == tag), None)

    def known_ready(self, revision: str | None) -> bool:
        """A revision counts as ready if Knative says so, or routes traffic to it (it only routes ready ones)."""
        if revision is None:
            return False
        state = self.revisions.get(revision)
        if state is not None:
            return state.is_ready
        return revision == self.latest_ready or any(t.get("revisionName") == revision for t in self.traffic)

    def failed(self, revision: str | None) -> ConditionState | None:
        if revision is None:
            return None
        state = self.revisions.get(revision)
        if state is not None and state.has_failed:
            return state.ready
        cfg = self.conditions.get("ConfigurationsReady")
        if (
            revision == self.latest_created
            and revision != self.latest_ready
            and cfg
            and cfg.status == "False"
        ):
            return cfg
        return None


def parse_conditions(status: dict[str, Any] | None) -> dict[str, ConditionState]:
    out: dict[str, ConditionState] = {}
    for c in (status or {}).get("conditions") or []:
        if "type" in c:
            out[c["type"]] = ConditionState(
                c.get("status", "Unknown"), c.get("reason", ""), c.get("message", "")
            )
    return out


def parse_revision(obj: dict[str, Any]) -> RevisionState:
    status = obj.get("status") or {}
    conditions = parse_conditions(status)
    return RevisionState(
        name=obj["metadata"]["name"],
        ready=conditions.get("Ready", ConditionState()),
        actual_replicas=status.get("actualReplicas"),
    )


def parse_knative_service(
    obj: dict[str, Any], revisions: dict[str, RevisionState] | None = None
) -> KnativeObservation:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return KnativeObservation(
        generation=obj.get("metadata", {}).get("generation", 0),
        observed_generation=status.get("observedGeneration", 0),
        template_name=((spec.get("template") or {}).get("metadata") or {}).get("name"),
        latest_created=status.get("latestCreatedRevisionName"),
        latest_ready=status.get("latestReadyRevisionName"),
        url=status.get("url"),
        address_url=(status.get("address") or {}).get("url"),
        traffic=tuple(status.get("traffic") or ()),
        spec_traffic=tuple(spec.get("traffic") or ()),
        conditions=parse_conditions(status),
        revisions=dict(revisions or {}),
    )
