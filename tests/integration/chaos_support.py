"""The pytest side of the chaos and bad-input tests: printing their figures, the backoff budget, operator
incarnations and a Kuscia emulator per test, and status writes frozen on demand. The fleet, its users and the
convergence checks live in tests/support/fleet.py, shared with hack/soak.py.

Lives next to the integration tests (not in tests/chaos/) so the session's one control plane is reused: a
conftest that re-exported tests/integration/conftest.py from another directory would start a second one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.control_plane import ControlPlane, wait_for
from support.fleet import Incarnations
from support.kuscia_double import KusciaDoubleThread

# OperatorProcess starts every operator with --backoff-base=0.5 --backoff-max=10.
BACKOFF_BASE, BACKOFF_MAX = 0.5, 10.0
FREEZE_LABEL = "chaos.paddle-kuscia.io/freeze-status"


# ---- reporting --------------------------------------------------------------------------------------


def announce(request: pytest.FixtureRequest, text: str) -> None:
    """Print a summary line: captured like any print (shown with -rA or on failure) and also written to the
    terminal past the capture, so the counts show in a plain `pytest` run too."""
    print(text)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)


# ---- the operator -----------------------------------------------------------------------------------


def backoff_allowance(window: float, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> int:
    """The most reconcile attempts one failing key can start within `window` seconds under the work queue's
    backoff (delays base * 2**n capped at `cap`, each shortened by at most 10 % jitter), from a fresh key."""
    attempts, elapsed, n = 1, 0.0, 0
    while True:
        elapsed += 0.9 * min(cap, base * 2**n)
        if elapsed > window:
            return attempts
        attempts += 1
        n += 1


@pytest.fixture
def incarnations(
    control_plane: ControlPlane, operator_rbac: None, tmp_path: Path
) -> Iterator[Callable[..., Incarnations]]:
    """`incarnations(args, env=...)`: a factory of operator process series, all stopped at test end."""
    made: list[Incarnations] = []

    def make(args: list[str], env: dict[str, str] | None = None) -> Incarnations:
        logs = tmp_path / f"operators-{len(made)}"
        logs.mkdir()
        series = Incarnations(control_plane, logs, args, env or {})
        made.append(series)
        return series

    yield make
    for series in made:
        series.stop_all()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[KusciaDoubleThread]:
    """A Kuscia emulator of the test's own, so its servings are exactly the ones the test caused."""
    with KusciaDoubleThread(tmp_path / "kuscia-pki", step_seconds=0.3, seed=7) as double:
        yield double


@pytest.fixture
def frozen_status(control_plane: ControlPlane) -> Iterator[Callable[[str, str, bool], None]]:
    """`frozen_status(namespace, name, True/False)`: status writes to that PaddleService are refused (by an
    admission policy matching FREEZE_LABEL) or allowed again, as a status write lost to a conflict, an API
    outage or a crash would be. The policy is removed after the test."""
    name = f"chaos-freeze-status-{uuid.uuid4().hex[:6]}.paddle-kuscia.io"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["elasticserving.paddlepaddle.org"],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["paddleservices/status"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": f"!('{FREEZE_LABEL}' in object.metadata.?labels.orValue({{}}))",
                    "message": "status writes are frozen by the chaos test",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    control_plane.apply(policy)
    control_plane.apply(binding)

    def freeze(namespace: str, name: str, frozen: bool) -> None:
        label = f"{FREEZE_LABEL}=true" if frozen else f"{FREEZE_LABEL}-"
        control_plane.kubectl("label", "paddleservice", name, "-n", namespace, label)
        if frozen:  # a new policy takes a moment to be enforced
            probe = ["patch", "paddleservice", name, "-n", namespace, "--subresource=status", "--type=merge"]
            wait_for(
                lambda: (
                    "frozen"
                    in control_plane.kubectl(
                        *probe, "-p", '{"status":{}}', "--dry-run=server", check=False
                    ).stderr
                ),
                timeout=30,
                what="the admission policy enforced",
            )

    try:
        yield freeze
    finally:
        control_plane.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found")
        control_plane.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found")
