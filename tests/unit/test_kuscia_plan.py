"""The Kuscia planners on plain data: every decision the reconcilers carry out, without Kuscia or a cluster."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia.builders.compare import digest
from paddle_kuscia.builders.kuscia import paddleservice_create_request
from paddle_kuscia.models.kuscia import KusciaDeployment, KusciaJob
from paddle_kuscia.models.paddleservice import PaddleService, PaddleServiceSpec
from paddle_kuscia.status.kuscia import AWAITING, MISSING, UNSEEN, Problem, Remote, Reported
from paddle_kuscia.status.kuscia_plan import (
    MirrorInputs,
    Send,
    attempt_key,
    deployment_request,
    job_request,
    plan_deployment,
    plan_job,
    plan_serving,
)

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
NOW = "2026-01-01T00:00:00Z"
DOWN = Problem("Unknown", "KusciaUnavailable", "Kuscia API unreachable")
REFUSED = Problem("False", "KusciaRequestRejected", "serving id is invalid (not sent again ...)")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / name).read_text())


def ps_spec(**changes: Any) -> PaddleServiceSpec:
    doc = load("paddleservice-kuscia.yaml")["spec"]
    doc.update(changes)
    return PaddleService.model_validate({"spec": doc}).spec


def wanted(spec: PaddleServiceSpec, name: str = "ps") -> str:
    return digest(paddleservice_create_request(name, spec, None))


def reported(replicas: int = 1, state: str = "Available") -> Reported:
    parties = [
        {
            "domain_id": domain,
            "role": "",
            "state": state,
            "replicas": replicas,
            "available_replicas": replicas,
            "endpoints": [
                {"port_name": "service", "scope": "Domain", "endpoint": f"ps-service.{domain}.svc:20001"}
            ],
        }
        for domain in ("alice", "bob")
    ]
    return Reported({"state": state, "total_parties": 2, "available_parties": 2, "party_statuses": parties})


def serve(spec: PaddleServiceSpec | None = None, **inputs: Any) -> Any:
    """plan_serving with neutral inputs; the status comes back as written to the API (a dict)."""
    args: dict[str, Any] = {
        "name": "ps",
        "spec": spec or ps_spec(),
        "generation": 1,
        "annotations": {},
        "previous": None,
        "remote": UNSEEN,
        "sent_by_this_process": None,
        "first_look": False,
        "other_owners": [],
        "refused": None,
        "problem": None,
        "now": NOW,
    }
    args.update(inputs)
    plan = plan_serving(**args)
    return dataclasses.replace(plan, status=plan.status.wire()) if plan.status is not None else plan


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def recorded(spec: PaddleServiceSpec, **block: Any) -> dict[str, Any]:
    """A previous status that says Kuscia accepted `spec` under the id `ps`."""
    return {"kuscia": {"servingId": "ps", "appliedHash": wanted(spec), **block}, "conditions": []}


# ---- PaddleService on Kuscia ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "other_owners", "reason", "named"),
    [
        (ps_spec(canary=ps_spec().default.wire()), [], "UnsupportedOnKuscia", "spec.canary"),
        (
            ps_spec(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            [],
            "InvalidSpec",
            "cpu",
        ),
        (ps_spec(), ["other/ps"], "ServingIdConflict", "other/ps"),
    ],
)
def test_what_cannot_run_on_kuscia_is_refused_without_sending(
    spec: PaddleServiceSpec, other_owners: list[str], reason: str, named: str
) -> None:
    plan = serve(spec, other_owners=other_owners)
    assert plan.refusal is not None and plan.refusal.reason == reason and named in plan.refusal.message
    assert (plan.send, plan.appimage, plan.delete, plan.status) == (None, None, (), None)


def test_a_new_serving_is_created_and_awaits_kuscias_report() -> None:
    plan = serve()
    assert plan.send is not None and plan.send.mode == Send.CREATE
    assert plan.send.create["serving_id"] == "ps" and plan.applied_hash == wanted(ps_spec())
    assert set(plan.send.update) == {"serving_id", "serving_input_config", "parties"}
    assert (cond(plan.status, "KusciaServingReady")["status"], plan.status["kuscia"]["appliedHash"]) == (
        "Unknown",
        plan.applied_hash,
    )


def test_an_unchanged_available_serving_sends_nothing_and_is_ready_at_its_allocated_port() -> None:
    spec = ps_spec()
    plan = serve(spec, previous=recorded(spec), remote=reported())
    assert (plan.send, plan.appimage, plan.delete) == (None, None, ())
    assert cond(plan.status, "Ready")["status"] == "True"
    assert plan.status["url"] == "http://ps-service.alice.svc:20001"


def test_a_spec_change_is_an_update() -> None:
    before = ps_spec()
    after = ps_spec(kuscia={**before.kuscia.wire(), "servingInputConfig": {"partyConfigs": {}}})  # type: ignore[union-attr]
    plan = serve(after, previous=recorded(before), remote=reported())
    assert plan.send is not None and plan.send.mode == Send.UPDATE


def test_a_serving_kuscia_lost_is_created_again() -> None:
    spec = ps_spec()
    plan = serve(spec, previous=recorded(spec), remote=MISSING)
    assert plan.send is not None and plan.send.mode == Send.CREATE
    assert cond(plan.status, "KusciaServingReady")["reason"] == "Pending"  # awaiting the new serving


def test_what_this_process_sent_wins_over_a_status_whose_write_was_lost() -> None:
    spec = ps_spec()
    stale = {"kuscia": {"servingId": "ps", "appliedHash": "an older spec"}}
    assert serve(spec, previous=stale, sent_by_this_process=wanted(spec), remote=reported()).send is None
    assert serve(spec, previous=stale, remote=reported()).send.mode == Send.UPDATE


def test_a_changed_serving_id_deletes_the_old_serving_and_creates_the_new_one() -> None:
    spec = ps_spec(kuscia={**ps_spec().kuscia.wire(), "servingId": "ps-2"})  # type: ignore[union-attr]
    plan = serve(spec, previous={"kuscia": {"servingId": "ps", "appliedHash": wanted(spec, "ps")}})
    assert plan.delete == ("ps",)
    assert plan.send is not None and (plan.send.mode, plan.serving_id) == (Send.CREATE, "ps-2")


@pytest.mark.parametrize(
    ("first_look", "running", "mode", "checked"),
    [
        (True, 3, Send.UPDATE, True),  # an update a crashed predecessor sent: the spec goes once more
        (True, 1, None, True),  # Kuscia runs what the spec says
        (False, 3, None, False),  # checked once already in this process
    ],
)
def test_replicas_drift_after_a_restart_is_repaired_once(
    first_look: bool, running: int, mode: Send | None, checked: bool
) -> None:
    spec = ps_spec()
    plan = serve(spec, previous=recorded(spec), remote=reported(replicas=running), first_look=first_look)
    assert (plan.send.mode if plan.send else None, plan.drift_checked) == (mode, checked)


def test_no_drift_check_right_after_this_process_sent() -> None:
    spec = ps_spec()
    plan = serve(
        spec, previous=recorded(spec), remote=reported(3), first_look=True, sent_by_this_process=wanted(spec)
    )
    assert (plan.send, plan.drift_checked) == (None, False)


def test_an_appimage_is_registered_once_per_content_for_parties_without_one() -> None:
    doc = load("paddleservice-kuscia.yaml")["spec"]
    for party in doc["kuscia"]["parties"]:
        party.pop("appImage", None)
    doc["default"]["arg"] = "serve --port $PORT"
    spec = PaddleService.model_validate({"spec": doc}).spec
    first = serve(spec)
    assert first.appimage is not None and first.send is not None
    assert {p["app_image"] for p in first.send.create["parties"]} == {first.appimage["name"]}
    again = serve(spec, previous=first.status)
    assert again.appimage is None


def test_a_refused_request_is_not_sent_again_until_the_object_changes() -> None:
    spec = ps_spec()
    attempt = attempt_key(wanted(spec), 1, {})
    plan = serve(spec, refused=(attempt, REFUSED))
    assert (plan.send, plan.still_refused) == (None, REFUSED)
    assert serve(spec, refused=(attempt, REFUSED), problem=DOWN).still_refused == DOWN  # what is wrong now
    for changed in ({"generation": 2}, {"annotations": {"retry": "1"}}):
        plan = serve(spec, refused=(attempt, REFUSED), **changed)
        assert plan.still_refused is None and plan.send is not None


def test_a_polling_problem_shows_in_the_status() -> None:
    spec = ps_spec()
    plan = serve(spec, previous=recorded(spec), remote=reported(), problem=DOWN)
    assert cond(plan.status, "Ready")["reason"] == "KusciaUnavailable" and plan.send is None


# ---- KusciaDeployment ---------------------------------------------------------------------------------


def mirror_inputs(name: str, **changes: Any) -> MirrorInputs:
    inputs = {
        "name": name,
        "generation": 1,
        "annotations": {},
        "previous": None,
        "remote": UNSEEN,
        "connection_url": "https://kuscia:8082",
        "refused": None,
        "problem": None,
        "now": NOW,
    }
    return MirrorInputs(**{**inputs, **changes})


def kd_plan(remote: Remote = UNSEEN, previous: dict[str, Any] | None = None, **inputs: Any) -> Any:
    spec = inputs.pop("spec", KusciaDeployment.model_validate(load("kusciadeployment-serving.yaml")).spec)
    plan = plan_deployment(spec, mirror_inputs("kd", remote=remote, previous=previous, **inputs))
    return dataclasses.replace(plan, status=plan.status.wire()) if plan.status is not None else plan


def test_deployment_is_created_then_only_updated_when_its_spec_moves() -> None:
    first = kd_plan()
    assert first.send is not None and first.send.mode == Send.CREATE
    spec = KusciaDeployment.model_validate(load("kusciadeployment-serving.yaml")).spec
    assert first.status["mirror"]["specHash"] == deployment_request("kd", spec)[1]
    assert kd_plan(reported(), previous=first.status).send is None
    moved = {**first.status, "mirror": {**first.status["mirror"], "specHash": "older"}}
    assert kd_plan(reported(), previous=moved).send.mode == Send.UPDATE
    assert kd_plan(MISSING, previous=first.status).send.mode == Send.CREATE


def test_deployment_refusal_is_kept_until_the_object_changes() -> None:
    spec = KusciaDeployment.model_validate(load("kusciadeployment-serving.yaml")).spec
    attempt = attempt_key(deployment_request("kd", spec)[1], 1, {})
    assert kd_plan(refused=(attempt, REFUSED)).still_refused == REFUSED
    assert kd_plan(refused=(attempt, REFUSED), generation=2).send is not None


# ---- KusciaJob ------------------------------------------------------------------------------------------


def job_plan(
    doc: dict[str, Any] | None = None, remote: Remote = UNSEEN, bfia: bool = False, **inputs: Any
) -> Any:
    spec = KusciaJob.model_validate(doc or load("kusciajob-psi.yaml")).spec
    plan = plan_job(spec, mirror_inputs("job", remote=remote, **inputs), bfia=bfia)
    return dataclasses.replace(plan, status=plan.status.wire()) if plan.status is not None else plan


def test_a_job_is_submitted_once_and_then_only_observed() -> None:
    first = job_plan()
    assert first.submit is not None and first.submit["job_id"] == "job" and first.poll
    assert cond(first.status, "Ready")["reason"] == "Submitted"
    running = job_plan(remote=Reported({"state": "Running", "tasks": []}), previous=first.status)
    assert running.submit is None and running.status["phase"] == "Running"


def test_a_job_changed_after_submission_is_reported_not_resent() -> None:
    first = job_plan()
    doc = load("kusciajob-psi.yaml")
    doc["spec"]["tasks"][0]["priority"] = 7
    edited = job_plan(doc, previous=first.status, generation=2)
    assert edited.submit is None
    assert cond(edited.status, "SpecSynced")["reason"] == "ImmutableAfterSubmit"


def test_a_job_finished_before_a_restart_is_not_polled() -> None:
    done = job_plan(remote=Reported({"state": "Succeeded", "tasks": []}), previous=job_plan().status)
    assert job_plan(remote=UNSEEN, previous=done.status).poll is False
    assert job_plan(remote=AWAITING, previous=done.status).poll is True


def test_a_job_kuscia_would_fail_is_invalid_and_nothing_is_sent() -> None:
    doc = load("kusciajob-psi.yaml")
    doc["spec"]["tasks"][1]["dependencies"] = ["no-such-alias"]
    plan = job_plan(doc)
    assert plan.submit is None and plan.status is None
    assert "depends on 'no-such-alias', which is no task's alias" in (plan.invalid or "")


def test_a_refused_job_is_not_resubmitted_until_the_object_changes() -> None:
    spec = KusciaJob.model_validate(load("kusciajob-psi.yaml")).spec
    attempt = attempt_key(job_request("job", spec, bfia=False)[1], 1, {})
    assert job_plan(refused=(attempt, REFUSED)).still_refused == REFUSED
    assert job_plan(refused=(attempt, REFUSED), annotations={"retry": "1"}).submit is not None


def test_bfia_jobs_are_planned_as_bfia_submissions() -> None:
    plan = job_plan(load("kusciajob-bfia.yaml"), bfia=True)
    assert plan.bfia and plan.submit is not None and "dag" in plan.submit


def test_plans_do_not_change_their_inputs() -> None:
    spec = ps_spec()
    previous = recorded(spec)
    before = copy.deepcopy(previous)
    serve(spec, previous=previous, remote=reported(3), first_look=True)
    assert previous == before


def test_a_refused_attempt_is_the_same_with_or_without_kubectls_last_applied_copy() -> None:
    """The caches drop kubectl's last-applied annotation; a reconcile from a fresh API answer still has it. Both
    must name the same attempt, or a refused request is sent again."""
    annotations = {"team": "a", "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {}}'}
    assert attempt_key("d", 1, annotations) == attempt_key("d", 1, {"team": "a"})
    assert attempt_key("d", 1, {"team": "b"}) != attempt_key("d", 1, {"team": "a"})
