"""PaddleService status from Knative observations: a pure function, checked with plain data."""

from __future__ import annotations

from typing import Any

from paddle_kuscia.builders.knative import Owner, named_template, plan_rollout
from paddle_kuscia.models.observed import ConditionState, KnativeObservation, RevisionState
from paddle_kuscia.models.paddleservice import Condition, PaddleServiceSpec, PaddleServiceStatus
from paddle_kuscia.status.knative import knative_status

OWNER = Owner("ps", "ns", "uid", {})
NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
CANARY = {"containerImage": "img", "tag": "v2", "port": 80}


def spec(**extra: Any) -> PaddleServiceSpec:
    return PaddleServiceSpec.model_validate(
        {"default": {"containerImage": "img", "tag": "v1", "port": 80}, **extra}
    )


def conditions(status: PaddleServiceStatus) -> dict[str, Condition]:
    return {c.type: c for c in status.conditions or []}


def revisions(s: PaddleServiceSpec) -> tuple[str, str | None]:
    default = named_template(OWNER, s, s.default)[0]
    canary = named_template(OWNER, s, s.canary)[0] if s.canary is not None else None
    return default, canary


def route(tag: str, revision: str, percent: int) -> dict[str, Any]:
    return {
        "tag": tag,
        "revisionName": revision,
        "percent": percent,
        "url": f"http://{tag}-ps.ns.example.com",
    }


def serving(
    *traffic: dict[str, Any],
    ready: tuple[str, ...] = (),
    unready: dict[str, ConditionState] | None = None,  # revision -> its Ready condition (False or Unknown)
    building: tuple[str, ...] = (),
    routes: ConditionState | None = None,
    generation: int = 1,
    observed_generation: int = 1,
    replicas: int | None = 2,
) -> KnativeObservation:
    """A Knative Service as Knative reports it: its routed traffic, revisions and RoutesReady."""
    states = {r: RevisionState(r, ConditionState("True"), actual_replicas=replicas) for r in ready}
    states |= {r: RevisionState(r, state, actual_replicas=0) for r, state in (unready or {}).items()}
    states |= {r: RevisionState(r, ConditionState(), actual_replicas=0) for r in building}
    return KnativeObservation(
        generation=generation,
        observed_generation=observed_generation,
        url="http://ps.ns.example.com",
        address_url="http://ps.ns.svc.cluster.local",
        latest_created=traffic[-1]["revisionName"] if traffic else None,
        latest_ready=ready[-1] if ready else None,
        traffic=traffic,
        conditions={"RoutesReady": routes or ConditionState("True")},
        revisions=states,
    )


def status_of(
    s: PaddleServiceSpec,
    obs: KnativeObservation | None,
    *,
    previous: PaddleServiceStatus | None = None,
    generation: int = 1,
    now: str = NOW,
) -> PaddleServiceStatus:
    return knative_status(
        generation=generation, previous=previous, rollout=plan_rollout(OWNER, s, obs), observed=obs, now=now
    )


# ---- Ready and what it depends on ----------------------------------------------------------------------


def test_ready_when_the_final_split_is_served_by_ready_revisions() -> None:
    s = spec()
    rev, _ = revisions(s)
    status = status_of(s, serving(route("default", rev, 100), ready=(rev,)))
    cond = conditions(status)
    assert [c.type for c in status.conditions or []] == ["Ready", "DefaultEndpointReady", "RoutesReady"]
    assert (cond["Ready"].status, cond["Ready"].reason) == ("True", "Serving")
    assert cond["Ready"].observed_generation == 1
    assert cond["DefaultEndpointReady"].status == cond["RoutesReady"].status == "True"
    assert status.wire() == {
        "observedGeneration": 1,
        "conditions": [c.wire() for c in status.conditions or []],
        "url": "http://ps.ns.example.com",
        "address": {"url": "http://ps.ns.svc.cluster.local"},
        "default": {"name": rev},
        "replicas": 2,
        "traffic": [route("default", rev, 100)],
        "latestCreatedRevision": rev,
        "latestReadyRevision": rev,
    }


def test_ready_with_a_canary_once_both_revisions_serve_their_share() -> None:
    s = spec(canary=CANARY, canaryTrafficPercent=10)
    default, canary = revisions(s)
    assert canary is not None
    obs = serving(route("default", default, 90), route("canary", canary, 10), ready=(default, canary))
    status = status_of(s, obs)
    cond = conditions(status)
    assert cond["Ready"].status == cond["CanaryEndpointReady"].status == "True"
    assert status.default is not None and status.default.name == default
    assert status.canary is not None and status.canary.name == canary
    assert status.replicas == 4  # both routed revisions' pods


