"""Argo CD health checks (manifests/argocd/health/*.lua, generated from hack/argocd-health/) run in a real
Lua 5.1, as Argo CD runs them.

Argo CD evaluates these scripts with gopher-lua (Lua 5.1) and, unless `useOpenLibs` is set, without the
string library. The sandbox below reproduces that, so a script that only works with string methods fails
here instead of returning "Unknown" in Argo CD.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from support.argocd_health import HealthRunner, health_scripts, script_for

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "manifests" / "argocd" / "argocd-cm-health-patch.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "argocd"
KEY_PREFIX = "resource.customizations.health."
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended"}


def load_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        documents = yaml.safe_load(path.read_text())
        for case in documents if isinstance(documents, list) else [documents]:
            cases.append((f"{path.stem}/{case['name']}", case))
    return cases


@pytest.fixture
def health() -> HealthRunner:
    return HealthRunner()


CASES = load_cases()


def test_fixtures_exist_for_every_health_script() -> None:
    kinds = {(case["obj"]["apiVersion"].split("/")[0], case["obj"]["kind"]) for _, case in CASES}
    assert {f"{group}_{kind}" for group, kind in kinds} == set(health_scripts())


@pytest.mark.parametrize(("case_id", "case"), CASES, ids=[case_id for case_id, _ in CASES])
def test_health_matches_fixture(health: HealthRunner, case_id: str, case: dict[str, Any]) -> None:
    result = health(script_for(case["obj"]), case["obj"], name=case_id)
    assert result["status"] in ARGO_STATUSES
    assert result["status"] == case["expect"]["status"], result["message"]
    expected = case["expect"].get("messageContains") or []
    for fragment in [expected] if isinstance(expected, str) else expected:
        assert fragment in result["message"], f"{fragment!r} not in {result['message']!r}"


def test_sandbox_rejects_string_methods_like_argo_cd(health: HealthRunner) -> None:
    with pytest.raises(lua51.LuaError, match="attempt to index a string value"):
        health('return {status = ("x"):upper(), message = ""}', {})
    with pytest.raises(lua51.LuaError, match="string"):
        health('return {status = string.upper("x"), message = ""}', {})


def _paddleservice(generation: int, observed: int | None, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": "ps", "namespace": "demo", "generation": generation},
        "spec": {"default": {"containerImage": "example/model", "tag": "v1", "port": 8080}},
        "status": status,
    }


def test_paddleservice_health_invariants_hold_for_every_condition_combination(health: HealthRunner) -> None:
    """Never Suspended; stale status is Progressing; Healthy only with a current Ready=True and no Stalled."""
    script = health_scripts()["elasticserving.paddlepaddle.org_PaddleService"].read_text()
    generation = 5
    combinations = itertools.product(
        [None, "True", "False", "Unknown"],  # Ready
        [None, "True", "False"],  # Stalled
        ["Serving", "Stopped"],  # Ready reason
        [5, 4, None],  # status.observedGeneration
        [5, 4, None],  # Ready.observedGeneration
        [None, "True", "False", "Unknown"],  # DefaultEndpointReady
    )
    for ready, stalled, reason, observed, ready_observed, endpoint in combinations:
        conditions = []
        if ready is not None:
            condition = {"type": "Ready", "status": ready, "reason": reason, "message": "m"}
            if ready_observed is not None:
                condition["observedGeneration"] = ready_observed
            conditions.append(condition)
        if stalled is not None:
            conditions.append(
                {"type": "Stalled", "status": stalled, "reason": "InvalidSpec", "message": "bad"}
            )
        if endpoint is not None:
            conditions.append(
                {"type": "DefaultEndpointReady", "status": endpoint, "reason": "R", "message": ""}
            )
        result = health(script, _paddleservice(generation, observed, conditions))
        label = f"{ready=} {stalled=} {reason=} {observed=} {ready_observed=} {endpoint=} -> {result}"

        assert result["status"] in ARGO_STATUSES - {"Suspended"}, label
        if observed == 4 or not conditions:
            assert result["status"] == "Progressing", label
        if result["status"] == "Healthy":
            assert ready == "True" and stalled != "True" and ready_observed != 4, label
        if ready == "False" and observed != 4 and ready_observed != 4:
            assert result["status"] == "Degraded", label
        if endpoint in ("False", "Unknown") and conditions and observed != 4 and ready is not None:
            assert "DefaultEndpointReady=" + endpoint in result["message"], label


def test_cm_patch_embeds_each_lua_file_verbatim() -> None:
    patch = yaml.safe_load(PATCH.read_text())
    assert (patch["apiVersion"], patch["kind"]) == ("v1", "ConfigMap")
    assert (patch["metadata"]["name"], patch["metadata"]["namespace"]) == ("argocd-cm", "argocd")
    embedded = {key.removeprefix(KEY_PREFIX): text for key, text in patch["data"].items()}
    assert all(key.startswith(KEY_PREFIX) for key in patch["data"])
    assert set(embedded) == set(health_scripts())
    for name, path in health_scripts().items():
        assert embedded[name] == path.read_text(), (
            f"{PATCH.relative_to(ROOT)} holds a different {name} than {path.relative_to(ROOT)}; "
            "run hack/gen-argocd-health.py"
        )


def test_health_scripts_cover_every_crd_kind() -> None:
    kinds = set()
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if document.get("kind") == "CustomResourceDefinition":
            kinds.add(f"{document['spec']['group']}_{document['spec']['names']['kind']}")
    assert kinds, "no CRDs found in crds/"
    assert kinds == set(health_scripts())


def test_scripts_are_what_the_shared_source_generates() -> None:
    """manifests/argocd is generated from hack/argocd-health/ (common.lua + one rule file per kind)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-argocd-health.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(health_scripts()))
def test_a_stalled_condition_of_an_older_generation_is_ignored(health: HealthRunner, name: str) -> None:
    group, kind = name.split("_")
    version = "v1" if kind == "PaddleService" else "v1alpha1"
    conditions = [
        {"type": "Ready", "status": "True", "reason": "Done", "message": "", "observedGeneration": 2},
        {"type": "Stalled", "status": "True", "reason": "Old", "message": "", "observedGeneration": 1},
    ]
    obj = {
        "apiVersion": f"{group}/{version}",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "demo", "generation": 2},
        "status": {"observedGeneration": 2, "conditions": conditions},
    }
    assert health(health_scripts()[name].read_text(), obj)["status"] == "Healthy"
