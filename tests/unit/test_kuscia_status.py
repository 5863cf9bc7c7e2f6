"""Statuses computed from what Kuscia reports: plain dicts in, plain dicts out, `now` passed in."""

from __future__ import annotations

import random
from typing import Any

import pytest

from paddle_kuscia.status.kuscia import (
    AWAITING,
    MISSING,
    UNSEEN,
    MirrorReport,
    Problem,
    Remote,
    Reported,
    deployment_status,
    job_status,
    paddleservice_kuscia_status,
    service_url,
    serving_condition,
)

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"
DOWN = Problem("Unknown", "KusciaUnavailable", "Kuscia API unreachable or failing: HTTP 503")


def as_remote(detail: Any) -> Remote:
    """Test shorthand: a detail dict is what Kuscia reported; None is "sent, nothing reported yet"."""
    if isinstance(detail, dict):
        return Reported(detail)
    return AWAITING if detail is None else detail


def party(domain: str, state: str = "Available", *, port: int = 22291, role: str = "") -> dict[str, Any]:
    available = 1 if state == "Available" else 0
    return {
        "domain_id": domain,
        "role": role,
        "state": state,
        "replicas": 1,
        "available_replicas": available,
        "unavailable_replicas": 1 - available,
        "updatedReplicas": 1,
        "create_time": T0,
        "endpoints": [
            {"port_name": "communication", "scope": "Cluster", "endpoint": f"svc-communication.{domain}.svc"},
            {"port_name": "service", "scope": "Domain", "endpoint": f"svc-service.{domain}.svc:{port}"},
        ],
    }


def serving(
    state: str = "Available", *parties: dict[str, Any], reason: str = "", message: str = ""
) -> dict[str, Any]:
    parties = parties or (party("bob", state), party("alice", state))
    return {
        "state": state,
        "reason": reason,
        "message": message,
        "total_parties": len(parties),
        "available_parties": sum(p["state"] == "Available" for p in parties),
        "create_time": T0,
        "party_statuses": list(parties),
    }


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def ps_status(
    detail: Any,
    *,
    previous: dict[str, Any] | None = None,
    problem: Problem | None = None,
    now: str = T0,
    generation: int = 1,
) -> dict[str, Any]:
    return paddleservice_kuscia_status(
        generation=generation,
        previous=previous,
        serving_id="glm",
        initiator="alice",
        remote=as_remote(detail),
        problem=problem,
        applied_hash="abc",
        app_image=None,
        now=now,
    ).wire()


# ---- servings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail", "status", "reason"),
    [
        (None, "Unknown", "Pending"),
        (MISSING, "Unknown", "ServingMissing"),
        (serving("Progressing"), "Unknown", "Progressing"),
        (serving("PartialAvailable"), "Unknown", "PartialAvailable"),
        (serving("Available"), "True", "Available"),
        (serving("Failed", reason="AllocatePortsFailed"), "False", "AllocatePortsFailed"),
        (serving("Failed"), "False", "Failed"),
    ],
)
def test_serving_condition_follows_kuscia_state(detail: Any, status: str, reason: str) -> None:
    c = serving_condition("KusciaServingReady", as_remote(detail), None)
    assert (c.status, c.reason) == (status, reason)


def test_a_connection_problem_wins_over_the_last_report() -> None:
    c = serving_condition("KusciaServingReady", Reported(serving("Available")), DOWN)
    assert (c.status, c.reason, c.message) == ("Unknown", "KusciaUnavailable", DOWN.message)


def test_available_serving_is_ready_with_the_initiators_service_url() -> None:
    status = ps_status(serving("Available"))
    assert (cond(status, "Ready")["status"], cond(status, "Ready")["reason"]) == ("True", "Serving")
    assert cond(status, "KusciaServingReady")["status"] == "True"
    assert cond(status, "Ready")["observedGeneration"] == 1 and status["observedGeneration"] == 1
    assert status["url"] == "http://svc-service.alice.svc:22291"
    assert status["address"] == {"url": status["url"]}
    block = status["kuscia"]
    assert (block["servingId"], block["state"], block["totalParties"], block["availableParties"]) == (
        "glm",
        "Available",
        2,
        2,
    )
    assert block["appliedHash"] == "abc"
    alice = block["parties"][0]
    assert (alice["domainId"], alice["state"], alice["replicas"], alice["availableReplicas"]) == (
        "alice",
        "Available",
        1,
        1,
    )
    assert [e["portName"] for e in alice["endpoints"]] == ["communication", "service"]


def test_party_and_endpoint_order_from_kuscia_does_not_matter() -> None:
    """Kuscia iterates maps: the same report in another order must give the same status (no churn)."""
    detail = serving("Available", party("carol"), party("alice"), party("bob"))
    reference = ps_status(detail)
    rng = random.Random(4)
    for _ in range(5):
        shuffled = {
            **detail,
            "party_statuses": [
                dict(p, endpoints=rng.sample(p["endpoints"], 2))
                for p in rng.sample(detail["party_statuses"], 3)
            ],
        }
        assert ps_status(shuffled) == reference


