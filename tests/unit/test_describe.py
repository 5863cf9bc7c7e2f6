"""`paddle-kuscia describe`, on plain dicts: the tree under an object, and the first thing that is wrong."""

from __future__ import annotations

import json
from typing import Any

from paddle_kuscia.cli import parser
from paddle_kuscia.describe import advice, render, tree
from paddle_kuscia.describe.command import build

NS = "demo"


def cond(ctype: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


def paddleservice(
    *, canary: bool = True, generation: int = 2, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "default": {"containerImage": "registry.example.com/resnet", "tag": "v1", "port": 9292}
    }
    if canary:
        spec["canary"] = {"containerImage": "registry.example.com/resnet", "tag": "v2", "port": 9292}
        spec["canaryTrafficPercent"] = 20
    return {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": "resnet", "namespace": NS, "uid": "u-1", "generation": generation},
        "spec": spec,
        "status": status if status is not None else {},
    }


def traffic(default: str, canary: str | None, percent: int = 20) -> list[dict[str, Any]]:
    out = [
        {
            "tag": "default",
            "revisionName": default,
            "percent": 100 - (percent if canary else 0),
            "url": "http://default-resnet.demo.example.com",
        }
    ]
    if canary:
        out.append(
            {
                "tag": "canary",
                "revisionName": canary,
                "percent": percent,
                "url": "http://canary-resnet.demo.example.com",
            }
        )
    return out


def ksvc(split: list[dict[str, Any]], *, owner_uid: str = "u-1", ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "resnet",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "elasticserving.paddlepaddle.org/v1",
                    "kind": "PaddleService",
                    "name": "resnet",
                    "uid": owner_uid,
                }
            ],
        },
        "status": {
            "conditions": [cond("Ready", ready)],
            "url": "http://resnet.demo.example.com",
            "traffic": split,
        },
    }


def revision(
    name: str,
    status: str = "True",
    reason: str = "",
    message: str = "",
    replicas: int = 1,
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {tree.REVISION_LABEL: "resnet"},
            "creationTimestamp": created,
        },
        "status": {
            "conditions": [cond("Ready", status, reason, message)],
            "actualReplicas": replicas,
            "desiredReplicas": replicas,
        },
    }


def route(split: list[dict[str, Any]], ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": "resnet", "namespace": NS},
        "status": {
            "conditions": [cond("Ready", ready)],
            "url": "http://resnet.demo.example.com",
            "traffic": split,
        },
    }


def ps_status(
    split: list[dict[str, Any]], *conditions: dict[str, Any], generation: int = 2
) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "conditions": list(conditions),
        "traffic": split,
        "url": "http://resnet.demo.example.com",
    }


WANTED = tree.wanted_revisions(paddleservice())
DEFAULT, CANARY = WANTED["default"], WANTED["canary"]


def node(description: tree.Description, ref: str) -> tree.Node:
    """The node `ref` anywhere in the tree."""
    todo = [description.tree]
    while todo:
        n = todo.pop()
        if n.ref == ref:
            return n
        todo.extend(n.children)
    raise AssertionError(f"no {ref} in the tree")


def test_wanted_revisions_use_the_operators_own_names() -> None:
    assert DEFAULT.startswith("resnet-") and CANARY.startswith("resnet-") and DEFAULT != CANARY
    assert tree.wanted_revisions(paddleservice(canary=False)) == {"default": DEFAULT}


def test_a_serving_canary_split_shows_both_revisions_with_traffic_tags_and_replicas_and_nothing_wrong() -> (
    None
):
    split = traffic(DEFAULT, CANARY)
    ps = paddleservice(
        status=ps_status(
            split, cond("Ready", "True", "Serving"), cond("CanaryEndpointReady", "True", "RevisionReady")
        )
    )
    d = tree.describe_paddleservice(
        ps,
        knative_service=ksvc(split),
        revisions=[
            revision(CANARY, replicas=1),
            revision(DEFAULT, replicas=3),
            revision("resnet-old", created="2025-01-01T00:00:00Z"),
        ],
        route=route(split),
    )
    assert d.finding is None
    service = d.tree.children[0]
    assert [c.ref for c in service.children] == [
        f"Revision/{DEFAULT}",
        f"Revision/{CANARY}",
        "Revision/resnet-old",
        "Route/resnet",
    ]
    default, canary = service.children[0], service.children[1]
    assert default.fields["trafficPercent"] == 80 and canary.fields["trafficPercent"] == 20
    assert default.fields["tags"] == {"default": "http://default-resnet.demo.example.com"}
    assert default.fields["actualReplicas"] == 3 and default.fields["role"] == "default"
    assert service.children[2].fields["trafficPercent"] == 0
    text = render.to_text(d)
    assert "80% traffic" in text and "tag canary http://canary-resnet.demo.example.com" in text
    assert "Nothing is wrong." in text and "\033[" not in text


