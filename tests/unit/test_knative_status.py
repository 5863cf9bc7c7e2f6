"""PaddleService status from Knative observations: a pure function, checked with plain data."""

from __future__ import annotations

from typing import Any

from paddle_kuscia.builders.knative import Owner, plan_rollout
from paddle_kuscia.models.observed import ConditionState, KnativeObservation, RevisionState
from paddle_kuscia.models.paddleservice import PaddleServiceSpec
from paddle_kuscia.status.knative import knative_status

OWNER = Owner("ps", "ns", "uid", {})
NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"


def spec(**extra: Any) -> PaddleServiceSpec:
    return PaddleServiceSpec.model_validate(
        {"default": {"containerImage": "img", "tag": "v1", "port": 80}, **extra}
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def observed(
    s: PaddleServiceSpec, *, ready: bool, routed: bool, failed: str | None = None
) -> KnativeObservation:
    rollout = plan_rollout(OWNER, s, None)
    rev = rollout.default_revision
    state = (
        ConditionState("True")
        if ready
        else ConditionState("False", failed, "boom")
        if failed
        else ConditionState()
    )
    return KnativeObservation(
        generation=1,
        observed_generation=1,
        url="http://ps.ns.example.com",
        address_url="http://ps.ns.svc.cluster.local",
        latest_created=rev,
        latest_ready=rev if ready else None,
        traffic=(
            {
                "tag": "default",
                "revisionName": rev,
                "percent": 100,
                "url": "http://default-ps.ns.example.com",
            },
        )
        if routed
        else (),
        conditions={"RoutesReady": ConditionState("True" if routed else "Unknown")},
        revisions={rev: RevisionState(rev, state, actual_replicas=2 if ready else 0)},
    )


def test_ready_when_the_final_split_is_served_by_ready_revisions() -> None:
    s = spec()
    obs = observed(s, ready=True, routed=True)
    status = knative_status(
        generation=1, previous=None, rollout=plan_rollout(OWNER, s, obs), observed=obs, now=NOW
    )
    cond = conditions(status)
    assert cond["Ready"]["status"] == "True" and cond["Ready"]["observedGeneration"] == 1
    assert cond["DefaultEndpointReady"]["status"] == cond["RoutesReady"]["status"] == "True"
    assert "CanaryEndpointReady" not in cond
    assert status["url"] == "http://ps.ns.example.com" and status["replicas"] == 2
    assert status["traffic"] == [
        {
            "tag": "default",
            "revisionName": obs.latest_created,
            "percent": 100,
            "url": "http://default-ps.ns.example.com",
        }
    ]


def test_unknown_while_rolling_out_and_false_with_the_revision_reason() -> None:
    s = spec()
    building = observed(s, ready=False, routed=False)
    status = knative_status(
        generation=1, previous=None, rollout=plan_rollout(OWNER, s, building), observed=building, now=NOW
    )
    assert conditions(status)["Ready"]["status"] == "Unknown"
    failed = observed(s, ready=False, routed=False, failed="ExitCode1")
    status = knative_status(
        generation=1, previous=status, rollout=plan_rollout(OWNER, s, failed), observed=failed, now=LATER
    )
    ready = conditions(status)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "ExitCode1" and "boom" in ready["message"]


def test_transition_time_moves_only_when_the_status_flips() -> None:
    s = spec()
    obs = observed(s, ready=True, routed=True)
    rollout = plan_rollout(OWNER, s, obs)
    first = knative_status(generation=1, previous=None, rollout=rollout, observed=obs, now=NOW)
    again = knative_status(generation=1, previous=first, rollout=rollout, observed=obs, now=LATER)
    assert again == first  # nothing changed: nothing to write
    bumped = knative_status(generation=2, previous=first, rollout=rollout, observed=obs, now=LATER)
    assert conditions(bumped)["Ready"]["lastTransitionTime"] == NOW
    assert conditions(bumped)["Ready"]["observedGeneration"] == 2


def test_canary_condition_appears_with_a_canary_and_goes_with_it() -> None:
    s = spec(canary={"containerImage": "img", "tag": "v2", "port": 80}, canaryTrafficPercent=10)
    obs = observed(spec(), ready=True, routed=True)
    with_canary = knative_status(
        generation=2, previous=None, rollout=plan_rollout(OWNER, s, obs), observed=obs, now=NOW
    )
    assert conditions(with_canary)["CanaryEndpointReady"]["status"] == "Unknown"
    assert conditions(with_canary)["Ready"]["status"] == "Unknown"
    without = knative_status(
        generation=3, previous=with_canary, rollout=plan_rollout(OWNER, spec(), obs), observed=obs, now=LATER
    )
    assert "CanaryEndpointReady" not in conditions(without)
