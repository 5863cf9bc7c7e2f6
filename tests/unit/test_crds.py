"""crds/ is generated from the pydantic models; the generated CRDs are structural and complete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def crds() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*_*.yaml"))}


def test_crds_directory_is_what_the_models_generate() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-crds.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in (schema.get("properties") or {}).items():
        out += walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def test_every_crd_is_v1_structural_with_status_subresource_and_columns() -> None:
    assert set(crds()) == {
        "elasticserving.paddlepaddle.org_paddleservices.yaml",
        "kuscia.secretflow_kusciadeployments.yaml",
        "kuscia.secretflow_kusciajobs.yaml",
    }
    for name, crd in crds().items():
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1", name
        (version,) = crd["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
        columns = {c["name"] for c in version["additionalPrinterColumns"]}
        assert {"Ready", "Age"} <= columns
        for where, node in walk(version["schema"]["openAPIV3Schema"]):
            # Structural: every node has a type, unless it is int-or-string or preserves unknown fields.
            assert (
                "type" in node
                or node.get("x-kubernetes-int-or-string")
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), f"{name}{where} has no type"
            assert ("$ref" not in node and "anyOf" not in node) or node.get("x-kubernetes-int-or-string"), (
                where
            )


def test_paddleservice_crd_keeps_elasticserving_names_and_adds_validation() -> None:
    crd = crds()["elasticserving.paddlepaddle.org_paddleservices.yaml"]
    assert crd["spec"]["names"]["shortNames"] == ["ps"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for field in (
        "runtimeVersion",
        "resources",
        "default",
        "canary",
        "canaryTrafficPercent",
        "service",
        "workingDir",
        "volumeMounts",
        "volumes",
    ):
        assert field in spec["properties"], field
    assert spec["required"] == ["default"]
    assert spec["properties"]["canaryTrafficPercent"]["maximum"] == 100
    assert spec["properties"]["default"]["properties"]["port"]["maximum"] == 65535
    service = spec["properties"]["service"]
    assert service["properties"]["minScale"]["minimum"] == 0
    assert "kpa.autoscaling.knative.dev" in service["properties"]["autoscaler"]["enum"]
    assert any("minScale <= self.maxScale" in r["rule"] for r in service["x-kubernetes-validations"])
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Default %"] == ".status.traffic[?(@.tag=='default')].percent"
    assert columns["Canary %"] == ".status.traffic[?(@.tag=='canary')].percent"
    assert columns["URL"] == ".status.url"


def test_kuscia_crds_keep_kuscias_field_names() -> None:
    kj = crds()["kuscia.secretflow_kusciajobs.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    task = kj["properties"]["spec"]["properties"]["tasks"]["items"]
    assert {"alias", "taskID", "appImage", "taskInputConfig", "dependencies", "tolerable", "priority"} <= set(
        task["properties"]
    )
    assert "domainID" in task["properties"]["parties"]["items"]["properties"]
    kd = crds()["kuscia.secretflow_kusciadeployments.yaml"]["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    party = kd["properties"]["spec"]["properties"]["parties"]["items"]
    assert {"domainID", "appImageRef", "template"} <= set(party["properties"])
    status = kd["properties"]["status"]["properties"]
    assert {"phase", "totalParties", "availableParties", "partyDeploymentStatuses"} <= set(status)