def test_a_failing_canary_points_at_its_revision_and_reason_while_the_default_serves() -> None:
    split = traffic(DEFAULT, None)
    ps = paddleservice(
        status=ps_status(
            split,
            cond("Ready", "False", "ContainerMissing", f"CanaryEndpointReady: Revision {CANARY} failed"),
            cond("DefaultEndpointReady", "True", "RevisionReady"),
            cond("CanaryEndpointReady", "False", "ContainerMissing", f"Revision {CANARY} failed"),
        )
    )
    d = tree.describe_paddleservice(
        ps,
        knative_service=ksvc(split, ready="False"),
        revisions=[
            revision(DEFAULT),
            revision(
                CANARY,
                "False",
                "ContainerMissing",
                "Unable to fetch image registry.example.com/resnet:v2",
                replicas=0,
            ),
        ],
        route=route(split),
    )
    assert d.finding is not None
    assert d.finding.ref == f"Revision/{CANARY}" and d.finding.severity == tree.FAILED
    assert "ContainerMissing" in d.finding.problem and "Unable to fetch image" in d.finding.problem
    assert d.finding.advice == advice.fill(
        advice.CANARY_FAILED, serving="the default revision keeps all the traffic"
    )
    assert node(d, f"Revision/{DEFAULT}").fields["trafficPercent"] == 100
    lines = render.to_text(d).splitlines()
    flagged = [line for line in lines if "<-- first problem" in line]
    assert len(flagged) == 1 and CANARY in flagged[0]
    assert any(line.startswith("  What to do: ") and "canaryTrafficPercent: 0" in line for line in lines)


def test_a_failed_new_default_is_reported_before_anything_else_and_the_old_one_still_serves() -> None:
    split = traffic("resnet-previous", None)
    ps = paddleservice(
        canary=False,
        status=ps_status(split, cond("Ready", "False", "ExitCode1", "DefaultEndpointReady: ...")),
    )
    d = tree.describe_paddleservice(
        ps,
        knative_service=ksvc(split),
        revisions=[
            revision("resnet-previous"),
            revision(DEFAULT, "False", "ExitCode1", "Container failed with: boom"),
        ],
        route=route(split),
    )
    assert d.finding is not None and d.finding.ref == f"Revision/{DEFAULT}"
    assert d.finding.advice == advice.DEFAULT_FAILED
    assert node(d, "Revision/resnet-previous").fields["role"] == "default (serving)"


def test_a_rollout_in_flight_is_progress_not_failure() -> None:
    split = traffic("resnet-previous", None)
    ps = paddleservice(
        canary=False, status=ps_status(split, cond("Ready", "Unknown", "RevisionNotReady", "Waiting"))
    )
    d = tree.describe_paddleservice(
        ps,
        knative_service=ksvc(split, ready="Unknown"),
        revisions=[revision("resnet-previous")],
        route=route(split),
    )
    missing = node(d, f"Revision/{DEFAULT}")
    assert missing.state == tree.MISSING
    assert d.finding is not None and d.finding.ref == missing.ref and d.finding.severity == tree.PROGRESSING
    assert f"serving.knative.dev/revision={DEFAULT}" in d.finding.advice and f"-n {NS}" in d.finding.advice


def test_operator_level_reasons_are_explained_from_the_troubleshooting_table() -> None:
    ps = paddleservice(
        status={
            "observedGeneration": 2,
            "conditions": [
                cond("Ready", "False", "InvalidSpec", "spec.resources.limits.cpu: below its request")
            ],
        }
    )
    d = tree.describe_paddleservice(ps)
    assert d.finding is not None and d.finding.ref == "PaddleService/resnet"
    assert "limits.cpu" in d.finding.problem and d.finding.advice == advice.ADVICE["InvalidSpec"]


def test_no_status_or_an_old_generation_says_the_operator_has_not_caught_up() -> None:
    d = tree.describe_paddleservice(paddleservice(status={}))
    assert d.finding is not None and d.finding.advice == advice.NO_STATUS
    stale = paddleservice(generation=3, status=ps_status([], cond("Ready", "True", "Serving"), generation=2))
    d = tree.describe_paddleservice(stale, knative_service=ksvc([]), revisions=[], route=route([]))
    assert (
        d.finding is not None and "generation 2" in d.finding.problem and "generation 3" in d.finding.problem
    )


