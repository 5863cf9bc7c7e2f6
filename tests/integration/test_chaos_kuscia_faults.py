"""Chaos at the Kuscia API: every kind of fault the emulator can produce, while many Kuscia-backed
PaddleServices are being created and then deleted.

For each fault, in turn, every PaddleService must show the cause in its Ready and KusciaServingReady
conditions, and the calls Kuscia receives must stay within what the backoff schedule allows (a hot loop on
a fast failure would make thousands). Once Kuscia recovers, everything converges: every serving exists, or,
after the deletion, none is left and no finalizer holds anything.

The operator runs with a 1 s Kuscia timeout and a 4 s backoff cap, so each fault phase turns over in seconds.

The other tests pin down what the bulk runs uncovered: an unchanged serving re-reconciled on every poll, two
namespaces sharing one serving id, and an update forgotten when its status write failed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from chaos_support import announce, backoff_allowance, frozen_status
from kuscia_fixtures import operator_args

from support.control_plane import ControlPlane, wait_for
from support.fleet import (
    Fleet,
    alice_replicas,
    apply_all,
    condition,
    delete_everything,
    kuscia_spec,
    ready_for_generation,
    reconciles,
    wait_converged,
    wait_no_problems,
)
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

__all__ = ["frozen_status"]

pytestmark = pytest.mark.chaos

FLEET = 16
BACKOFF_CAP = 4.0
HOLD = 3.0  # seconds a fast-failing fault is kept on after everything shows it
CREATE, DELETE = "serving/create", "serving/delete"


@dataclass(frozen=True)
class Fault:
    name: str
    reason: str  # Ready / KusciaServingReady reason it must cause
    needle: str  # text the condition message must contain
    tries: int  # calls per reconcile: the client retries transport errors and 5xx (4 attempts in all)
    start: Callable[[KusciaDoubleThread, str], None]


def heal(emulator: KusciaDoubleThread) -> None:
    emulator.clear_faults()
    emulator.set_refuse_tls(False)
    if emulator.is_down:
        emulator.up()


def switch_to(emulator: KusciaDoubleThread, fault: Fault, route: str) -> None:
    """Replace whatever fault is on with `fault`, with the emulator down meanwhile: no call may succeed in
    between (down also drops pooled connections, so every new one meets the new fault).

    A TLS refusal leaves the previous fault in place: a connection whose handshake was already under way
    when the emulator went down can still finish it with the genuine certificate, and its request must
    fail all the same."""
    emulator.down()
    if fault.name != "tls":
        emulator.clear_faults()
        emulator.set_refuse_tls(False)
    fault.start(emulator, route)
    emulator.up()


def _inject(
    kind: str, *, everywhere: bool = False, **options: object
) -> Callable[[KusciaDoubleThread, str], None]:
    return lambda emulator, route: emulator.inject("*" if everywhere else route, kind, count=None, **options)


def _refuse_tls(emulator: KusciaDoubleThread, _route: str) -> None:
    emulator.set_refuse_tls(True)  # new handshakes meet a certificate from another CA


HTTP_503 = Fault("http_503", "KusciaUnavailable", "HTTP 503", 4, _inject("http_503"))
HTTP_500 = Fault("http_500", "KusciaUnavailable", "HTTP 500", 4, _inject("http_500"))
# Every fault kind once: creates meet 503s, deletes 500s (the same path in the client), both meet the rest.
# A refusal (11100) comes last: a refused create is not sent again until the object changes, so no later
# fault on the create route would ever be met by it.
FAULTS = [
    Fault("auth_401", "KusciaAuthFailed", "401", 1, _inject("auth_401", everywhere=True)),
    Fault("timeout", "KusciaUnavailable", "Timeout", 4, _inject("timeout", delay=3.0)),
    Fault("drop", "KusciaUnavailable", "RemoteProtocolError", 4, _inject("drop")),
    Fault("tls", "KusciaTLSFailed", "certificate", 1, _refuse_tls),
    Fault(
        "code",
        "KusciaRequestRejected",
        "refused by the chaos test",
        1,
        _inject("code", code=11100, message="refused by the chaos test"),
    ),
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KusciaDoubleThread]:
    with KusciaDoubleThread(tmp_path_factory.mktemp("kuscia-pki"), step_seconds=0.3, seed=5) as double:
        yield double


@pytest.fixture(scope="module")
def prefix() -> str:
    """Namespaces of this module's run share a prefix the module's operator watches, and nothing else."""
    return f"chaos-kf-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane,
    operator_rbac: None,
    emulator: KusciaDoubleThread,
    prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("kuscia-chaos") / "operator.log"
    args = [*operator_args(f"{prefix}-*", emulator), "--backoff-max", str(BACKOFF_CAP)]
    with OperatorProcess(control_plane, log, args=args, env={"KUSCIA_API_TIMEOUT": "1"}) as proc:
        yield proc


@pytest.fixture
def clean(emulator: KusciaDoubleThread) -> Iterator[KusciaDoubleThread]:
    heal(emulator)
    yield emulator
    heal(emulator)


@pytest.fixture
def namespace(
    control_plane: ControlPlane, operator: OperatorProcess, clean: KusciaDoubleThread, prefix: str
) -> Iterator[Callable[[], str]]:
    """`namespace()` makes one for the test; all are deleted, Kuscia servings included, while the operator
    still runs, so the module's emulator holds nothing of a finished test."""
    made: list[str] = []

    def make() -> str:
        made.append(control_plane.create_namespace(prefix))
        return made[-1]

    yield make
    clean.clear_faults()
    for name in made:
        delete_everything(control_plane, name)