def test_failed_serving_carries_kuscias_reason_and_message() -> None:
    status = ps_status(serving("Failed", reason="CreateDeploymentFailed", message="quota exceeded"))
    ready = cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CreateDeploymentFailed")
    assert "quota exceeded" in ready["message"]
    assert (status["kuscia"]["reason"], status["kuscia"]["message"]) == (
        "CreateDeploymentFailed",
        "quota exceeded",
    )


def test_transition_time_moves_only_when_the_status_flips() -> None:
    progressing = ps_status(serving("Progressing"), now=T0)
    still = ps_status(serving("Progressing"), previous=progressing, now=T1)
    assert cond(still, "Ready")["lastTransitionTime"] == T0
    ready = ps_status(serving("Available"), previous=still, now=T2)
    assert cond(ready, "Ready")["lastTransitionTime"] == T2


def test_unseen_keeps_what_the_status_already_says() -> None:
    """After an operator restart nothing has been polled yet: the last report stands, nothing flaps."""
    before = ps_status(serving("Available"), now=T0)
    after = ps_status(UNSEEN, previous=before, now=T1)
    assert after == before
    bumped = ps_status(UNSEEN, previous=before, now=T1, generation=2)
    assert cond(bumped, "Ready")["status"] == "True" and cond(bumped, "Ready")["observedGeneration"] == 2
    assert bumped["kuscia"] == before["kuscia"] and bumped["url"] == before["url"]
    fresh = ps_status(UNSEEN, previous=None)
    assert (cond(fresh, "Ready")["status"], cond(fresh, "Ready")["reason"]) == ("Unknown", "Pending")


def test_just_sent_waits_for_kuscia_but_keeps_the_url() -> None:
    before = ps_status(serving("Available"))
    after = ps_status(None, previous=before, now=T1)
    assert cond(after, "Ready")["status"] == "Unknown"
    assert after["url"] == before["url"]
    assert "state" not in after["kuscia"]


def test_knative_conditions_are_dropped_when_moving_to_kuscia() -> None:
    previous = {
        "conditions": [
            {"type": "RoutesReady", "status": "True", "reason": "", "lastTransitionTime": T0},
            {"type": "Custom", "status": "True", "reason": "Mine", "lastTransitionTime": T0},
        ]
    }
    types = [c["type"] for c in ps_status(serving("Available"), previous=previous)["conditions"]]
    assert types == ["Ready", "KusciaServingReady", "Custom"]


def test_service_url_needs_the_initiators_service_endpoint() -> None:
    assert service_url(Reported(serving("Available", party("bob"))), "alice") is None
    assert service_url(AWAITING, "alice") is None and service_url(MISSING, "alice") is None
    assert (
        service_url(Reported(serving("Available", party("alice", port=1))), "alice")
        == "http://svc-service.alice.svc:1"
    )


# ---- KusciaDeployment ---------------------------------------------------------------------------------


def kd_status(
    detail: Any,
    *,
    previous: dict[str, Any] | None = None,
    problem: Problem | None = None,
    changed: bool = False,
    now: str = T0,
) -> dict[str, Any]:
    mirror = {"remoteId": "sf", "specHash": "abc"}
    report = MirrorReport(1, previous, as_remote(detail), problem, mirror, now, changed)
    return deployment_status("sf", report).wire()


def test_deployment_status_has_kuscias_own_shape() -> None:
    status = kd_status(serving("Available"))
    assert (status["phase"], status["totalParties"], status["availableParties"]) == ("Available", 2, 2)
    assert list(status["partyDeploymentStatuses"]) == ["alice", "bob"]
    assert status["partyDeploymentStatuses"]["alice"]["sf"] == {
        "phase": "Available",
        "role": "",
        "replicas": 1,
        "availableReplicas": 1,
        "unavailableReplicas": 0,
        "updatedReplicas": 1,
        "creationTimestamp": T0,
    }
    assert cond(status, "Ready")["status"] == "True"
    assert status["mirror"] == {"remoteId": "sf", "specHash": "abc"}
    assert status["lastReconcileTime"] == T0


def test_deployment_phase_is_one_kuscia_uses() -> None:
    assert kd_status({"state": "Pending"})["phase"] == "Progressing"
    assert kd_status(serving("PartialAvailable"))["phase"] == "PartialAvailable"
    failed = kd_status(serving("Failed", reason="CreateServiceFailed", message="boom"))
    assert (failed["phase"], failed["reason"], failed["message"]) == ("Failed", "CreateServiceFailed", "boom")
    assert cond(failed, "Ready")["status"] == "False"


