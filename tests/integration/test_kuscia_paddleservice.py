"""PaddleService with `spec.backend: kuscia`: the operator runs it as a Kuscia serving through the Kuscia API.

A real operator process against the real control plane and the Kuscia emulator over mTLS. Kuscia calls are
counted at the emulator, so "no change, no call" is proven by numbers, not by reading logs.
"""

from __future__ import annotations

import copy
import json

import pytest
from kuscia_fixtures import (
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

from support.control_plane import ControlPlane, wait_for
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

__all__ = ["clean_kuscia", "kuscia", "kuscia_namespace", "kuscia_operator", "start_operator"]

PS = "paddleservice"


def kuscia_ps(name: str) -> Obj:
    return sample("paddleservice-kuscia.yaml", name=name)


def own_image_ps(name: str) -> Obj:
    """A PaddleService whose parties name no appImage: the operator registers one built from spec.default."""
    obj = kuscia_ps(name)
    obj["spec"]["default"] = {
        "containerImage": "registry.example/paddle-serving",
        "tag": "v2",
        "port": 9292,
        "arg": "python3 -m paddle_serving_server.serve --port $PORT",
    }
    obj["spec"]["resources"] = {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    for party in obj["spec"]["kuscia"]["parties"]:
        party.pop("appImage", None)
    return obj


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_sample_becomes_ready_with_url_and_party_status(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-sample"
    control_plane.apply(kuscia_ps(name), ns)
    control_plane.kubectl("wait", f"{PS}/{name}", "-n", ns, "--for=condition=Ready", "--timeout=30s")

    obj = control_plane.get(PS, name, ns)
    status = obj["status"]
    assert condition(obj, "KusciaServingReady")["status"] == "True"
    assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
    block = status["kuscia"]
    assert block["servingId"] == name
    assert block["state"] == "Available"
    assert (block["totalParties"], block["availableParties"]) == (2, 2)
    assert [p["domainId"] for p in block["parties"]] == ["alice", "bob"]
    assert all(p["state"] == "Available" and p["replicas"] == 1 for p in block["parties"])
    assert {e["portName"] for e in block["parties"][0]["endpoints"]} == {"service", "communication"}

    # The URL is alice's (the initiator's) `service` endpoint, as Kuscia reported it.
    reported = kuscia.serving_status(name)
    alice = next(p for p in reported["party_statuses"] if p["domain_id"] == "alice")
    service = next(e["endpoint"] for e in alice["endpoints"] if e["port_name"] == "service")
    assert status["url"] == f"http://{service}"

    # servingInputConfig travels as a JSON string, parsed back it is what the user wrote.
    serving = kuscia.servings[name]
    assert (
        json.loads(serving["serving_input_config"]) == kuscia_ps(name)["spec"]["kuscia"]["servingInputConfig"]
    )
    assert serving["initiator"] == "alice"
    assert [(p["domain_id"], p["app_image"]) for p in serving["parties"]] == [
        ("alice", "secretflow-serving-image"),
        ("bob", "secretflow-serving-image"),
    ]


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_party_without_app_image_gets_one_registered_from_default(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-own-image"
    control_plane.apply(own_image_ps(name), ns)
    obj = wait_condition(control_plane, PS, name, ns, "Ready", "True")

    image_name = obj["status"]["kuscia"]["appImage"]
    image = kuscia.appimages[image_name]
    assert image["image"]["name"] == "registry.example/paddle-serving"
    assert image["image"]["tag"] == "v2"
    container = image["deploy_templates"][0]["containers"][0]
    # The port has no number: Kuscia allocates one and the command reads it through $PORT.
    assert container["ports"] == [{"name": "service", "protocol": "HTTP", "scope": "Domain"}]
    assert container["command"] == ["/bin/bash", "-c"]
    assert container["args"] == [
        'export PORT="${KUSCIA_PORT_SERVICE_NUMBER}"; python3 -m paddle_serving_server.serve --port $PORT'
    ]
    assert kuscia.unknown_fields == []  # nothing we sent was dropped by Kuscia's messages

    serving = kuscia.servings[name]
    assert {p["app_image"] for p in serving["parties"]} == {image_name}
    # cpu and memory from spec.resources become Kuscia resources (requests -> min, limits -> max).
    for party in serving["parties"]:
        assert party["resources"] == [
            {
                "container_name": "",
                "min_cpu": "500m",
                "max_cpu": "2",
                "min_memory": "1Gi",
                "max_memory": "2Gi",
            }
        ]


@pytest.mark.usefixtures("clean_kuscia")
def test_no_op_reconcile_and_restart_make_no_writes_and_a_change_makes_one_update(
    control_plane: ControlPlane,
    kuscia_namespace: str,
    kuscia: KusciaDoubleThread,
    kuscia_operator: OperatorProcess,
) -> None:
    ns, name = kuscia_namespace, "ps-quiet"
    control_plane.apply(kuscia_ps(name), ns)
    wait_condition(control_plane, PS, name, ns, "Ready", "True")

    # An annotation change queues a reconcile; nothing Kuscia-relevant changed, so nothing is sent.
    kuscia.reset_stats()
    control_plane.kubectl("annotate", PS, name, "-n", ns, "example.com/touched=1")
    polls = kuscia.calls("serving/status/batchQuery")
    wait_for(
        lambda: kuscia.calls("serving/status/batchQuery") >= polls + 2, timeout=10, what="two status polls"
    )
    assert creates_and_updates(kuscia.stats()) == {}

    # A restarted operator re-reads everything and polls again, without a single write to Kuscia and
    # without touching the status (no Ready flapping to Unknown while it has not polled yet).
    before = control_plane.get(PS, name, ns)["metadata"]["resourceVersion"]
    kuscia_operator.stop()
    kuscia.reset_stats()
    kuscia_operator.start()
    wait_for(lambda: kuscia.calls("serving/status/batchQuery") >= 2, timeout=15, what="polls after restart")
    assert creates_and_updates(kuscia.stats()) == {}
    assert control_plane.get(PS, name, ns)["metadata"]["resourceVersion"] == before

    # A real change (bob gets a second replica) is one update call, and the serving follows it.
    control_plane.kubectl(
        "patch",
        PS,
        name,
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps([{"op": "add", "path": "/spec/kuscia/parties/1/replicas", "value": 2}]),
    )
    wait_for(
        lambda: kuscia.servings[name]["parties"][1]["replicas"] == 2, timeout=15, what="bob at 2 replicas"
    )
    obj = wait_for(
        lambda: (
            (o := control_plane.get(PS, name, ns))["status"]["observedGeneration"] == 2
            and condition(o, "Ready")["status"] == "True"
            and o
        ),
        timeout=15,
        what="generation 2 ready",
    )
    assert creates_and_updates(kuscia.stats()) == {"/api/v1/serving/update": 1}
    bob = next(p for p in obj["status"]["kuscia"]["parties"] if p["domainId"] == "bob")
    assert bob["replicas"] == 2


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_serving_removed_behind_our_back_is_created_again(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-vanish"
    control_plane.apply(kuscia_ps(name), ns)
    wait_condition(control_plane, PS, name, ns, "Ready", "True")

    kuscia.reset_stats()
    kuscia.remove_serving(name)
    wait_for(lambda: name in kuscia.servings, timeout=15, what="serving created again")
    assert kuscia.calls("serving/create") == 1
    wait_condition(control_plane, PS, name, ns, "Ready", "True")


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_failed_serving_is_reported_with_kuscia_reason(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-fails"
    control_plane.apply(kuscia_ps(name), ns)
    wait_condition(control_plane, PS, name, ns, "Ready", "True")

    kuscia.fail_serving(name, reason="CreateDeploymentFailed", message="quota exceeded in bob")
    obj = wait_condition(control_plane, PS, name, ns, "Ready", "False", reason="CreateDeploymentFailed")
    assert obj["status"]["kuscia"]["state"] == "Failed"
    assert "quota exceeded in bob" in condition(obj, "KusciaServingReady")["message"]


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_deletion_deletes_the_serving_then_releases_the_finalizer(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns = kuscia_namespace
    for name in ("ps-delete", "ps-delete-gone"):
        control_plane.apply(kuscia_ps(name), ns)
    for name in ("ps-delete", "ps-delete-gone"):
        obj = wait_condition(control_plane, PS, name, ns, "Ready", "True")
        assert "paddle-kuscia.io/kuscia-serving" in obj["metadata"]["finalizers"]

    control_plane.kubectl("delete", PS, "ps-delete", "-n", ns, "--wait=false")
    wait_gone(control_plane, PS, "ps-delete", ns)
    assert "ps-delete" not in kuscia.servings

    # Already gone in Kuscia: "not found" counts as deleted. (Creates are refused meanwhile, so a status
    # poll noticing the vanished serving cannot bring it back before the deletion.)
    kuscia.inject("serving/create", "code", count=None, code=11100, message="not in this test")
    kuscia.remove_serving("ps-delete-gone")
    kuscia.reset_stats()
    control_plane.kubectl("delete", PS, "ps-delete-gone", "-n", ns, "--wait=false")
    wait_gone(control_plane, PS, "ps-delete-gone", ns)
    assert kuscia.calls("serving/delete") >= 1
    assert "ps-delete-gone" not in kuscia.servings


@pytest.mark.usefixtures("clean_kuscia", "kuscia_operator")
def test_knative_only_fields_are_refused_by_name_and_nothing_is_sent(
    control_plane: ControlPlane, kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-unsupported"
    obj = kuscia_ps(name)
    obj["spec"]["canary"] = copy.deepcopy(obj["spec"]["default"])
    obj["spec"]["canaryTrafficPercent"] = 20
    obj["spec"]["accelerator"] = {"type": "nvidia-gpu", "count": 1}
    obj["spec"]["service"] = {"minScale": 0}
    kuscia.reset_stats()
    control_plane.apply(obj, ns)

    live = wait_condition(control_plane, PS, name, ns, "Ready", "False", reason="UnsupportedOnKuscia")
    message = condition(live, "Ready")["message"]
    for field in ("spec.canary", "spec.canaryTrafficPercent", "spec.accelerator", "spec.service.minScale"):
        assert field in message
    assert name not in kuscia.servings
    assert creates_and_updates(kuscia.stats()) == {}

    # Removing the offending fields is enough: the same object then runs on Kuscia.
    fixed = kuscia_ps(name)
    control_plane.kubectl(
        "replace",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(
            {
                **fixed,
                "metadata": {**fixed["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]},
            }
        ),
    )
    wait_condition(control_plane, PS, name, ns, "Ready", "True")
    assert name in kuscia.servings


def test_token_is_never_exposed(
    control_plane: ControlPlane,
    kuscia_namespace: str,
    kuscia: KusciaDoubleThread,
    kuscia_operator: OperatorProcess,
) -> None:
    """Runs last in the module: everything the operator logged, posted and wrote so far is checked."""
    log = kuscia_operator.log()
    assert "Created Kuscia serving" in log
    assert_token_never_exposed(control_plane, kuscia_namespace, kuscia.token, log)