def kuscia_problems(cp: ControlPlane, namespace: str, names: list[str], fault: Fault) -> list[str]:
    """PaddleServices that do not (yet) show `fault` in Ready and KusciaServingReady."""
    objects = {o["metadata"]["name"]: o for o in cp.list("paddleservice", namespace)}
    problems = []
    for name in names:
        obj = objects.get(name)
        for ctype in ("Ready", "KusciaServingReady"):
            cond = condition(obj, ctype)
            if cond.get("reason") != fault.reason or fault.needle not in cond.get("message", ""):
                problems.append(f"{name}: {ctype} {cond.get('reason')}: {cond.get('message')}")
    return problems


@dataclass
class Phase:
    fault: str
    seconds: float
    calls: int  # Kuscia calls of the faulty route
    attempts: int  # reconciles
    allowed: int  # reconciles the backoff allows


def run_phases(
    cp: ControlPlane,
    namespace: str,
    names: list[str],
    emulator: KusciaDoubleThread,
    operator: OperatorProcess,
    route: str,
    faults: list[Fault],
    action: Callable[[], None],
) -> list[Phase]:
    """Start the first fault on `route`, take `action`, then each fault in turn until every PaddleService
    reports it, counting the Kuscia calls and the reconciles it drew (a refused TLS handshake never reaches
    the emulator's counters; reconciles count it). The last fault stays on; the caller heals Kuscia."""
    phases = []
    try:
        for fault in faults:
            switch_to(emulator, fault, route)
            if not phases:
                action()
            phases.append(_phase(cp, namespace, names, emulator, operator, route, fault))
    except BaseException:
        heal(emulator)
        raise
    return phases


def _phase(
    cp: ControlPlane,
    namespace: str,
    names: list[str],
    emulator: KusciaDoubleThread,
    operator: OperatorProcess,
    route: str,
    fault: Fault,
) -> Phase:
    """Wait until every PaddleService shows `fault` (and, for faults that fail calls at once, HOLD seconds
    more); the calls and reconciles it drew meanwhile must stay within the backoff schedule."""
    started, calls_before = time.monotonic(), emulator.calls(route)
    attempts_before = reconciles(operator.metrics(), kind="PaddleService")
    wait_no_problems(
        lambda: kuscia_problems(cp, namespace, names, fault),
        timeout=60,
        what=f"{fault.name} on {route} shown by every PaddleService",
    )
    if fault.tries == 1:
        # An observation window: calls failing at once are where a hot loop would show, so keep counting.
        time.sleep(HOLD)
    seconds, calls = time.monotonic() - started, emulator.calls(route) - calls_before
    attempts = reconciles(operator.metrics(), kind="PaddleService") - attempts_before
    # +2 reconciles per object: a poll result and a finalizer or deletion event can each queue one early.
    allowed = len(names) * (backoff_allowance(seconds, cap=BACKOFF_CAP) + 2)
    assert attempts <= allowed, (
        f"{fault.name}: {attempts} reconciles in {seconds:.1f}s; backoff allows {allowed}"
    )
    assert calls <= allowed * fault.tries, (
        f"{fault.name}: {calls} calls of {route} in {seconds:.1f}s; backoff allows {allowed * fault.tries}"
    )
    return Phase(fault.name, seconds, calls, attempts, allowed)


def describe(phases: list[Phase]) -> str:
    return " ".join(
        f"{p.fault}:{p.seconds:.0f}s/{p.calls}calls/{p.attempts}reconciles(<={p.allowed})" for p in phases
    )