def test_a_missing_or_foreign_knative_service_is_named() -> None:
    status = ps_status([], cond("Ready", "Unknown", "Reconciling"))
    d = tree.describe_paddleservice(paddleservice(status=status))
    assert d.tree.children[0].state == tree.MISSING
    assert (
        d.finding is not None
        and d.finding.ref == "Service/resnet"
        and d.finding.advice == advice.KNATIVE_SERVICE_MISSING
    )
    d = tree.describe_paddleservice(
        paddleservice(status=status), knative_service=ksvc([], owner_uid="someone-else"), route=route([])
    )
    assert d.finding is not None and d.finding.advice == advice.ADVICE["KnativeServiceConflict"]


def kuscia_ps(parties: list[dict[str, Any]], ready: dict[str, Any]) -> dict[str, Any]:
    ps = paddleservice(canary=False)
    ps["spec"]["backend"] = "kuscia"
    ps["status"] = {
        "observedGeneration": 2,
        "conditions": [ready],
        "kuscia": {
            "servingId": "resnet",
            "state": "PartialAvailable",
            "totalParties": 2,
            "availableParties": 1,
            "parties": parties,
        },
    }
    return ps


def test_kuscia_parties_come_from_the_status_and_an_unavailable_party_is_the_problem() -> None:
    parties = [
        {
            "domainId": "alice",
            "state": "Available",
            "replicas": 1,
            "availableReplicas": 1,
            "endpoints": [
                {"portName": "service", "scope": "Domain", "endpoint": "resnet-service.alice.svc:20002"}
            ],
        },
        {"domainId": "bob", "state": "Progressing", "replicas": 2, "availableReplicas": 0},
    ]
    d = tree.describe_paddleservice(
        kuscia_ps(parties, cond("Ready", "Unknown", "PartialAvailable", "1/2 parties available"))
    )
    serving = d.tree.children[0]
    assert serving.ref == "KusciaServing/resnet"
    assert [p.name for p in serving.children] == ["alice", "bob"]
    assert "resnet-service.alice.svc:20002" in serving.children[0].summary
    assert (
        d.finding is not None
        and d.finding.ref == "Party/bob"
        and d.finding.advice == advice.PARTY_UNAVAILABLE
    )


def test_kuscia_connection_problems_come_before_the_last_reported_parties() -> None:
    d = tree.describe_paddleservice(
        kuscia_ps([], cond("Ready", "False", "KusciaAuthFailed", "Kuscia refused our credentials"))
    )
    assert d.finding is not None and d.finding.ref == "PaddleService/resnet"
    assert d.finding.advice == advice.ADVICE["KusciaAuthFailed"]


def test_a_kuscia_deployment_shows_each_party_from_its_own_status_shape() -> None:
    kd = {
        "kind": "KusciaDeployment",
        "metadata": {"name": "serving", "namespace": "alice", "generation": 1},
        "status": {
            "phase": "Available",
            "totalParties": 2,
            "availableParties": 2,
            "partyDeploymentStatuses": {
                "alice": {
                    "serving": {"phase": "Available", "role": "", "replicas": 1, "availableReplicas": 1}
                },
                "bob": {"serving": {"phase": "Available", "role": "", "replicas": 1, "availableReplicas": 1}},
            },
            "conditions": [cond("Ready", "True", "Available")],
            "observedGeneration": 1,
            "mirror": {"remoteId": "serving", "connection": "https://kusciaapi:8082"},
        },
    }
    d = tree.describe_kuscia_deployment(kd)
    assert d.finding is None
    assert [p.ref for p in d.tree.children[0].children] == ["Party/alice", "Party/bob"]
    assert d.fields["connection"] == "https://kusciaapi:8082"


def job(phase: str, tasks: dict[str, str], ready: dict[str, Any], message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "taskStatus": tasks,
        "conditions": [ready],
        "observedGeneration": 1,
        "mirror": {"remoteId": "psi"},
    }
    if message:
        status["message"] = message
    return {
        "kind": "KusciaJob",
        "metadata": {"name": "psi", "namespace": "alice", "generation": 1},
        "status": status,
    }


def test_a_failed_kuscia_job_points_at_the_failed_task_and_a_running_one_is_fine() -> None:
    failed = job(
        "Failed",
        {"job-psi": "Failed", "prep": "Succeeded"},
        cond("Ready", "False", "Failed", "task failed"),
        message="psi: exit 1",
    )
    d = tree.describe_kuscia_job(failed)
    assert d.finding is not None and d.finding.ref == "Task/job-psi" and "psi: exit 1" in d.finding.problem
    running = job(
        "Running", {"job-psi": "Running"}, cond("Ready", "Unknown", "Running", "The job is Running.")
    )
    assert tree.describe_kuscia_job(running).finding is None


