"""Kuscia down or failing: the cause shows up as a condition, retries back off, and everything recovers.

Faults are injected at the Kuscia emulator (HTTP 5xx, non-zero codes, 401, held and dropped connections, a
server certificate from another CA, the whole server gone); attempts are counted there too. The operator
runs with a 1 s Kuscia timeout so a held connection becomes a timeout quickly, and retries back off up to 4 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kuscia_fixtures import (
    POLL,
    Obj,
    assert_token_never_exposed,
    clean_kuscia,
    condition,
    kuscia,
    kuscia_namespace,
    sample,
    start_operator,
    wait_condition,
    wait_gone,
)

from support.control_plane import ControlPlane
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

__all__ = ["clean_kuscia", "kuscia", "kuscia_namespace", "start_operator"]

PS, KJ = "paddleservice", "kusciajob"


@pytest.fixture(scope="module")
def kuscia_operator(
    start_operator: Callable[..., OperatorProcess], kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> OperatorProcess:
    # Backoff capped at 4 s (instead of the suite's 10 s) so recoveries are seen quickly.
    return start_operator(kuscia_namespace, kuscia, "--backoff-max=4", env={"KUSCIA_API_TIMEOUT": "1"})


@pytest.fixture
def emulator(
    clean_kuscia: KusciaDoubleThread, kuscia_operator: OperatorProcess
) -> Iterator[KusciaDoubleThread]:
    """The module's emulator, fault-free at start and end, with the module's operator running."""
    yield clean_kuscia


def kuscia_ps(name: str) -> Obj:
    return sample("paddleservice-kuscia.yaml", name=name)


def job(name: str) -> Obj:
    return {
        "apiVersion": "kuscia.secretflow/v1alpha1",
        "kind": "KusciaJob",
        "metadata": {"name": name, "annotations": {"paddle-kuscia.io/mirror": "true"}},
        "spec": {
            "initiator": "alice",
            "tasks": [
                {
                    "alias": "only",
                    "appImage": "secretflow-image",
                    "taskInputConfig": "{}",
                    "parties": [{"domainID": "alice"}, {"domainID": "bob"}],
                }
            ],
        },
    }


def ready_ps(cp: ControlPlane, name: str, ns: str) -> Obj:
    cp.apply(kuscia_ps(name), ns)
    return wait_condition(cp, PS, name, ns, "Ready", "True")


def attempts_during(emulator: KusciaDoubleThread, route: str, seconds: float) -> int:
    """Calls of `route` the emulator receives over a measurement window."""
    before = emulator.calls(route)
    time.sleep(seconds)  # a measurement window, not synchronisation
    return emulator.calls(route) - before


def test_server_errors_back_off_then_the_serving_is_created(
    control_plane: ControlPlane, kuscia_namespace: str, emulator: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-503"
    emulator.inject("serving/create", "http_503", count=None)
    control_plane.apply(kuscia_ps(name), ns)
    obj = wait_condition(control_plane, PS, name, ns, "Ready", "Unknown", reason="KusciaUnavailable")
    assert "HTTP 503" in condition(obj, "KusciaServingReady")["message"]

    # Each reconcile tries 4 times (0.5 s, 1 s, 2 s apart), and reconciles back off from 0.5 s to 10 s:
    # a hot loop would make hundreds of attempts in 6 s.
    attempts = attempts_during(emulator, "serving/create", 6)
    assert 2 <= attempts <= 12, attempts

    emulator.clear_faults()
    wait_condition(control_plane, PS, name, ns, "Ready", "True", timeout=30)
    assert name in emulator.servings


def test_transient_codes_are_retried_and_refusals_are_not_repeated(
    control_plane: ControlPlane, kuscia_namespace: str, emulator: KusciaDoubleThread
) -> None:
    ns = kuscia_namespace
    # 11103 (master unreachable) on the status poll: a transient failure, Ready becomes Unknown.
    ready_ps(control_plane, "ps-code", ns)
    emulator.inject("serving/status/batchQuery", "code", count=None, code=11103, message="master is gone")
    obj = wait_condition(control_plane, PS, "ps-code", ns, "Ready", "Unknown", reason="KusciaUnavailable")
    assert "master is gone" in condition(obj, "Ready")["message"]
    emulator.clear_faults()
    wait_condition(control_plane, PS, "ps-code", ns, "Ready", "True", timeout=30)

    # 11100 (validation) on job create: Kuscia refused the request, Ready is False, and the same request
    # is not sent again: it would only be refused again. Changing the object (here an annotation) allows
    # one new attempt, which Kuscia now accepts.
    creates = emulator.calls("job/create")
    emulator.inject("job/create", "code", count=None, code=11100, message="refused for the test")
    control_plane.apply(job("job-code"), ns)
    obj = wait_condition(control_plane, KJ, "job-code", ns, "Ready", "False", reason="KusciaRequestRejected")
    assert "refused for the test" in condition(obj, "Ready")["message"]
    assert (
        "not sent again until the object's spec or annotations change" in condition(obj, "Ready")["message"]
    )
    assert emulator.calls("job/create") == creates + 1
    assert attempts_during(emulator, "job/create", 3 * POLL) == 0
    emulator.clear_faults()
    control_plane.kubectl("annotate", KJ, "job-code", "-n", ns, "paddle-kuscia.io/retry=1")
    wait_condition(control_plane, KJ, "job-code", ns, "Ready", "True", reason="Succeeded", timeout=30)
    assert emulator.calls("job/create") == creates + 2


def test_refused_token_is_reported_as_auth_failure(
    control_plane: ControlPlane, kuscia_namespace: str, emulator: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-401"
    ready_ps(control_plane, name, ns)
    emulator.inject("*", "auth_401", count=None)
    obj = wait_condition(control_plane, PS, name, ns, "Ready", "False", reason="KusciaAuthFailed")
    assert "401" in condition(obj, "KusciaServingReady")["message"]

    # While refused, status polls back off (1 s, 2 s, 4 s, ...) instead of asking every poll interval.
    attempts = attempts_during(emulator, "serving/status/batchQuery", 6 * POLL)
    assert 1 <= attempts <= 4, attempts
    emulator.clear_faults()
    wait_condition(control_plane, PS, name, ns, "Ready", "True", timeout=30)


def test_timeouts_and_dropped_connections(
    control_plane: ControlPlane, kuscia_namespace: str, emulator: KusciaDoubleThread
) -> None:
    ns = kuscia_namespace
    ready_ps(control_plane, "ps-timeout", ns)
    emulator.inject("serving/status/batchQuery", "timeout", count=None, delay=5)
    obj = wait_condition(
        control_plane, PS, "ps-timeout", ns, "Ready", "Unknown", reason="KusciaUnavailable", timeout=30
    )
    assert "Timeout" in condition(obj, "Ready")["message"]
    emulator.clear_faults()
    wait_condition(control_plane, PS, "ps-timeout", ns, "Ready", "True", timeout=30)

    emulator.inject("job/create", "drop", count=None)
    control_plane.apply(job("job-dropped"), ns)
    obj = wait_condition(control_plane, KJ, "job-dropped", ns, "Ready", "Unknown", reason="KusciaUnavailable")
    assert emulator.calls("job/create") >= 4  # retried within the call before giving up
    emulator.clear_faults()
    wait_condition(control_plane, KJ, "job-dropped", ns, "Ready", "True", reason="Succeeded", timeout=30)
    assert "job-dropped" in emulator.jobs


def test_untrusted_server_certificate_is_reported_as_tls_failure(
    control_plane: ControlPlane, kuscia_namespace: str, emulator: KusciaDoubleThread
) -> None:
    ns, name = kuscia_namespace, "ps-tls"
    ready_ps(control_plane, name, ns)
    emulator.set_refuse_tls(True)
    emulator.down()  # drop pooled connections: every new handshake meets the foreign certificate
    emulator.up()
    obj = wait_condition(control_plane, PS, name, ns, "Ready", "False", reason="KusciaTLSFailed")
    assert "certificate" in condition(obj, "Ready")["message"]
    emulator.set_refuse_tls(False)
    wait_condition(control_plane, PS, name, ns, "Ready", "True", timeout=30)


def test_kuscia_down_is_reported_and_deletions_made_meanwhile_complete_later(
    control_plane: ControlPlane, kuscia_namespace: str, emulator: KusciaDoubleThread
) -> None:
    ns = kuscia_namespace
    ready_ps(control_plane, "ps-down", ns)
    ready_ps(control_plane, "ps-down-deleted", ns)
    control_plane.apply(job("job-down-deleted"), ns)
    wait_condition(control_plane, KJ, "job-down-deleted", ns, "Ready", "True", reason="Succeeded")

    emulator.down()
    wait_condition(control_plane, PS, "ps-down", ns, "Ready", "Unknown", reason="KusciaUnavailable")
    control_plane.kubectl("delete", PS, "ps-down-deleted", "-n", ns, "--wait=false")
    control_plane.kubectl("delete", KJ, "job-down-deleted", "-n", ns, "--wait=false")
    # Created while down: nothing can be sent yet, and the status says why.
    control_plane.apply(kuscia_ps("ps-born-down"), ns)
    wait_condition(control_plane, PS, "ps-born-down", ns, "Ready", "Unknown", reason="KusciaUnavailable")
    held = control_plane.get(PS, "ps-down-deleted", ns)
    assert held is not None and held["metadata"].get("deletionTimestamp")
    assert condition(held, "Ready")["reason"] == "KusciaUnavailable"
    assert control_plane.get(KJ, "job-down-deleted", ns) is not None

    emulator.up()
    wait_gone(control_plane, PS, "ps-down-deleted", ns, timeout=40)
    wait_gone(control_plane, KJ, "job-down-deleted", ns, timeout=40)
    assert "ps-down-deleted" not in emulator.servings and "job-down-deleted" not in emulator.jobs
    wait_condition(control_plane, PS, "ps-down", ns, "Ready", "True", timeout=40)
    wait_condition(control_plane, PS, "ps-born-down", ns, "Ready", "True", timeout=40)


def test_token_is_never_exposed(
    control_plane: ControlPlane,
    kuscia_namespace: str,
    kuscia: KusciaDoubleThread,
    kuscia_operator: OperatorProcess,
) -> None:
    """Runs last: every failure above was logged, posted as an Event and written to a status."""
    log = kuscia_operator.log()
    assert "Kuscia status poll failed" in log
    assert_token_never_exposed(control_plane, kuscia_namespace, kuscia.token, log)
