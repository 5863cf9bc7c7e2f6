"""Deployment manifests: kustomize renders, least-privilege RBAC, hardened pod, samples that the API accepts.

Rendering uses the project's own kubectl (built by hack/control-plane.sh), so the kustomize version is
the one the integration suite and the documented install use.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia import cli
from paddle_kuscia.models.kuscia import KusciaDeployment, KusciaJob
from paddle_kuscia.models.paddleservice import PaddleService

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SAMPLES = MANIFESTS / "samples"
NAMESPACE = "paddle-kuscia-system"
OPERATOR = "paddle-kuscia-operator"
MIRROR_ANNOTATION = "paddle-kuscia.io/mirror"
KUSTOMIZATIONS = [
    "manifests/base",
    "manifests/overlays/dev",
    "manifests/overlays/prod",
    "manifests/rbac-user",
    "manifests/samples",
    "crds",
]
MODELS = {"PaddleService": PaddleService, "KusciaJob": KusciaJob, "KusciaDeployment": KusciaDeployment}

# What the operator may do, and nothing more (see the comments in manifests/base/clusterrole.yaml).
OPERATOR_PERMISSIONS = {
    ("", "events"): {"create"},
    ("", "secrets"): {"get"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("elasticserving.paddlepaddle.org", "paddleservices"): {"list", "watch", "patch"},
    ("elasticserving.paddlepaddle.org", "paddleservices/status"): {"patch"},
    ("kuscia.secretflow", "kusciajobs"): {"list", "watch", "patch"},
    ("kuscia.secretflow", "kusciadeployments"): {"list", "watch", "patch"},
    ("kuscia.secretflow", "kusciajobs/status"): {"patch"},
    ("kuscia.secretflow", "kusciadeployments/status"): {"patch"},
    ("serving.knative.dev", "services"): {"list", "watch", "create", "patch", "delete"},
    ("serving.knative.dev", "revisions"): {"list", "watch"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


# ---- rendering ----------------------------------------------------------------------------------------


@functools.cache
def project_kubectl() -> Path:
    bin_dir = subprocess.run(
        ["bash", str(ROOT / "hack" / "control-plane.sh"), "bin-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    kubectl = Path(bin_dir) / "kubectl"
    if not kubectl.is_file():
        pytest.fail(
            f"the project's kubectl is missing at {kubectl}; build it with `hack/control-plane.sh build` "
            "(the manifests are rendered with that kubectl's kustomize)",
            pytrace=False,
        )
    return kubectl


@functools.cache
def _render(path: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [str(project_kubectl()), "kustomize", str(ROOT / path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(path: str) -> list[dict[str, Any]]:
    return list(_render(path))


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = only(docs, "Deployment", OPERATOR)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomization_renders(path: str) -> None:
    docs = render(path)
    assert docs, f"{path} rendered nothing"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


def test_base_installs_the_operator_into_its_namespace() -> None:
    docs = render("manifests/base")
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("ServiceAccount", OPERATOR),
            ("ClusterRole", OPERATOR),
            ("ClusterRoleBinding", OPERATOR),
            ("Deployment", OPERATOR),
            ("Service", f"{OPERATOR}-metrics"),
        ]
    )
    for doc in docs:
        if doc["kind"] in {"ServiceAccount", "Deployment", "Service"}:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    namespace = only(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": OPERATOR,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


def test_deployment_runs_one_kopf_operator_at_a_time() -> None:
    deployment = only(render("manifests/base"), "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == OPERATOR
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_operator_container_command_line() -> None:
    container = operator_container(render("manifests/base"))
    assert container["command"] == ["paddle-kuscia"]
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--kuscia-credentials-dir=/etc/kuscia",
        "--leader-elect",
    ]
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "paddle-kuscia" in scripts, (
        "the Deployment runs a console script that pyproject.toml does not define"
    )


@pytest.mark.parametrize("path", ["manifests/base", "manifests/overlays/dev", "manifests/overlays/prod"])
def test_operator_cli_accepts_the_deployment_args(path: str) -> None:
    args = cli.parser().parse_args(operator_container(render(path))["args"])
    assert args.command == "run"
    assert args.all_namespaces is True
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert args.metrics_port == 9090
    assert args.kuscia_credentials_dir == "/etc/kuscia"
    assert args.leader_elect is True
    assert args.verbose is (path == "manifests/overlays/dev")


def test_liveness_probe_hits_kopf_health_endpoint() -> None:
    container = operator_container(render("manifests/base"))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert ports.get(probe["port"], probe["port"]) == 8080
    assert "readinessProbe" not in container


def test_pod_and_container_are_hardened() -> None:
    pod = only(render("manifests/base"), "Deployment", OPERATOR)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for context in (pod["securityContext"], container["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] == 10001
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_pod_user_matches_the_image_user() -> None:
    dockerfile_users = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    pod = only(render("manifests/base"), "Deployment", OPERATOR)["spec"]["template"]["spec"]
    assert dockerfile_users, "Dockerfile has no numeric USER"
    assert int(dockerfile_users[-1]) == pod["securityContext"]["runAsUser"]


def test_volumes_give_a_writable_tmp_and_read_only_optional_kuscia_credentials() -> None:
    pod = only(render("manifests/base"), "Deployment", OPERATOR)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    credentials = mounts["/etc/kuscia"]
    assert credentials["readOnly"] is True
    secret = volumes[credentials["name"]]["secret"]
    assert secret["secretName"] == "paddle-kuscia-kuscia-credentials"
    assert secret["optional"] is True
    assert secret["defaultMode"] & 0o007 == 0, "credentials must not be world-readable"


def test_metrics_service_reaches_the_metrics_port() -> None:
    docs = render("manifests/base")
    container = operator_container(docs)
    pod_labels = only(docs, "Deployment", OPERATOR)["spec"]["template"]["metadata"]["labels"]
    service = only(docs, "Service", f"{OPERATOR}-metrics")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == 9090
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container_ports[port["targetPort"]] == 9090


def test_dev_overlay_uses_the_locally_loaded_image_and_verbose_logging() -> None:
    docs = render("manifests/overlays/dev")
    container = operator_container(docs)
    assert container["image"] == "paddle-kuscia-operator:dev"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][-1] == "--verbose"
    assert container["args"][:-1] == operator_container(render("manifests/base"))["args"]
    assert all(d["metadata"].get("namespace", NAMESPACE) == NAMESPACE for d in docs)


def test_prod_overlay_pins_the_image_by_digest_and_sizes_the_pod() -> None:
    docs = render("manifests/overlays/prod")
    container = operator_container(docs)
    assert re.fullmatch(r"[a-z0-9.\-/]+@sha256:[0-9a-f]{64}", container["image"]), container["image"]
    assert "--verbose" not in container["args"]
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "512Mi"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert all(d["metadata"].get("namespace", NAMESPACE) == NAMESPACE for d in docs)


# ---- RBAC ---------------------------------------------------------------------------------------------


def permissions(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_operator_cluster_role_grants_exactly_what_the_operator_uses() -> None:
    role = only(render("manifests/base"), "ClusterRole", OPERATOR)
    granted = permissions(role)
    assert granted == OPERATOR_PERMISSIONS
    assert all("*" not in verbs for verbs in granted.values())


def test_every_operator_rule_says_why() -> None:
    lines = (MANIFESTS / "base" / "clusterrole.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[index - 1].lstrip().startswith("#"), f"rule without a comment: {line}"


def test_user_roles_aggregate_into_view_and_edit() -> None:
    docs = render("manifests/rbac-user")
    viewer = only(docs, "ClusterRole", "paddleservice-viewer")
    editor = only(docs, "ClusterRole", "paddleservice-editor")
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    kinds = {
        ("elasticserving.paddlepaddle.org", "paddleservices"),
        ("kuscia.secretflow", "kusciajobs"),
        ("kuscia.secretflow", "kusciadeployments"),
    }
    read = {"get", "list", "watch"}
    viewer_grants, editor_grants = permissions(viewer), permissions(editor)
    for group, resource in kinds:
        assert viewer_grants[(group, resource)] == read
        assert editor_grants[(group, resource)] >= read | {"create", "update", "patch", "delete"}
        # Status is the operator's: users may read it, never write it.
        assert editor_grants[(group, f"{resource}/status")] == {"get"}
    assert all(verbs <= read for verbs in viewer_grants.values())


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


def test_samples_kustomization_lists_every_sample() -> None:
    listed = load(SAMPLES / "kustomization.yaml")["resources"]
    assert sorted(listed) == [path.name for path in sample_files()]
    rendered = render("manifests/samples")
    assert len(rendered) == len(listed)
    assert all("namespace" not in doc["metadata"] for doc in rendered), "samples must apply to any namespace"


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


# ---- scripts ------------------------------------------------------------------------------------------

SCRIPTS = [ROOT / "hack" / "kind-e2e.sh", ROOT / "hack" / "install-tools.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed; run hack/install-tools.sh", pytrace=False)
    result = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kind_e2e_deploys_the_dev_overlay_and_waits_for_the_minimal_sample() -> None:
    script = (ROOT / "hack" / "kind-e2e.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    assert re.search(r"^trap \S+ EXIT", script, re.M), "no cleanup trap"
    container = operator_container(render("manifests/overlays/dev"))
    assert container["image"] in script, "kind-e2e.sh must build and load the image the dev overlay deploys"
    assert "kind load docker-image" in script
    for path in ("crds/", "manifests/overlays/dev", "manifests/samples/paddleservice-minimal.yaml"):
        assert path in script
        assert (ROOT / path).exists()
    name = load(SAMPLES / "paddleservice-minimal.yaml")["metadata"]["name"]
    assert re.search(
        rf"wait .*--for=condition=Ready .*ps/{name}|wait .*ps/{name} .*--for=condition=Ready", script
    )
    for flag in ("nodeselector", "affinity", "tolerations", "runtimeclassname"):
        assert f"kubernetes.podspec-{flag}" in script
