"""KusciaDeployment and KusciaJob objects mirrored onto Kuscia, and status polling that scales.

Kuscia's own sample manifests are applied unchanged (plus the opt-in annotation) to the real control plane;
a real operator submits them to the Kuscia emulator and writes Kuscia's answers back in Kuscia's own shape.
Every test leaves its jobs finished or deleted, so no job of this module is still polled when the next
test counts calls.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kuscia_fixtures import (
    POLL,
    Obj,
    assert_token_never_exposed,
    clean_kuscia,
    condition,
    creates_and_updates,
    kuscia,
    kuscia_namespace,
    kuscia_operator,
    sample,
    start_operator,
    wait_condition,
    wait_gone,
)

from support.control_plane import OPERATOR_USER, ControlPlane, wait_for
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

__all__ = ["clean_kuscia", "kuscia", "kuscia_namespace", "kuscia_operator", "start_operator"]

KD, KJ = "kusciadeployment", "kusciajob"
MIRROR = {"paddle-kuscia.io/mirror": "true"}
FINALIZER = "paddle-kuscia.io/kuscia-mirror"


def chain_job(name: str, length: int, *, annotations: dict[str, str] | None = None) -> Obj:
    """A KusciaJob of `length` tasks, each depending on the one before: it runs for `length` emulator steps."""
    tasks = [
        {
            "alias": f"step-{i}",
            "taskID": f"{name}-step-{i}",
            "appImage": "secretflow-image",
            "taskInputConfig": json.dumps({"step": i}),
            "parties": [{"domainID": "alice"}, {"domainID": "bob"}],
            **({"dependencies": [f"step-{i - 1}"]} if i else {}),
        }
        for i in range(length)
    ]
    return {
        "apiVersion": "kuscia.secretflow/v1alpha1",
        "kind": "KusciaJob",
        "metadata": {"name": name, "annotations": {**MIRROR, **(annotations or {})}},
        "spec": {"initiator": "alice", "maxParallelism": 1, "tasks": tasks},
    }


def phase(cp: ControlPlane, kind: str, name: str, ns: str) -> str | None:
    return ((cp.get(kind, name, ns) or {}).get("status") or {}).get("phase")


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_kuscia_deployment_sample_becomes_a_serving_and_reports_in_kuscia_shape(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "secretflow-serving"
    manifest = sample("kusciadeployment-serving.yaml")
    control_plane.apply(manifest, ns)
    obj = wait_condition(control_plane, KD, name, ns, "Ready", "True")

    status = obj["status"]
    assert status["phase"] == "Available"
    assert (status["totalParties"], status["availableParties"]) == (2, 2)
    assert sorted(status["partyDeploymentStatuses"]) == ["alice", "bob"]
    alice = status["partyDeploymentStatuses"]["alice"][name]
    assert alice["phase"] == "Available"
    assert (alice["replicas"], alice["availableReplicas"], alice["unavailableReplicas"]) == (1, 1, 0)
    assert FINALIZER in obj["metadata"]["finalizers"]

    serving = kuscia.servings[name]
    assert serving["serving_input_config"] == manifest["spec"]["inputConfig"]
    assert serving["initiator"] == "alice"
    alice_party = next(p for p in serving["parties"] if p["domain_id"] == "alice")
    assert alice_party["app_image"] == "secretflow-serving-image"
    assert alice_party["replicas"] == 1
    assert alice_party["update_strategy"] == {
        "type": "RollingUpdate",
        "max_surge": "30%",
        "max_unavailable": "30%",
    }
    assert alice_party["resources"] == [
        {
            "container_name": "serving",
            "min_cpu": "100m",
            "max_cpu": "100m",
            "min_memory": "100Mi",
            "max_memory": "100Mi",
        }
    ]

    # A spec change is one update call.
    kuscia.reset_stats()
    control_plane.kubectl(
        "patch",
        KD,
        name,
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/parties/0/template/replicas", "value": 3}]),
    )
    wait_for(
        lambda: kuscia.servings[name]["parties"][0]["replicas"] == 3, timeout=15, what="alice at 3 replicas"
    )

    def reported_replicas() -> int | None:
        parties = control_plane.get(KD, name, ns)["status"].get("partyDeploymentStatuses") or {}
        return (parties.get("alice") or {}).get(name, {}).get("replicas")

    wait_for(lambda: reported_replicas() == 3, timeout=15, what="3 replicas reported")
    assert creates_and_updates(kuscia.stats()) == {"/api/v1/serving/update": 1}

    # Deleting it deletes the serving, then the finalizer lets go.
    control_plane.kubectl("delete", KD, name, "-n", ns, "--wait=false")
    wait_gone(control_plane, KD, name, ns)
    assert name not in kuscia.servings


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_kuscia_job_sample_runs_to_success_and_is_not_polled_afterwards(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "job-psi"
    manifest = sample("kusciajob-psi.yaml")
    # A serving that stays: its polls show the poller is alive while the finished job is left alone.
    control_plane.apply(sample("kusciadeployment-serving.yaml", name="heartbeat"), ns)
    control_plane.apply(manifest, ns)
    obj = wait_condition(control_plane, KJ, name, ns, "Ready", "True", reason="Succeeded")

    status = obj["status"]
    assert status["phase"] == "Succeeded"
    assert status["taskStatus"] == {"job-psi": "Succeeded", "job-split": "Succeeded"}
    assert status["startTime"] <= status["completionTime"]

    job = kuscia.jobs[name]
    assert (job["initiator"], job["max_parallelism"], job["protocol"]) == ("alice", 2, "kuscia")
    psi, split = job["tasks"]
    assert (psi["alias"], psi["task_id"], psi["priority"], psi["tolerable"]) == (
        "job-psi",
        "job-psi",
        100,
        False,
    )
    assert (split["dependencies"], split["tolerable"]) == (["job-psi"], True)
    assert json.loads(psi["task_input_config"]) == json.loads(manifest["spec"]["tasks"][0]["taskInputConfig"])
    alice = psi["parties"][0]
    assert alice["resources"] == {"cpu": "2", "memory": "4Gi", "bandwidth": "10"}
    assert alice["bandwidth_limits"] == [{"destination_id": "bob", "limit_kbps": 1000}]

    # Succeeded is final: three more serving polls, not one more job status call.
    jobs_polled = kuscia.calls("job/status/batchQuery")
    servings_polled = kuscia.calls("serving/status/batchQuery")
    wait_for(
        lambda: kuscia.calls("serving/status/batchQuery") >= servings_polled + 3,
        timeout=15,
        what="3 more polls",
    )
    assert kuscia.calls("job/status/batchQuery") == jobs_polled
    control_plane.kubectl("delete", KD, "heartbeat", "-n", ns, "--wait=false")


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_deleting_a_running_job_stops_and_deletes_it_in_kuscia(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "job-long"
    control_plane.apply(chain_job(name, 60), ns)
    wait_for(lambda: phase(control_plane, KJ, name, ns) == "Running", timeout=15, what="job running")

    kuscia.reset_stats()
    control_plane.kubectl("delete", KJ, name, "-n", ns, "--wait=false")
    wait_gone(control_plane, KJ, name, ns)
    assert name not in kuscia.jobs
    assert creates_and_updates(kuscia.stats()) == {"/api/v1/job/stop": 1, "/api/v1/job/delete": 1}


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_spec_change_after_submission_is_reported_not_ignored(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "job-edited"
    control_plane.apply(chain_job(name, 2), ns)
    wait_condition(control_plane, KJ, name, ns, "Ready", "True")
    submitted = kuscia.jobs[name]["tasks"]

    kuscia.reset_stats()
    control_plane.kubectl(
        "patch",
        KJ,
        name,
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "add", "path": "/spec/tasks/0/priority", "value": 7}]),
    )
    obj = wait_condition(control_plane, KJ, name, ns, "SpecSynced", "False", reason="ImmutableAfterSubmit")
    assert condition(obj, "SpecSynced")["observedGeneration"] == 2
    assert "Delete and re-create" in condition(obj, "SpecSynced")["message"]
    assert obj["status"]["phase"] == "Succeeded"  # what ran is still reported
    assert creates_and_updates(kuscia.stats()) == {}
    assert kuscia.jobs[name]["tasks"] == submitted


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_a_job_kuscia_would_fail_is_refused_without_calling_kuscia(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "job-bad-deps"
    manifest = chain_job(name, 2)
    manifest["spec"]["tasks"][1]["dependencies"] = [f"{name}-step-0"]  # a taskID: Kuscia wants an alias
    kuscia.reset_stats()
    control_plane.apply(manifest, ns)
    obj = wait_condition(control_plane, KJ, name, ns, "Ready", "False", reason="InvalidSpec")
    assert (
        f"task 'step-1' depends on '{name}-step-0', which is no task's alias"
        in condition(obj, "Ready")["message"]
    )
    assert name not in kuscia.jobs
    assert creates_and_updates(kuscia.stats()) == {}

    # Once the dependency names the alias, the job is submitted and runs.
    control_plane.kubectl(
        "patch",
        KJ,
        name,
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/tasks/1/dependencies", "value": ["step-0"]}]),
    )
    wait_condition(control_plane, KJ, name, ns, "Ready", "True", reason="Succeeded")
    assert kuscia.jobs[name]["tasks"][1]["dependencies"] == ["step-0"]
    assert kuscia.unknown_fields == []


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_objects_without_the_mirror_annotation_are_never_touched(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns = kuscia_namespace
    audit_from = control_plane.audit_line_count()
    for filename, name in (
        ("kusciajob-psi.yaml", "job-local"),
        ("kusciadeployment-serving.yaml", "kd-local"),
    ):
        local = sample(filename, name=name)
        local["metadata"]["annotations"] = {}
        control_plane.apply(local, ns)
    # An annotated job created afterwards: once it is mirrored, the operator has seen the two before it.
    control_plane.apply(chain_job("job-witness", 1), ns)
    wait_condition(control_plane, KJ, "job-witness", ns, "Ready", "True")

    for kind, name in ((KJ, "job-local"), (KD, "kd-local")):
        obj = control_plane.get(kind, name, ns)
        assert not obj["metadata"].get("finalizers")
        assert not obj.get("status")
    assert "job-local" not in kuscia.jobs and "kd-local" not in kuscia.servings
    touched = [
        e
        for e in control_plane.audit_events(audit_from)
        if e.get("user", {}).get("username") == OPERATOR_USER
        and e.get("verb") in ("patch", "update", "delete", "create")
        and (e.get("objectRef") or {}).get("name") in ("job-local", "kd-local")
    ]
    assert touched == []


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_bfia_job_goes_through_the_bfia_endpoint_and_is_tracked_through_the_job_api(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "job-bfia-lr"
    manifest = sample("kusciajob-bfia.yaml")
    kuscia.reset_stats()
    control_plane.apply(manifest, ns)
    obj = wait_condition(control_plane, KJ, name, ns, "Ready", "True", reason="Succeeded")

    assert kuscia.calls("/v1/interconn/schedule/job/create") == 1
    assert kuscia.calls("job/create") == 0
    assert kuscia.calls("job/status/batchQuery") >= 1
    job = kuscia.jobs[name]
    assert (job["protocol"], job["flow_id"], job["initiator"]) == ("bfia", "flow-1", "alice")
    rsa, lr = job["tasks"]
    assert (rsa["alias"], lr["alias"]) == ("intersect_rsa_1", "hetero_logistic_regression_1")
    assert lr["dependencies"] == [rsa["alias"]]
    assert sorted((p["domain_id"], p["role"]) for p in rsa["parties"]) == [
        ("alice", "arbiter"),
        ("alice", "guest"),
        ("bob", "host"),
    ]
    assert sorted((p["domain_id"], p["role"]) for p in lr["parties"]) == [("alice", "guest"), ("bob", "host")]
    # What Kuscia derives for each task is the component config the manifest carries.
    for task, template in zip(job["tasks"], manifest["spec"]["tasks"], strict=True):
        derived, written = json.loads(task["task_input_config"]), json.loads(template["taskInputConfig"])
        assert derived["task_params"] == written["task_params"]
        assert (derived["module_name"], derived["initiator"]) == (
            written["module_name"],
            written["initiator"],
        )
    assert set(obj["status"]["taskStatus"].values()) == {"Succeeded"}


@pytest.mark.usefixtures("clean_kuscia")
def test_connection_secret_sends_the_object_to_another_kuscia(
    control_plane: ControlPlane,
    kuscia_namespace: str,
    kuscia: KusciaDoubleThread,
    kuscia_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    ns = kuscia_namespace
    with KusciaDoubleThread(tmp_path / "other-pki", step_seconds=0.3, seed=5) as other:
        files = {f: (other.pki.directory / f).read_bytes() for f in ("ca.crt", "tls.crt", "tls.key", "token")}
        files["url"] = other.base_url.encode()
        control_plane.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "other-kuscia"},
                "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
            },
            ns,
        )
        control_plane.apply(
            chain_job("job-elsewhere", 1, annotations={"paddle-kuscia.io/connection-secret": "other-kuscia"}),
            ns,
        )
        obj = wait_condition(control_plane, KJ, "job-elsewhere", ns, "Ready", "True")
        assert "job-elsewhere" in other.jobs and "job-elsewhere" not in kuscia.jobs
        assert obj["status"]["mirror"]["connection"] == other.base_url

        control_plane.kubectl("delete", KJ, "job-elsewhere", "-n", ns, "--wait=false")
        wait_gone(control_plane, KJ, "job-elsewhere", ns)
        assert "job-elsewhere" not in other.jobs
        assert_token_never_exposed(control_plane, ns, other.token, kuscia_operator.log())


def test_status_polling_is_one_batch_per_interval_per_kind(
    control_plane: ControlPlane, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    """N mirrored jobs and M deployments cost ceil(N/100) + ceil(M/100) status calls per poll interval."""
    jobs, deployments = 120, 20
    ns = f"scale-{int(time.time())}"
    control_plane.kubectl("create", "namespace", ns)
    # Emulated controllers frozen (one step per hour): nothing finishes unless the test moves time on.
    with KusciaDoubleThread(tmp_path / "pki", step_seconds=3600, seed=3) as frozen:
        operator = start_operator(ns, frozen)
        items = [chain_job(f"job-{i:03d}", 1) for i in range(jobs)]
        items += [sample("kusciadeployment-serving.yaml", name=f"kd-{i:03d}") for i in range(deployments)]
        control_plane.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        wait_for(
            lambda: len(frozen.jobs) == jobs and len(frozen.servings) == deployments,
            timeout=90,
            what="all submitted",
        )

        frozen.advance(1)  # every job starts Running, every serving Progressing

        def running() -> bool:
            listed = control_plane.list(KJ, ns)
            return len(listed) == jobs and all(
                (o.get("status") or {}).get("phase") == "Running" for o in listed
            )

        wait_for(running, timeout=60, interval=1, what=f"{jobs} jobs reported Running")

        # Steady state: count calls over a measurement window of several poll intervals.
        frozen.reset_stats()
        window = 6 * POLL
        time.sleep(window)  # a measurement window, not synchronisation
        stats = frozen.stats()
        per_interval = {
            route: stats.get(route, 0) / (window / POLL)
            for route in ("/api/v1/job/status/batchQuery", "/api/v1/serving/status/batchQuery")
        }
        print(
            f"\nKuscia status calls per {POLL:.0f}s poll interval with {jobs} jobs and {deployments} deployments: {per_interval}"
        )
        assert per_interval["/api/v1/job/status/batchQuery"] <= math.ceil(jobs / 100)
        assert per_interval["/api/v1/serving/status/batchQuery"] <= math.ceil(deployments / 100)
        assert creates_and_updates(stats) == {}
        assert set(stats) <= {"/api/v1/job/status/batchQuery", "/api/v1/serving/status/batchQuery"}

        # Once every job has finished, their polling stops altogether.
        frozen.advance(5)

        def succeeded() -> bool:
            return all(
                (o.get("status") or {}).get("phase") == "Succeeded" for o in control_plane.list(KJ, ns)
            )

        wait_for(succeeded, timeout=60, interval=1, what=f"{jobs} jobs reported Succeeded")
        frozen.reset_stats()
        servings_polled = frozen.calls("serving/status/batchQuery")
        wait_for(
            lambda: frozen.calls("serving/status/batchQuery") >= servings_polled + 2,
            timeout=15,
            what="2 polls",
        )
        assert frozen.calls("job/status/batchQuery") == 0
        operator.stop()
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_token_is_never_exposed(
    control_plane: ControlPlane,
    kuscia_namespace: str,
    kuscia: KusciaDoubleThread,
    kuscia_operator: OperatorProcess,
) -> None:
    """Runs last in the module: everything the operator logged, posted and wrote so far is checked."""
    log = kuscia_operator.log()
    assert "Submitted Kuscia job" in log
    assert_token_never_exposed(control_plane, kuscia_namespace, kuscia.token, log)


@pytest.mark.usefixtures("clean_kuscia")
def test_a_deleted_namespace_goes_once_its_kuscia_objects_are_deleted_in_kuscia(
    control_plane: ControlPlane, kuscia: KusciaDoubleThread, start_operator: Callable[..., OperatorProcess]
) -> None:
    """With --namespace globs the operator serves a namespace created after it started, and still sees the
    deletions in a namespace being deleted: the Kuscia serving, deployment and job are deleted in Kuscia and
    their finalizers released, so the namespace goes instead of hanging in Terminating."""
    prefix = f"nsdel-{uuid.uuid4().hex[:6]}"
    start_operator(f"{prefix}-*", kuscia)
    ns = control_plane.create_namespace(prefix)
    serving = sample("paddleservice-kuscia.yaml", name="nsdel-ps")
    deployment = sample("kusciadeployment-serving.yaml", name="nsdel-kd")
    job = chain_job("nsdel-job", 60)
    for obj in (serving, deployment, job):
        control_plane.apply(obj, ns)
    for kind, name in (("paddleservice", "nsdel-ps"), (KD, "nsdel-kd")):
        obj = wait_condition(control_plane, kind, name, ns, "Ready", "True")
        assert obj["metadata"]["finalizers"], f"{kind} {name} holds the operator's finalizer"
    wait_for(lambda: phase(control_plane, KJ, "nsdel-job", ns) == "Running", timeout=15, what="job running")
    assert {"nsdel-ps", "nsdel-kd"} <= set(kuscia.servings) and "nsdel-job" in kuscia.jobs

    control_plane.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: control_plane.get("namespace", ns) is None, timeout=90, what=f"namespace {ns} gone")
    assert not {"nsdel-ps", "nsdel-kd"} & set(kuscia.servings), "the servings are deleted in Kuscia"
    assert "nsdel-job" not in kuscia.jobs, "the job is deleted in Kuscia"
