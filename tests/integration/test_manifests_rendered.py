"""Deployment manifests as kustomize renders them: the operator's Deployment, RBAC and overlays.

Rendering uses the project's own kubectl (built by hack/control-plane.sh), so the kustomize version is the one
the rest of the integration suite and the documented install use; the scripts are checked with shellcheck
(hack/install-tools.sh). What needs neither is in tests/unit/test_manifests.py.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia import cli
from paddle_kuscia.runtime.context import ENVIRONMENT
from support.control_plane import ROOT, project_kubectl

MANIFESTS = ROOT / "manifests"
SAMPLES = MANIFESTS / "samples"
NAMESPACE = "paddle-kuscia-system"
OPERATOR = "paddle-kuscia-operator"
KUSTOMIZATIONS = [
    "manifests/base",
    "manifests/overlays/dev",
    "manifests/overlays/prod",
    "manifests/rbac-user",
    "manifests/samples",
    "crds",
]

# What the operator may do, and nothing more (see the comments in manifests/base/clusterrole.yaml).
OPERATOR_PERMISSIONS = {
    ("", "events"): {"create"},
    ("", "secrets"): {"get"},
    ("", "namespaces"): {"list", "watch"},
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


def sample_files() -> list[Path]:
    return sorted(path for path in SAMPLES.glob("*.yaml") if path.name != "kustomization.yaml")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# ---- rendering ----------------------------------------------------------------------------------------


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
def test_operator_cli_accepts_the_deployment_args(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    container = operator_container(render(path))
    env = {e["name"]: "from-the-downward-api" for e in container["env"] if "valueFrom" in e}
    for name in ENVIRONMENT.values():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = cli.parser().parse_args(container["args"])
    assert args.command == "run"
    config = cli.config_from(args)
    assert config.namespaces == ()  # all of them
    assert config.liveness == "http://0.0.0.0:8080/healthz"
    assert config.metrics_port == 9090
    assert config.kuscia_credentials_dir == "/etc/kuscia"
    assert config.lease_namespace == "from-the-downward-api"
    assert config.verbose is (path == "manifests/overlays/dev")


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


def test_samples_kustomization_lists_every_sample() -> None:
    listed = load(SAMPLES / "kustomization.yaml")["resources"]
    assert sorted(listed) == [path.name for path in sample_files()]
    rendered = render("manifests/samples")
    assert len(rendered) == len(listed)
    assert all("namespace" not in doc["metadata"] for doc in rendered), "samples must apply to any namespace"


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
