"""Fixtures for tests that run against the real local control plane."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from support.control_plane import ControlPlane, wait_for
from support.knative import Knative


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """One real control plane per test run; a build or start failure fails the tests (never a skip)."""
    plane = ControlPlane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (deletion is real: the namespace controller runs)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    wait_for(lambda: control_plane.get("namespace", name), what=f"namespace {name}")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_rbac(control_plane: ControlPlane) -> None:
    """The ClusterRole and binding from manifests/base: the operator runs with exactly these permissions."""
    from support.control_plane import ROOT

    base = ROOT / "manifests" / "base"
    control_plane.kubectl(
        "apply", "-f", str(base / "clusterrole.yaml"), "-f", str(base / "clusterrolebinding.yaml")
    )


@pytest.fixture(scope="session")
def knative(control_plane: ControlPlane) -> Knative:
    """Knative Serving's real control plane, which `hack/control-plane.sh up` starts with the API server."""
    return Knative(control_plane)
