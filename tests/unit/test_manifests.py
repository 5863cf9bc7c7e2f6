"""Deployment manifests read as files: samples the models and the generated CRDs accept, RBAC rules that say
why, the Argo CD Applications. What needs kustomize or shellcheck is in tests/integration/test_manifests_rendered.py."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia.models.kuscia import KusciaDeployment, KusciaJob
from paddle_kuscia.models.paddleservice import PaddleService

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SAMPLES = MANIFESTS / "samples"
NAMESPACE = "paddle-kuscia-system"
MIRROR_ANNOTATION = "paddle-kuscia.io/mirror"
MODELS = {"PaddleService": PaddleService, "KusciaJob": KusciaJob, "KusciaDeployment": KusciaDeployment}


# ---- RBAC ---------------------------------------------------------------------------------------------


def test_every_operator_rule_says_why() -> None:
    lines = (MANIFESTS / "base" / "clusterrole.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[index - 1].lstrip().startswith("#"), f"rule without a comment: {line}"


# ---- samples ------------------------------------------------------------------------------------------


def sample_files() -> list[Path]:
    return sorted(path for path in SAMPLES.glob("*.yaml") if path.name != "kustomization.yaml")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of the generated CRDs in crds/."""
    schemas = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = load(path)
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Structural OpenAPI checks as the API server applies them, including pruning of unknown fields.

    CEL rules (x-kubernetes-validations) are not evaluated here.
    """
    where = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [f"{where}: expected int or string"]
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            return [f"{where}: {value!r} does not match {schema['pattern']}"]
        return []
    errors: list[str] = []
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected object"]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                errors.append(f"{path}.{key}: unknown field, the API server would prune it")
        errors += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected array"]
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: {len(value)} items outside the allowed range")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{path}[{index}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected string, got {value!r}"]
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            errors.append(f"{where}: length {len(value)} outside the allowed range")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected integer, got {value!r}"]
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            errors.append(f"{where}: {value} outside the allowed range")
    elif kind == "boolean" and not isinstance(value, bool):
        errors.append(f"{where}: expected boolean")
    return errors


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_sample_is_accepted_by_the_operator_models(path: Path) -> None:
    obj = load(path)
    parsed = MODELS[obj["kind"]].model_validate(obj)
    assert parsed.metadata["name"] == obj["metadata"]["name"]
    assert "namespace" not in obj["metadata"]


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_sample_matches_the_generated_crd_schema(path: Path) -> None:
    obj = load(path)
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    assert schema_errors(obj, schema) == []


def test_schema_check_catches_typos_and_bad_values() -> None:
    """The structural check is only worth something if it rejects what the API server rejects."""
    obj = load(SAMPLES / "paddleservice-minimal.yaml")
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    obj["spec"]["default"]["containerImg"] = "typo"
    obj["spec"]["default"]["port"] = 70000
    obj["spec"]["canaryTrafficPercent"] = "20"
    errors = schema_errors(obj, schema)
    assert any("containerImg: unknown field" in e for e in errors)
    assert any(".spec.default.port: 70000 outside" in e for e in errors)
    assert any(".spec.canaryTrafficPercent: expected integer" in e for e in errors)


def walk(value: Any) -> Any:
    """Every key and value of a JSON-like structure, recursively."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    else:
        yield value


def test_minimal_sample_has_only_a_default_variant() -> None:
    sample = load(SAMPLES / "paddleservice-minimal.yaml")
    assert sample["metadata"]["name"] == "paddleservice-minimal"
    assert set(sample["spec"]) == {"default"}


def test_canary_gpu_sample_splits_traffic_and_requests_a_gpu() -> None:
    spec = load(SAMPLES / "paddleservice-canary-gpu.yaml")["spec"]
    assert {"default", "canary"} <= spec.keys()
    assert spec["canaryTrafficPercent"] == 20
    assert spec["accelerator"] == {"type": "nvidia-gpu", "count": 1}
    assert spec["service"] == {"minScale": 1, "initialScale": 1, "scaleToZeroPodRetentionPeriod": "5m"}


def test_elasticserving_sample_is_the_upstream_sample_without_namespace() -> None:
    example = "cd Serving/python/examples/imagenet && python3 "
    default_arg = example + "resnet50_web_service.py ResNet50_vd_model cpu 9292"
    canary_arg = example + "resnet50_web_service_canary.py ResNet50_vd_model cpu 9292"
    assert load(SAMPLES / "elasticserving-sample.yaml") == {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": "paddleservice-sample"},
        "spec": {
            "runtimeVersion": "paddleserving",
            "canaryTrafficPercent": 50,
            "default": {
                "containerImage": "registry.baidubce.com/paddleflow-public/resnet-serving",
                "tag": "latest",
                "port": 9292,
                "arg": default_arg,
            },
            "canary": {
                "containerImage": "registry.baidubce.com/paddleflow-public/resnetcanary-serving",
                "tag": "latest",
                "port": 9292,
                "arg": canary_arg,
            },
            "service": {"minScale": 0, "window": "10s"},
        },
    }


def test_lac_sample_keeps_one_replica_warm() -> None:
    spec = load(SAMPLES / "elasticserving-lac.yaml")["spec"]
    assert set(spec) >= {"default", "service"} and "canary" not in spec
    assert spec["service"] == {"minScale": 1}
    assert "lac_web_service.py" in spec["default"]["arg"]