def test_routes_are_unknown_while_knative_serves_another_split_than_wanted() -> None:
    """Both revisions are ready and routed, Knative says RoutesReady, but the percentages are the old ones."""
    s = spec(canary=CANARY, canaryTrafficPercent=10)
    default, canary = revisions(s)
    assert canary is not None
    old_split = serving(route("default", default, 50), route("canary", canary, 50), ready=(default, canary))
    cond = conditions(status_of(s, old_split))
    assert cond["DefaultEndpointReady"].status == cond["CanaryEndpointReady"].status == "True"
    assert (cond["RoutesReady"].status, cond["RoutesReady"].reason) == ("Unknown", "TrafficNotMigrated")
    assert (cond["Ready"].status, cond["Ready"].reason) == ("Unknown", "TrafficNotMigrated")


def test_routes_are_unknown_until_knative_has_seen_the_latest_spec() -> None:
    s = spec()
    rev, _ = revisions(s)
    stale = serving(route("default", rev, 100), ready=(rev,), generation=2, observed_generation=1)
    cond = conditions(status_of(s, stale))
    assert cond["DefaultEndpointReady"].status == "True"
    assert cond["RoutesReady"].status == cond["Ready"].status == "Unknown"


def test_routes_are_unknown_while_knative_has_not_said_routes_ready() -> None:
    s = spec()
    rev, _ = revisions(s)
    obs = serving(
        route("default", rev, 100), ready=(rev,), routes=ConditionState("Unknown", "Migrating", "wait")
    )
    cond = conditions(status_of(s, obs))
    assert (cond["RoutesReady"].status, cond["RoutesReady"].reason) == ("Unknown", "Migrating")
    assert cond["RoutesReady"].message == "wait"
    assert cond["Ready"].status == "Unknown"


def test_routes_are_unknown_on_an_intermediate_rollout_step() -> None:
    """The default is ready and routed as this step wants, but the canary is still being built."""
    s = spec(canary=CANARY, canaryTrafficPercent=10)
    default, canary = revisions(s)
    assert canary is not None
    obs = serving(route("default", default, 100), ready=(default,), building=(canary,))
    rollout = plan_rollout(OWNER, s, obs)
    assert not rollout.final and rollout.traffic[0]["percent"] == 100
    cond = conditions(status_of(s, obs))
    assert cond["RoutesReady"].status == "Unknown"
    assert (cond["CanaryEndpointReady"].status, cond["CanaryEndpointReady"].reason) == (
        "Unknown",
        "RevisionNotReady",
    )


def test_failed_routes_make_ready_false_with_knatives_reason() -> None:
    s = spec()
    rev, _ = revisions(s)
    obs = serving(
        route("default", rev, 100), ready=(rev,), routes=ConditionState("False", "IngressNotConfigured", "no")
    )
    cond = conditions(status_of(s, obs))
    assert (cond["RoutesReady"].status, cond["RoutesReady"].reason, cond["RoutesReady"].message) == (
        "False",
        "IngressNotConfigured",
        "no",
    )
    assert (cond["Ready"].status, cond["Ready"].reason) == ("False", "IngressNotConfigured")
    assert cond["Ready"].message == "RoutesReady: no"


def test_failed_routes_without_a_reason_say_route_failed() -> None:
    s = spec()
    rev, _ = revisions(s)
    obs = serving(route("default", rev, 100), ready=(rev,), routes=ConditionState("False"))
    assert conditions(status_of(s, obs))["RoutesReady"].reason == "RouteFailed"


def test_unknown_while_the_first_revision_builds_and_false_with_its_reason_when_it_fails() -> None:
    s = spec()
    rev, _ = revisions(s)
    building = serving(building=(rev,))
    status = status_of(s, building)
    cond = conditions(status)
    assert (cond["DefaultEndpointReady"].status, cond["DefaultEndpointReady"].reason) == (
        "Unknown",
        "RevisionNotReady",
    )
    assert cond["Ready"].status == "Unknown"
    failed = serving(unready={rev: ConditionState("False", "ExitCode1", "boom")})
    status = status_of(s, failed, previous=status, now=LATER)
    ready = conditions(status)["Ready"]
    assert (ready.status, ready.reason, ready.last_transition_time) == ("False", "ExitCode1", LATER)
    assert ready.message == f"DefaultEndpointReady: Revision {rev} failed: boom"


def test_a_failed_revision_without_reason_or_message_says_revision_failed() -> None:
    s = spec()
    rev, _ = revisions(s)
    cond = conditions(status_of(s, serving(unready={rev: ConditionState("False")})))
    assert cond["DefaultEndpointReady"].reason == "RevisionFailed"
    assert cond["DefaultEndpointReady"].message == f"Revision {rev} failed: RevisionFailed"


