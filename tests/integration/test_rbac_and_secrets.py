"""The operator under exactly the ClusterRole of manifests/base: a tour of everything it does.

The tour runs every code path that talks to the API server (Knative and Kuscia backends, a backend switch,
both mirrors, BFIA, deletions behind finalizers, a connection Secret, leader election), then compares the
verbs the API server's audit log saw from the operator's ServiceAccount with the verbs the ClusterRole
grants. A missing permission fails the tour itself; a granted verb that was never used fails the comparison.
The same tour checks that no token or key material reached the logs, Events or statuses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.control_plane import OPERATOR_USER, ROOT, ControlPlane, wait_for
from support.knative import Knative
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

# Server-side apply of an object that does not exist yet is authorised as "create" but audited as "patch".
GRANTED_BUT_NOT_AUDITED = {("serving.knative.dev", "services", "create")}


def granted_verbs() -> set[tuple[str, str, str]]:
    role = yaml.safe_load((ROOT / "manifests" / "base" / "clusterrole.yaml").read_text())
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def used_verbs(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    used = set()
    for e in events:
        if e["user"]["username"] != OPERATOR_USER or e.get("responseStatus", {}).get("code", 200) == 403:
            continue
        ref = e.get("objectRef")
        if not ref:
            continue  # discovery (/api, /apis, /version): open to every authenticated user
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        used.add((ref.get("apiGroup", ""), resource, e["verb"]))
    return used


def ready(cp: ControlPlane, kind: str, name: str, ns: str) -> bool:
    obj = cp.get(kind, name, ns) or {}
    cond = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    return bool(
        cond and cond["status"] == "True" and cond.get("observedGeneration") == obj["metadata"]["generation"]
    )


@pytest.fixture(scope="module")
def kuscia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with KusciaDoubleThread(tmp_path_factory.mktemp("kuscia-pki"), step_seconds=0.3) as double:
        yield double


def sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "manifests" / "samples" / name).read_text())


def test_operator_uses_exactly_the_verbs_its_cluster_role_grants_and_leaks_no_secret(
    control_plane: ControlPlane, operator_rbac: None, knative: Knative, kuscia: Any, tmp_path: Path
) -> None:
    ns = control_plane.create_namespace("rbac")
    pki = Path(kuscia.pki.directory)
    certs = {name: (pki / name).read_text() for name in ("ca.crt", "tls.crt", "tls.key", "token")}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kuscia-conn"},
        "data": {
            k: base64.b64encode(v.encode()).decode() for k, v in {**certs, "url": kuscia.base_url}.items()
        },
    }
    control_plane.apply(secret, ns)
    # Start from no Lease, so leader election takes its create path too (other tests may have left one).
    control_plane.kubectl(
        "delete", "lease", "-n", "paddle-kuscia-system", "paddle-kuscia-operator", "--ignore-not-found"
    )
    mark = control_plane.audit_line_count()
    log = tmp_path / "operator.log"
    args = [
        "--namespace",
        "rbac-*",
        "--leader-elect",
        "--kuscia-url",
        kuscia.base_url,
        "--kuscia-credentials-dir",
        str(pki),
        "--bfia-url",
        kuscia.bfia_url,
        "--kuscia-poll-interval",
        "1",
    ]
    with OperatorProcess(control_plane, log, args=args) as operator:
        knative = sample("paddleservice-minimal.yaml")
        on_kuscia = sample("paddleservice-kuscia.yaml")
        on_kuscia["spec"]["kuscia"]["connectionSecret"] = "kuscia-conn"
        for doc in (
            knative,
            on_kuscia,
            sample("kusciadeployment-serving.yaml"),
            sample("kusciajob-psi.yaml"),
            sample("kusciajob-bfia.yaml"),
        ):
            control_plane.apply(doc, ns)
        names = [
            ("ps", knative["metadata"]["name"]),
            ("ps", on_kuscia["metadata"]["name"]),
            ("kd", "secretflow-serving"),
            ("kj", "job-psi"),
            ("kj", "job-bfia-lr"),
        ]
        for kind, name in names:
            wait_for(
                lambda k=kind, n=name: ready(control_plane, k, n, ns), timeout=90, what=f"{kind}/{name} Ready"
            )

        # Move the Knative-backed service to Kuscia: its Knative Service is deleted.
        moved = json.loads(json.dumps(on_kuscia))
        moved["metadata"]["name"] = knative["metadata"]["name"]
        moved["spec"]["kuscia"]["servingId"] = "moved-serving"
        control_plane.apply(moved, ns)
        wait_for(
            lambda: control_plane.get("ksvc", knative["metadata"]["name"], ns) is None,
            timeout=60,
            what="the Knative Service to go after the backend switch",
        )
        wait_for(
            lambda: ready(control_plane, "ps", knative["metadata"]["name"], ns),
            timeout=60,
            what="moved ps Ready",
        )

        for kind, name in names[1:]:
            control_plane.kubectl("delete", kind, name, "-n", ns, "--wait=false")
        for kind, name in names[1:]:
            wait_for(
                lambda k=kind, n=name: control_plane.get(k, n, ns) is None,
                timeout=60,
                what=f"{kind}/{name} gone",
            )
        # The Lease is renewed (an update) every 5 s; a quick tour must still see one renewal.
        wait_for(
            lambda: (
                (lease := control_plane.get("lease", "paddle-kuscia-operator", "paddle-kuscia-system") or {})
                .get("spec", {})
                .get("renewTime")
                not in (None, lease.get("spec", {}).get("acquireTime"))
            ),
            timeout=30,
            what="the leader Lease renewed once",
        )
        events = json.loads(control_plane.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        statuses = [o.get("status") for kind in ("ps", "kd", "kj") for o in control_plane.list(kind, ns)]
        operator_log = operator.log()

    # 1. Least privilege, proven by the API server's own audit log.
    used = used_verbs(control_plane.audit_events(mark))
    granted = granted_verbs()
    assert used <= granted  # (a 403 would already have failed the tour)
    unused = granted - used - GRANTED_BUT_NOT_AUDITED
    assert unused == set(), f"the ClusterRole grants verbs the operator never used: {sorted(unused)}"

    # 2. No secret material in the operator's log, Events or statuses.
    token = certs["token"].strip()
    key_lines = [line for line in certs["tls.key"].splitlines() if line and not line.startswith("-----")]
    haystacks = {"operator log": operator_log, "events": json.dumps(events), "statuses": json.dumps(statuses)}
    for where, text in haystacks.items():
        assert token not in text, f"the Kuscia token leaked into the {where}"
        assert not any(line in text for line in key_lines[:3]), (
            f"private key material leaked into the {where}"
        )
        assert "PRIVATE KEY" not in text, f"a private key leaked into the {where}"