def serving_configs() -> dict[str, tuple[dict[str, Any], set[str]]]:
    """Sample -> (SecretFlow Serving config, party domain ids) for every Kuscia serving sample."""
    ps = load(SAMPLES / "paddleservice-kuscia.yaml")
    kd = load(SAMPLES / "kusciadeployment-serving.yaml")
    return {
        "paddleservice-kuscia": (
            ps["spec"]["kuscia"]["servingInputConfig"],
            {party["domainId"] for party in ps["spec"]["kuscia"]["parties"]},
        ),
        "kusciadeployment-serving": (
            json.loads(kd["spec"]["inputConfig"]),
            {party["domainID"] for party in kd["spec"]["parties"]},
        ),
    }


@pytest.mark.parametrize("name", ["paddleservice-kuscia", "kusciadeployment-serving"])
def test_serving_config_has_one_party_config_per_party_and_no_source_md5(name: str) -> None:
    config, parties = serving_configs()[name]
    assert set(config["partyConfigs"]) == parties
    for party_config in config["partyConfigs"].values():
        assert {"modelConfig", "featureSourceConfig"} <= party_config.keys()
    assert "sourceMd5" not in set(walk(config)), "SecretFlow Serving rejects the unknown field sourceMd5"
    assert set(config.get("predictorParties", parties)) <= parties


def test_paddleservice_kuscia_sample_selects_the_kuscia_backend() -> None:
    spec = load(SAMPLES / "paddleservice-kuscia.yaml")["spec"]
    assert spec["backend"] == "kuscia"
    kuscia = spec["kuscia"]
    assert kuscia["initiator"] in {party["domainId"] for party in kuscia["parties"]}
    assert all(party["appImage"] == "secretflow-serving-image" for party in kuscia["parties"])


@pytest.mark.parametrize(
    "name", ["kusciajob-psi.yaml", "kusciajob-bfia.yaml", "kusciadeployment-serving.yaml"]
)
def test_kuscia_samples_are_mirrored(name: str) -> None:
    obj = load(SAMPLES / name)
    assert obj["metadata"]["annotations"][MIRROR_ANNOTATION] == "true"
    initiator = obj["spec"]["initiator"]
    parties = (
        obj["spec"]["parties"] if obj["kind"] == "KusciaDeployment" else obj["spec"]["tasks"][0]["parties"]
    )
    assert initiator in {party["domainID"] for party in parties}


def test_psi_job_tasks_carry_json_configs_and_a_valid_dag() -> None:
    tasks = load(SAMPLES / "kusciajob-psi.yaml")["spec"]["tasks"]
    aliases = {task["alias"] for task in tasks}
    for task in tasks:
        config = json.loads(task["taskInputConfig"])
        assert config["sf_cluster_desc"]["parties"] == ["alice", "bob"]
        assert set(task.get("dependencies", [])) <= aliases - {task["alias"]}


def test_bfia_job_tasks_carry_bfia_component_configs() -> None:
    job = load(SAMPLES / "kusciajob-bfia.yaml")
    assert job["metadata"]["annotations"]["paddle-kuscia.io/protocol"] == "bfia"
    outputs: dict[str, set[str]] = {}
    for task in job["spec"]["tasks"]:
        config = json.loads(task["taskInputConfig"])
        assert {"name", "module_name", "role", "initiator", "task_params"} <= config.keys()
        assert config["name"] == task["alias"]
        assert config["initiator"]["node_id"] == job["spec"]["initiator"]
        assert job["spec"]["initiator"] in config["role"][config["initiator"]["role"]]
        # Every party is a node of the role it plays, and every role with task params has a party.
        for party in task["parties"]:
            assert party["domainID"] in config["role"][party["role"]], party
        roles_with_params = set(config["task_params"]) - {"common"}
        assert roles_with_params == {party["role"] for party in task["parties"]}
        # Inputs name an output of a task this one depends on ("<component>.<key>").
        for item in config.get("input", []):
            upstream, key = item["key"].split(".", 1)
            assert upstream in task["dependencies"] and key in outputs[upstream], item
        outputs[task["alias"]] = {item["key"] for item in config.get("output", [])}


# ---- Argo CD ------------------------------------------------------------------------------------------


def test_crd_application_protects_crds_and_syncs_first() -> None:
    app = load(MANIFESTS / "argocd" / "application-crds.yaml")
    assert app["kind"] == "Application"
    assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    assert app["spec"]["source"]["path"] == "crds"
    assert {"Prune=false", "ServerSideApply=true"} <= set(app["spec"]["syncPolicy"]["syncOptions"])
    assert "resources-finalizer.argocd.argoproj.io" not in app["metadata"].get("finalizers", [])
    assert (ROOT / "crds" / "kustomization.yaml").is_file()


def test_operator_application_self_heals_the_prod_overlay() -> None:
    app = load(MANIFESTS / "argocd" / "application-operator.yaml")
    crds = load(MANIFESTS / "argocd" / "application-crds.yaml")
    assert app["spec"]["source"]["path"] == "manifests/overlays/prod"
    assert app["spec"]["source"]["repoURL"] == crds["spec"]["source"]["repoURL"]
    assert app["spec"]["destination"]["namespace"] == NAMESPACE
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    wave = int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
    assert wave > int(crds["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