def test_a_new_default_being_built_says_the_old_one_keeps_serving() -> None:
    old = spec()
    old_rev, _ = revisions(old)
    new = spec(default={"containerImage": "img", "tag": "v9", "port": 80})
    new_rev, _ = revisions(new)
    deploying = {new_rev: ConditionState("Unknown", "Deploying", "pulling")}
    obs = serving(route("default", old_rev, 100), ready=(old_rev,), unready=deploying)
    cond = conditions(status_of(new, obs, generation=2))["DefaultEndpointReady"]
    assert cond.status == "Unknown"
    assert cond.message == (
        f"Waiting for revision {new_rev} to become ready (Deploying: pulling); {old_rev} keeps serving meanwhile."
    )


def test_a_ready_revision_not_yet_routed_is_migrating() -> None:
    s = spec(canary=CANARY, canaryTrafficPercent=10)
    default, canary = revisions(s)
    assert canary is not None
    obs = serving(route("default", default, 100), ready=(default, canary))
    cond = conditions(status_of(s, obs))["CanaryEndpointReady"]
    assert (cond.status, cond.reason) == ("Unknown", "TrafficMigrating")


def test_before_knative_reports_anything_the_service_is_being_created() -> None:
    status = status_of(spec(), None)
    cond = conditions(status)
    assert [c.type for c in status.conditions or []] == ["Ready", "DefaultEndpointReady", "RoutesReady"]
    assert {(c.status, c.reason) for c in cond.values()} == {("Unknown", "Reconciling")}
    assert status.wire().keys() == {"observedGeneration", "conditions"}


def test_replicas_are_unknown_until_every_routed_revision_reports_them() -> None:
    s = spec()
    rev, _ = revisions(s)
    assert status_of(s, serving(route("default", rev, 100), ready=(rev,), replicas=None)).replicas is None


def test_replicas_count_only_the_routed_revisions() -> None:
    """The revision that served before a rollout keeps its pods for a while; they serve nothing."""
    old = spec()
    old_rev, _ = revisions(old)
    new = spec(default={"containerImage": "img", "tag": "v9", "port": 80})
    new_rev, _ = revisions(new)
    obs = serving(route("default", new_rev, 100), ready=(old_rev, new_rev), replicas=3)
    assert status_of(new, obs, generation=2).replicas == 3


def test_a_false_dependency_wins_over_an_unknown_one() -> None:
    """Default failed while the routes still move: Ready says what is broken, not what is pending."""
    s = spec(canary=CANARY, canaryTrafficPercent=10)
    default, canary = revisions(s)
    assert canary is not None
    obs = serving(building=(default,), unready={canary: ConditionState("False", "ImagePullBackOff", "x")})
    ready = conditions(status_of(s, obs))["Ready"]
    assert (ready.status, ready.reason) == ("False", "ImagePullBackOff")


# ---- transitions and what is kept ----------------------------------------------------------------------


def test_transition_time_moves_only_when_the_status_flips() -> None:
    s = spec()
    rev, _ = revisions(s)
    obs = serving(route("default", rev, 100), ready=(rev,))
    first = status_of(s, obs)
    again = status_of(s, obs, previous=first, now=LATER)
    assert again == first  # nothing changed: nothing to write
    bumped = status_of(s, obs, previous=first, generation=2, now=LATER)
    assert conditions(bumped)["Ready"].last_transition_time == NOW
    assert conditions(bumped)["Ready"].observed_generation == 2
    broken = serving(route("default", rev, 100), ready=(rev,), routes=ConditionState("False", "X", "y"))
    flipped = status_of(s, broken, previous=bumped, generation=2, now=LATER)
    assert conditions(flipped)["Ready"].last_transition_time == LATER
    assert conditions(flipped)["DefaultEndpointReady"].last_transition_time == NOW


def test_canary_condition_appears_with_a_canary_and_goes_with_it() -> None:
    s = spec(canary=CANARY, canaryTrafficPercent=10)
    rev, _ = revisions(spec())
    obs = serving(route("default", rev, 100), ready=(rev,))
    with_canary = status_of(s, obs, generation=2)
    assert conditions(with_canary)["CanaryEndpointReady"].status == "Unknown"
    assert conditions(with_canary)["Ready"].status == "Unknown"
    without = status_of(spec(), obs, previous=with_canary, generation=3, now=LATER)
    assert "CanaryEndpointReady" not in conditions(without)
    assert conditions(without)["Ready"].status == "True"


def test_conditions_of_others_are_kept_and_kuscias_are_dropped() -> None:
    s = spec()
    rev, _ = revisions(s)
    theirs = Condition(
        type="PolicyChecked", status="True", reason="Ok", last_transition_time="2025-01-01T00:00:00Z"
    )
    kuscia = Condition(type="KusciaServingReady", status="True", reason="Available", last_transition_time=NOW)
    previous = PaddleServiceStatus(conditions=[theirs, kuscia])
    status = status_of(s, serving(route("default", rev, 100), ready=(rev,)), previous=previous)
    assert [c.type for c in status.conditions or []] == [
        "Ready",
        "DefaultEndpointReady",
        "RoutesReady",
        "PolicyChecked",
    ]
    assert conditions(status)["PolicyChecked"] == theirs