def test_deployment_keeps_its_last_report_until_kuscia_reports_again() -> None:
    before = kd_status(serving("Available"))
    for detail in (UNSEEN, None):
        after = kd_status(detail, previous=before, now=T1)
        assert after["phase"] == "Available"
        assert after["partyDeploymentStatuses"] == before["partyDeploymentStatuses"]
    assert kd_status(UNSEEN, previous=before, now=T1) == before
    assert "phase" not in kd_status(MISSING, previous=before)


def test_deployment_last_reconcile_time_moves_only_with_the_status() -> None:
    before = kd_status(serving("Available"), now=T0)
    assert kd_status(serving("Available"), previous=before, now=T1)["lastReconcileTime"] == T0
    assert kd_status(serving("Progressing"), previous=before, now=T1)["lastReconcileTime"] == T1


# ---- KusciaJob ----------------------------------------------------------------------------------------


def job(state: str, *tasks: tuple[str, str], err: str = "", end: str = "") -> dict[str, Any]:
    return {
        "state": state,
        "err_msg": err,
        "create_time": T0,
        "start_time": T0 if state != "Pending" else "",
        "end_time": end,
        "tasks": [{"task_id": t, "alias": t, "state": s} for t, s in tasks],
        "stage_status_list": [],
        "approve_status_list": [],
    }


def kj_status(
    detail: Any,
    *,
    previous: dict[str, Any] | None = None,
    problem: Problem | None = None,
    changed: bool = False,
    now: str = T0,
    generation: int = 1,
) -> dict[str, Any]:
    mirror = {"remoteId": "j", "specHash": "abc"}
    report = MirrorReport(generation, previous, as_remote(detail), problem, mirror, now, changed)
    return job_status(report).wire()


def test_running_job_has_phase_and_task_status() -> None:
    status = kj_status(job("Running", ("psi", "Succeeded"), ("split", "Running")))
    assert status["phase"] == "Running"
    assert status["taskStatus"] == {"psi": "Succeeded", "split": "Running"}
    assert status["startTime"] == T0 and "completionTime" not in status
    assert (cond(status, "Ready")["status"], cond(status, "Ready")["reason"]) == ("Unknown", "Running")


def test_succeeded_job_is_ready_with_completion_time() -> None:
    status = kj_status(job("Succeeded", ("psi", "Succeeded"), end=T1))
    assert (status["phase"], status["completionTime"]) == ("Succeeded", T1)
    assert (cond(status, "Ready")["status"], cond(status, "Ready")["reason"]) == ("True", "Succeeded")


def test_failed_job_says_why() -> None:
    status = kj_status(job("Failed", ("psi", "Failed"), err="Task[psi]-Party[bob]: OOMKilled", end=T1))
    assert (status["reason"], status["message"]) == ("JobFailed", "Task[psi]-Party[bob]: OOMKilled")
    ready = cond(status, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "Failed",
        "Task[psi]-Party[bob]: OOMKilled",
    )


def test_job_just_submitted_waits_for_kuscia() -> None:
    ready = cond(kj_status(None), "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "Submitted")


def test_vanished_job_keeps_its_last_phase() -> None:
    running = kj_status(job("Running", ("psi", "Running")))
    gone = kj_status(MISSING, previous=running, now=T1)
    assert gone["phase"] == "Running"
    assert (cond(gone, "Ready")["status"], cond(gone, "Ready")["reason"]) == ("False", "JobMissing")
    done = kj_status(job("Succeeded", ("psi", "Succeeded"), end=T1))
    assert cond(kj_status(MISSING, previous=done), "Ready")["status"] == "True"


def test_job_unseen_after_restart_keeps_everything() -> None:
    done = kj_status(job("Succeeded", ("psi", "Succeeded"), end=T1))
    assert kj_status(UNSEEN, previous=done, now=T2) == done


def test_spec_change_after_submission_is_a_condition() -> None:
    done = kj_status(job("Succeeded", ("psi", "Succeeded"), end=T1))
    edited = kj_status(UNSEEN, previous=done, changed=True, generation=2, now=T2)
    synced = cond(edited, "SpecSynced")
    assert (synced["status"], synced["reason"], synced["observedGeneration"]) == (
        "False",
        "ImmutableAfterSubmit",
        2,
    )
    assert edited["phase"] == "Succeeded" and cond(edited, "Ready")["status"] == "True"
    # Reverting the spec clears it.
    reverted = kj_status(UNSEEN, previous=edited, changed=False, generation=3, now=T2)
    assert [c["type"] for c in reverted["conditions"]] == ["Ready"]


def test_job_problem_is_shown_without_losing_the_phase() -> None:
    running = kj_status(job("Running", ("psi", "Running")))
    down = kj_status(UNSEEN, previous=running, problem=DOWN, now=T1)
    assert down["phase"] == "Running"
    assert (cond(down, "Ready")["status"], cond(down, "Ready")["reason"]) == ("Unknown", "KusciaUnavailable")