def test_an_unannotated_kuscia_object_without_status_is_probably_not_mirrored() -> None:
    kj = {"kind": "KusciaJob", "metadata": {"name": "psi", "namespace": "alice", "generation": 1}}
    d = tree.describe_kuscia_job(kj)
    assert d.finding is not None and d.finding.advice == advice.NOT_MIRRORED


def test_colour_only_when_asked_and_json_carries_the_same_finding() -> None:
    split = traffic(DEFAULT, None)
    ps = paddleservice(status=ps_status(split, cond("Ready", "False", "ContainerMissing")))
    d = build(
        "PaddleService",
        {
            "ps": ps,
            "knative_service": ksvc(split),
            "revisions": [revision(DEFAULT), revision(CANARY, "False", "ContainerMissing")],
            "route": route(split),
        },
    )
    assert "\033[31m" in render.to_text(d, colour=True)
    assert "\033[" not in render.to_text(d, colour=False)
    data = json.loads(render.to_json(d))
    assert data["finding"]["ref"] == f"Revision/{CANARY}"
    assert data["tree"]["children"][0]["kind"] == "Service"


def test_the_command_line_takes_kind_aliases_namespace_and_output() -> None:
    args = parser().parse_args(["describe", "PS", "resnet", "-n", NS, "-o", "json"])
    assert (args.kind, args.name, args.namespace, args.output) == ("ps", "resnet", NS, "json")
    for alias in ("kd", "kusciadeployment", "kj", "kusciajobs", "paddleservice"):
        assert parser().parse_args(["describe", alias, "x"]).kind == alias


def test_the_namespace_defaults_to_the_chosen_kubeconfig_contexts(tmp_path: Any, monkeypatch: Any) -> None:
    from paddle_kuscia.describe import read

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u", "namespace": "team-b"}},
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert read.connect(None).namespace == "team-a"
    assert read.connect("b").namespace == "team-b"
    assert read.connect("plain").namespace == "default"


def test_revisions_are_listed_in_traffic_order_then_the_specs_then_the_newest_others() -> None:
    split = traffic("resnet-zzz", "resnet-aaa")
    ps = paddleservice(status=ps_status(split, cond("Ready", "Unknown", "RevisionNotReady")))
    revisions = [revision(n) for n in ("resnet-aaa", CANARY, "resnet-zzz", DEFAULT)]
    d = tree.describe_paddleservice(ps, knative_service=ksvc(split), revisions=revisions, route=route(split))
    names = [c.name for c in d.tree.children[0].children if c.kind == "Revision"]
    assert names == ["resnet-zzz", "resnet-aaa", DEFAULT, CANARY]


def test_only_the_newest_other_revisions_are_shown_and_the_rest_counted() -> None:
    split = traffic(DEFAULT, CANARY)
    ps = paddleservice(status=ps_status(split, cond("Ready", "True", "Serving")))
    old = [revision(f"resnet-old{i}", created=f"2025-01-0{i}T00:00:00Z") for i in range(1, 6)]
    d = tree.describe_paddleservice(
        ps,
        knative_service=ksvc(split),
        revisions=[revision(DEFAULT), revision(CANARY), *old],
        route=route(split),
    )
    shown = [c.name for c in d.tree.children[0].children if c.kind == "Revision"]
    assert shown == [DEFAULT, CANARY, "resnet-old5", "resnet-old4", "resnet-old3"]
    lines = render.to_text(d).splitlines()
    at = next(i for i, line in enumerate(lines) if "(2 older revisions not shown)" in line)
    assert "Revision/resnet-old3" in lines[at - 1] and "Route/resnet" in lines[at + 1]


def test_a_failed_new_canary_says_the_previous_canary_revision_keeps_its_share() -> None:
    split = traffic(DEFAULT, "resnet-previous-canary")
    ps = paddleservice(status=ps_status(split, cond("Ready", "False", "ExitCode1")))
    d = tree.describe_paddleservice(
        ps,
        knative_service=ksvc(split),
        revisions=[
            revision(DEFAULT),
            revision("resnet-previous-canary"),
            revision(CANARY, "False", "ExitCode1"),
        ],
        route=route(split),
    )
    assert d.finding is not None and d.finding.ref == f"Revision/{CANARY}"
    assert "the previous canary revision resnet-previous-canary keeps the canary's share" in d.finding.advice
    assert node(d, "Revision/resnet-previous-canary").fields["role"] == "canary (serving)"