def test_faults_during_bulk_create_and_delete_are_reported_backed_off_and_recovered(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    operator: OperatorProcess,
    clean: KusciaDoubleThread,
    namespace: Callable[[], str],
) -> None:
    cp, emulator, ns = control_plane, clean, namespace()
    fleet = Fleet()
    for i in range(FLEET):
        fleet.set(f"kf-{i:02d}", kuscia_spec(1 + i % 3))
    names = fleet.names()

    # Create while Kuscia fails in every way it can; nothing is created until it recovers.
    created = run_phases(
        cp,
        ns,
        names,
        emulator,
        operator,
        CREATE,
        [HTTP_503, *FAULTS],
        lambda: apply_all(cp, ns, fleet.desired),
    )
    assert not set(emulator.servings) & set(names), "a serving was created while every create failed"
    heal(emulator)
    # The creates were refused last: touching the objects is what sends them again.
    cp.kubectl("annotate", "paddleservice", "--all", "-n", ns, "paddle-kuscia.io/retry=1")
    took_create = wait_converged(cp, ns, fleet, emulator, timeout=60)

    # Delete while Kuscia fails: deletions wait (finalizer held, cause shown), none is lost.
    deleted = run_phases(
        cp,
        ns,
        names,
        emulator,
        operator,
        DELETE,
        [HTTP_500, *FAULTS],
        lambda: cp.kubectl("delete", "paddleservice", "--all", "-n", ns, "--wait=false"),
    )
    held = cp.list("paddleservice", ns)
    # A deletion may complete in the short gap between two fault phases; the rest must still be held.
    assert len(held) >= FLEET // 2 and all(o["metadata"].get("deletionTimestamp") for o in held)
    assert set(emulator.servings) >= set(names), "a serving was deleted while every delete failed"
    heal(emulator)
    for name in names:
        fleet.delete(name)
    took_delete = wait_converged(cp, ns, fleet, emulator, timeout=60)
    assert cp.list("paddleservice", ns) == [] and not set(emulator.servings) & set(names)

    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    faults = len(created) + len(deleted)
    announce(
        request,
        f"chaos kuscia: paddleservices={FLEET} fault-phases={faults} create[{describe(created)}] "
        f"recovered-in={took_create:.0f}s delete[{describe(deleted)}] recovered-in={took_delete:.0f}s",
    )


def test_an_unchanged_kuscia_serving_is_not_reconciled_on_every_poll(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    clean: KusciaDoubleThread,
    namespace: Callable[[], str],
) -> None:
    """Kuscia lists party statuses and endpoints in Go map order, so two polls of an unchanged serving can
    differ in order only; that must not queue a reconcile of every Kuscia-backed object on every poll."""
    cp, ns = control_plane, namespace()
    fleet = Fleet()
    for i in range(4):
        fleet.set(f"steady-{i}", kuscia_spec(1))
    apply_all(cp, ns, fleet.desired)
    wait_converged(cp, ns, fleet, clean, timeout=60)
    first = operator.metrics()
    time.sleep(5)  # an observation window of five polls: we count the reconciles inside it
    extra = reconciles(operator.metrics(), kind="PaddleService") - reconciles(first, kind="PaddleService")
    assert extra <= len(fleet.desired), f"{extra} reconciles of 4 unchanged PaddleServices in 5 polls"


def test_same_name_in_two_namespaces_never_shares_one_kuscia_serving(
    control_plane: ControlPlane, clean: KusciaDoubleThread, namespace: Callable[[], str]
) -> None:
    """Two PaddleServices named alike in different namespaces default to the same Kuscia serving id. They
    must not both report Ready while one serving runs only one of their specs: each gets its own serving, or
    the later one is refused with a condition saying why."""
    cp = control_plane
    first, second = namespace(), namespace()
    apply_all(cp, first, {"twin": kuscia_spec(1)})
    wait_for(
        lambda: condition(cp.get("paddleservice", "twin", first), "Ready").get("status") == "True",
        timeout=60,
        what="the first twin Ready",
    )
    apply_all(cp, second, {"twin": kuscia_spec(3)})

    def settled() -> list[dict] | None:
        objs = [cp.get("paddleservice", "twin", ns) for ns in (first, second)]
        answered = all(
            condition(o, "Ready").get("observedGeneration") == o["metadata"]["generation"]
            and condition(o, "Ready").get("status") in ("True", "False")
            for o in objs
        )
        return objs if answered else None

    objs = wait_for(settled, timeout=60, what="both twins answered")
    ready = [condition(o, "Ready")["status"] for o in objs]
    replicas = {p["domain_id"]: p["replicas"] for p in clean.servings.get("twin", {}).get("parties", [])}
    assert ready != ["True", "True"] or len(clean.servings) == 2, (
        f"both twins report Ready but Kuscia runs one serving 'twin' (alice replicas {replicas.get('alice')}; "
        "the first asked for 1, the second for 3)"
    )


def test_a_kuscia_update_whose_status_write_failed_is_not_lost_when_the_spec_reverts(
    control_plane: ControlPlane,
    clean: KusciaDoubleThread,
    namespace: Callable[[], str],
    frozen_status: Callable[[str, str, bool], None],
) -> None:
    """replicas 1 -> 3 reaches Kuscia but its status write fails; then the spec goes back to 1. The serving
    must end with 1 replica: what Kuscia runs is 3, whatever the last status that got written says."""
    cp, ns, name = control_plane, namespace(), "revert"
    apply_all(cp, ns, {name: kuscia_spec(1)})
    wait_for(lambda: ready_for_generation(cp, ns, name), timeout=60, what="Ready with 1 replica")
    assert alice_replicas(clean, name) == 1
    frozen_status(ns, name, True)

    apply_all(cp, ns, {name: kuscia_spec(3)})
    wait_for(lambda: alice_replicas(clean, name) == 3, timeout=30, what="Kuscia running 3 replicas")
    apply_all(cp, ns, {name: kuscia_spec(1)})  # back to what the last written status recorded
    frozen_status(ns, name, False)
    wait_for(lambda: ready_for_generation(cp, ns, name), timeout=60, what="Ready for the reverted generation")
    wait_for(lambda: alice_replicas(clean, name) == 1, timeout=15, what="Kuscia back at 1 replica for alice")
