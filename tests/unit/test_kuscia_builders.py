"""Custom resources -> Kuscia API requests, checked on the project's samples (pure: no network, no clock)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia.builders.kuscia import (
    InvalidBfiaTask,
    InvalidKusciaJob,
    appimage_name,
    bfia_create_request,
    build_appimage,
    deployment_create_request,
    job_create_request,
    job_task_problems,
    paddleservice_create_request,
    serving_id,
    unsupported_on_kuscia,
    update_request,
)
from paddle_kuscia.models.base import KUSCIA_ID
from paddle_kuscia.models.kuscia import KusciaDeployment, KusciaJob, KusciaJobSpec
from paddle_kuscia.models.paddleservice import PaddleService, PaddleServiceSpec
from support.kuscia_double import _bfia_tasks

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / name).read_text())


def ps_spec(**changes: Any) -> PaddleServiceSpec:
    doc = load("paddleservice-kuscia.yaml")["spec"]
    doc.update(changes)
    return PaddleService.model_validate({"spec": doc}).spec


def own_image_spec(**changes: Any) -> PaddleServiceSpec:
    doc = load("paddleservice-kuscia.yaml")["spec"]
    for party in doc["kuscia"]["parties"]:
        party.pop("appImage")
    doc["default"] = {"containerImage": "registry.example/serving", "tag": "v2", "port": 9292, "arg": "serve"}
    doc.update(changes)
    return PaddleServiceSpec.model_validate(doc)


# ---- PaddleService ------------------------------------------------------------------------------------


def test_paddleservice_sample_becomes_a_serving_create_request() -> None:
    spec = ps_spec()
    request = paddleservice_create_request("ps", spec, None)
    assert request["serving_id"] == "ps"
    assert request["initiator"] == "alice"
    assert "affinity_mode" not in request
    # servingInputConfig is sent as a JSON string (compact, sorted keys: the same spec, the same bytes).
    config = request["serving_input_config"]
    assert isinstance(config, str) and json.loads(config) == spec.kuscia.serving_input_config
    assert config == json.dumps(json.loads(config), sort_keys=True, separators=(",", ":"))
    assert "sourceMd5" not in config
    assert request["parties"] == [
        {"domain_id": "alice", "role": "", "app_image": "secretflow-serving-image", "replicas": 1},
        {"domain_id": "bob", "role": "", "app_image": "secretflow-serving-image", "replicas": 1},
    ]
    assert update_request(request) == {
        k: request[k] for k in ("serving_id", "serving_input_config", "parties")
    }


def test_serving_id_defaults_to_the_name_and_can_be_set() -> None:
    assert serving_id("ps", ps_spec()) == "ps"
    spec = ps_spec(kuscia={**load("paddleservice-kuscia.yaml")["spec"]["kuscia"], "servingId": "glm-serving"})
    assert serving_id("ps", spec) == "glm-serving"
    assert paddleservice_create_request("ps", spec, None)["serving_id"] == "glm-serving"


def test_party_options_are_passed_through() -> None:
    kuscia = load("paddleservice-kuscia.yaml")["spec"]["kuscia"]
    kuscia["affinityMode"] = "none"
    kuscia["parties"][0].update(
        role="host",
        replicas=3,
        serviceNamePrefix="glm",
        updateStrategy={"type": "RollingUpdate", "maxSurge": "50%", "maxUnavailable": "0"},
    )
    request = paddleservice_create_request("ps", ps_spec(kuscia=kuscia), None)
    assert request["affinity_mode"] == "none"
    assert request["parties"][0] == {
        "domain_id": "alice",
        "role": "host",
        "app_image": "secretflow-serving-image",
        "replicas": 3,
        "update_strategy": {"type": "RollingUpdate", "max_surge": "50%", "max_unavailable": "0"},
        "service_name_prefix": "glm",
    }


def test_replicas_default_to_min_scale() -> None:
    kuscia = load("paddleservice-kuscia.yaml")["spec"]["kuscia"]
    del kuscia["parties"][0]["replicas"]
    request = paddleservice_create_request("ps", ps_spec(kuscia=kuscia, service={"minScale": 2}), None)
    assert [p["replicas"] for p in request["parties"]] == [2, 2]


def test_cpu_and_memory_become_kuscia_resources() -> None:
    both = ps_spec(
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}}
    )
    parties = paddleservice_create_request("ps", both, None)["parties"]
    expected = {
        "container_name": "",
        "min_cpu": "500m",
        "max_cpu": "2",
        "min_memory": "1Gi",
        "max_memory": "2Gi",
    }
    assert all(p["resources"] == [expected] for p in parties)

    limits_only = ps_spec(resources={"limits": {"cpu": "1", "memory": "1Gi"}})
    assert paddleservice_create_request("ps", limits_only, None)["parties"][0]["resources"] == [
        {"container_name": "", "min_cpu": "1", "max_cpu": "1", "min_memory": "1Gi", "max_memory": "1Gi"}
    ]
    assert "resources" not in paddleservice_create_request("ps", ps_spec(), None)["parties"][0]


def test_parties_without_app_image_use_one_built_from_default() -> None:
    spec = own_image_spec(workingDir="/srv")
    image = build_appimage("ps", spec)
    assert image["name"] == appimage_name("ps", spec)
    assert image["image"] == {"name": "registry.example/serving", "tag": "v2", "id": "", "sign": ""}
    (template,) = image["deploy_templates"]
    (container,) = template["containers"]
    # Kuscia allocates the number: the port is only named, and `arg` finds the number in $PORT.
    assert container["ports"] == [{"name": "service", "protocol": "HTTP", "scope": "Domain"}]
    assert container["command"] == ["/bin/bash", "-c"]
    assert container["args"] == ['export PORT="${KUSCIA_PORT_SERVICE_NUMBER}"; serve']
    assert container["working_dir"] == "/srv"
    request = paddleservice_create_request("ps", spec, image["name"])
    assert {p["app_image"] for p in request["parties"]} == {image["name"]}


def test_appimage_name_is_a_stable_kuscia_id_that_follows_the_image() -> None:
    spec = own_image_spec()
    name = appimage_name("ps", spec)
    assert name == appimage_name("ps", own_image_spec())
    assert re.match(KUSCIA_ID, name) and name.startswith("ps-")
    newer = own_image_spec(default={"containerImage": "registry.example/serving", "tag": "v3", "port": 9292})
    assert appimage_name("ps", newer) != name
    assert len(appimage_name("p" * 63, spec)) <= 63
    # spec.default.port is not part of what Kuscia runs, so it does not make a new AppImage.
    other_port = own_image_spec(default={**own_image_spec().default.wire(), "port": 8080})
    assert appimage_name("ps", other_port) == name


def test_sample_has_nothing_unsupported() -> None:
    assert unsupported_on_kuscia(ps_spec()) == []
    assert unsupported_on_kuscia(ps_spec(service={"minScale": 1})) == []


def test_knative_only_fields_are_each_named() -> None:
    default = load("paddleservice-kuscia.yaml")["spec"]["default"]
    spec = ps_spec(
        canary=default,
        canaryTrafficPercent=20,
        accelerator={"type": "nvidia-gpu"},
        service={"minScale": 0, "window": "60s"},
        nodeSelector={"gpu": "yes"},
        resources={"limits": {"nvidia.com/gpu": 1}},
    )
    problems = "\n".join(unsupported_on_kuscia(spec))
    for field in (
        "spec.canary ",
        "spec.canaryTrafficPercent",
        "spec.accelerator",
        "spec.service.minScale: 0",
        "spec.service.window",
        "spec.nodeSelector",
        "spec.resources[nvidia.com/gpu]",
    ):
        assert field in problems, field


# ---- KusciaDeployment ---------------------------------------------------------------------------------


def test_kusciadeployment_sample_becomes_the_request_kuscia_would_have_taken() -> None:
    doc = load("kusciadeployment-serving.yaml")
    request = deployment_create_request("secretflow-serving", KusciaDeployment.model_validate(doc).spec)
    assert request["serving_id"] == "secretflow-serving"
    assert request["serving_input_config"] == doc["spec"]["inputConfig"]  # already a string: sent as written
    assert request["initiator"] == "alice"
    alice, bob = request["parties"]
    assert alice == {
        "domain_id": "alice",
        "role": "",
        "app_image": "secretflow-serving-image",
        "replicas": 1,
        "update_strategy": {"type": "RollingUpdate", "max_surge": "30%", "max_unavailable": "30%"},
        "resources": [
            {
                "container_name": "serving",
                "min_cpu": "100m",
                "max_cpu": "100m",
                "min_memory": "100Mi",
                "max_memory": "100Mi",
            }
        ],
    }
    assert bob == {"domain_id": "bob", "role": "", "app_image": "secretflow-serving-image"}


# ---- KusciaJob ----------------------------------------------------------------------------------------


def test_kusciajob_sample_becomes_a_job_create_request() -> None:
    doc = load("kusciajob-psi.yaml")
    request = job_create_request("job-psi", KusciaJob.model_validate(doc).spec)
    assert (request["job_id"], request["initiator"], request["max_parallelism"]) == ("job-psi", "alice", 2)
    psi, split = request["tasks"]
    assert psi["alias"] == psi["task_id"] == "job-psi"
    assert (psi["priority"], psi["tolerable"], psi["dependencies"]) == (100, False, [])
    assert (split["dependencies"], split["tolerable"], split["priority"]) == (["job-psi"], True, 0)
    assert psi["task_input_config"] == doc["spec"]["tasks"][0]["taskInputConfig"]
    assert psi["app_image"] == "secretflow-image"
    alice, bob = psi["parties"]
    # Kuscia's JobResource is one value per resource (it sets limits = requests): the limit is taken.
    assert alice == {
        "domain_id": "alice",
        "role": "",
        "resources": {"cpu": "2", "memory": "4Gi", "bandwidth": "10"},
        "bandwidth_limits": [{"destination_id": "bob", "limit_kbps": "1000"}],
    }
    assert bob == {"domain_id": "bob", "role": ""}


def test_job_defaults_and_schedule_config() -> None:
    spec = KusciaJobSpec.model_validate(
        {
            "initiator": "alice",
            "tasks": [
                {
                    "alias": "t",
                    "appImage": "img",
                    "taskInputConfig": "{}",
                    "parties": [{"domainID": "alice"}],
                    "scheduleConfig": {
                        "lifecycleSeconds": 600,
                        "resourceReservedSeconds": 30,
                        "retryIntervalSeconds": 15,
                    },
                }
            ],
        }
    )
    request = job_create_request("j", spec)
    assert request["max_parallelism"] == 1
    (task,) = request["tasks"]
    assert task["task_id"] == "" and task["tolerable"] is False
    assert task["schedule_config"] == {
        "task_timeout_seconds": 600,
        "resource_reserved_seconds": 30,
        "resource_reallocation_interval_seconds": 15,
    }


# ---- BFIA ---------------------------------------------------------------------------------------------


def bfia_spec(doc: dict[str, Any] | None = None) -> KusciaJobSpec:
    return KusciaJob.model_validate(doc or load("kusciajob-bfia.yaml")).spec


def test_bfia_sample_becomes_a_bfia_job_create_body() -> None:
    body = bfia_create_request("job-bfia-lr", bfia_spec())
    assert (body["job_id"], body["flow_id"]) == ("job-bfia-lr", "flow-1")
    assert [(c["code"], c["name"], c["module_name"]) for c in body["dag"]["components"]] == [
        ("secretflow", "intersect_rsa_1", "intersect_rsa"),
        ("secretflow", "hetero_logistic_regression_1", "hetero_logistic_regression"),
    ]
    assert body["dag"]["components"][1]["input"] == [{"type": "training_set", "key": "intersect_rsa_1.data0"}]
    config = body["config"]
    assert config["role"] == {"arbiter": ["alice"], "host": ["bob"], "guest": ["alice"]}
    assert config["initiator"] == {"role": "guest", "node_id": "alice"}
    assert config["job_params"] == {"arbiter": {"0": {}}, "host": {"0": {}}, "guest": {"0": {}}}
    params = config["task_params"]
    assert params["host"]["0"]["intersect_rsa_1"] == {"name": "bob_table", "namespace": "paddle"}
    assert params["arbiter"]["0"] == {"intersect_rsa_1": {}}
    assert params["common"]["hetero_logistic_regression_1"]["penalty"] == "L2"


def test_bfia_body_converts_back_into_the_same_tasks() -> None:
    """Kuscia's conversion (GenerateKusciaJobFrom, as the emulator reproduces it) gives back each task's
    parties, dependencies and component config: what the KusciaJob says is what runs."""
    doc = load("kusciajob-bfia.yaml")
    body = bfia_create_request("job-bfia-lr", bfia_spec(doc))
    tasks = _bfia_tasks("job-bfia-lr", body["dag"], body["config"])
    for task, template in zip(tasks, doc["spec"]["tasks"], strict=True):
        assert task["alias"] == template["alias"]
        assert sorted((p["domain_id"], p["role"]) for p in task["parties"]) == sorted(
            (p["domainID"], p["role"]) for p in template["parties"]
        )
        derived, written = json.loads(task["task_input_config"]), json.loads(template["taskInputConfig"])
        for key in ("name", "module_name", "task_params", "role", "initiator"):
            assert derived[key] == written[key], key
    assert tasks[1]["dependencies"] == [tasks[0]["alias"]]


def test_bfia_party_missing_from_task_params_is_still_a_party() -> None:
    doc = load("kusciajob-bfia.yaml")
    config = json.loads(doc["spec"]["tasks"][1]["taskInputConfig"])
    del config["task_params"]["host"]
    doc["spec"]["tasks"][1]["taskInputConfig"] = json.dumps(config)
    body = bfia_create_request("j", bfia_spec(doc))
    assert body["config"]["task_params"]["host"]["0"]["hetero_logistic_regression_1"] == {}


def test_bfia_body_is_deterministic() -> None:
    assert json.dumps(bfia_create_request("j", bfia_spec())) == json.dumps(
        bfia_create_request("j", bfia_spec())
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update(taskInputConfig="not json"), "is not JSON"),
        (lambda t: t.update(taskInputConfig="[1]"), "must be a JSON object"),
        (lambda t: t["parties"].append({"domainID": "carol", "role": "host"}), "not in the BFIA role map"),
        (
            lambda t: t["parties"].append({"domainID": "alice", "role": "observer"}),
            "not in the BFIA role map",
        ),
        (
            lambda t: t.update(
                taskInputConfig=json.dumps(
                    {**json.loads(t["taskInputConfig"]), "task_params": {"host": {"3": {}}}}
                )
            ),
            "names no member of role host",
        ),
    ],
)
def test_bfia_configs_kuscia_could_not_convert_are_refused(change: Any, message: str) -> None:
    doc = copy.deepcopy(load("kusciajob-bfia.yaml"))
    change(doc["spec"]["tasks"][0])
    with pytest.raises(InvalidBfiaTask, match=message):
        bfia_create_request("j", bfia_spec(doc))


def test_bfia_role_map_comes_from_parties_when_configs_carry_none() -> None:
    spec = KusciaJobSpec.model_validate(
        {
            "initiator": "alice",
            "tasks": [
                {
                    "alias": "psi",
                    "appImage": "secretflow",
                    "taskInputConfig": json.dumps({"module_name": "psi"}),
                    "parties": [{"domainID": "bob", "role": "host"}, {"domainID": "alice", "role": "guest"}],
                }
            ],
        }
    )
    config = bfia_create_request("j", spec)["config"]
    assert config["role"] == {"host": ["bob"], "guest": ["alice"]}
    assert config["initiator"] == {"role": "guest", "node_id": "alice"}
    assert config["task_params"] == {"host": {"0": {"psi": {}}}, "guest": {"0": {"psi": {}}}}


# ---- KusciaJob checks Kuscia's job controller would fail ------------------------------------------------


def chain_spec(*tasks: tuple[str, list[str]], task_ids: dict[str, str] | None = None) -> KusciaJobSpec:
    """A job of tasks given as (alias, dependencies)."""
    doc = load("kusciajob-psi.yaml")["spec"]
    template = doc["tasks"][0]
    doc["tasks"] = []
    for alias, deps in tasks:
        task = {**copy.deepcopy(template), "alias": alias, "dependencies": deps}
        task.pop("taskID", None)
        if task_ids and alias in task_ids:
            task["taskID"] = task_ids[alias]
        doc["tasks"].append(task)
    return KusciaJobSpec.model_validate(doc)


def test_the_job_samples_pass_the_dependency_checks() -> None:
    for name in ("kusciajob-psi.yaml", "kusciajob-bfia.yaml"):
        assert job_task_problems(KusciaJob.model_validate(load(name)).spec) == []
    assert job_task_problems(chain_spec(("a", []), ("b", ["a"]), ("c", ["a", "b"]))) == []


@pytest.mark.parametrize(
    ("spec", "problems"),
    [
        pytest.param(
            chain_spec(("psi", []), ("train", ["job-1-psi"])),
            ["task 'train' depends on 'job-1-psi', which is no task's alias"],
            id="dependency-on-a-task-id",
        ),
        pytest.param(
            chain_spec(("a", ["c"]), ("b", ["a"]), ("c", ["b"])),
            ["tasks depend on each other in a cycle: a -> c -> b -> a"],
            id="cycle",
        ),
        pytest.param(chain_spec(("a", ["a"])), ["tasks depend on each other in a cycle: a -> a"], id="self"),
        pytest.param(
            chain_spec(("a", []), ("b", []), task_ids={"a": "same", "b": "same"}),
            ["2 tasks have the taskID 'same'"],
            id="duplicate-task-id",
        ),
        pytest.param(chain_spec(("a", []), ("a", [])), ["2 tasks have the alias 'a'"], id="duplicate-alias"),
    ],
)
def test_jobs_kuscia_would_fail_are_refused_before_sending(spec: KusciaJobSpec, problems: list[str]) -> None:
    assert job_task_problems(spec) == problems
    for build in (job_create_request, bfia_create_request):
        with pytest.raises(InvalidKusciaJob, match="Kuscia would fail this job: ") as caught:
            build("job-1", spec)
        assert all(problem in str(caught.value) for problem in problems)
