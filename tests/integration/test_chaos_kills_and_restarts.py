"""Chaos: the operator is SIGKILLed at random moments, and kube-apiserver restarts, while users keep creating,
changing and deleting PaddleServices. Whatever happens in between, the end state must be the one asked for.

The edits come from a seeded RNG (PADDLE_KUSCIA_CHAOS_SEED overrides the seed), so a failing run can be replayed.
Kill moments are tied to the operator's own progress (a random number of reconciles after the last edit), so
they land in the middle of real work rather than in idle time. The last test replays, deterministically, the
one loss the random kills found: a Kuscia update sent just before a crash, then reverted.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest
from chaos_support import announce, emulator, frozen_status, incarnations
from kuscia_fixtures import operator_args

from support.control_plane import ControlPlane, wait_for
from support.fleet import (
    Fleet,
    Incarnations,
    Users,
    alice_replicas,
    apply_all,
    create_fleet,
    delete_everything,
    fleet_problems,
    kuscia_spec,
    orphan_knative_services,
    ready_for_generation,
    reconciles,
    wait_converged,
    wait_no_orphans,
    wait_reconciles,
)
from support.knative import Knative
from support.kuscia_double import KusciaDoubleThread

__all__ = ["emulator", "frozen_status", "incarnations"]

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("PADDLE_KUSCIA_CHAOS_SEED", "20240509"))


def final_checks(cp: ControlPlane, namespace: str, fleet: Fleet, emulator: KusciaDoubleThread) -> None:
    """After convergence: the garbage collector took every Knative Service whose owner is gone, leaving
    exactly one per live Knative-backed PaddleService, and Kuscia holds exactly the Kuscia-backed ones."""
    wait_no_orphans(cp, namespace)
    assert fleet_problems(cp, namespace, fleet, emulator) == []
    ksvcs = sorted(k["metadata"]["name"] for k in cp.list("ksvc", namespace))
    assert ksvcs == fleet.names(kuscia=False), "one Knative Service per live Knative-backed PaddleService"
    assert orphan_knative_services(cp, namespace) == []
    assert set(emulator.servings) == set(fleet.names(kuscia=True)), "one Kuscia serving per live one"
    # Deleting everything at once completes: the operator lets go of every object it holds.
    delete_everything(cp, namespace)
    assert emulator.servings == {}, "a Kuscia serving outlived its PaddleService"


def test_sigkill_at_random_moments_loses_nothing(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    knative: Knative,
    emulator: KusciaDoubleThread,
    incarnations: Callable[..., Incarnations],
) -> None:
    """200 PaddleServices (24 on Kuscia) are created, moved through canaries and deleted while the operator
    is SIGKILLed 10 times, edits landing both while it runs and while it is down."""
    started = time.monotonic()
    rng = random.Random(SEED)
    cp, ns = control_plane, control_plane.create_namespace("chaos-kill")
    operators = incarnations(operator_args(ns, emulator))
    operator = operators.start()
    fleet, created = create_fleet(cp, ns, knative=176, kuscia_backed=24)
    users = Users(cp, ns, fleet, rng)
    kills = 0
    for step in range(1, 11):
        # A random moment within the work the last edits caused (or at once, when it is already idle).
        target = reconciles(operator.metrics()) + rng.randint(1, 80)
        wait_reconciles(operator, target)
        operator.kill()
        kills += 1
        users.act(step, updates=12, deletes=2, recreate=1)  # edits made while the operator is down
        operator = operators.start()
        users.act(step, updates=12, deletes=2)  # and right after it is back
    took = wait_converged(cp, ns, fleet, emulator, timeout=300)
    final_checks(cp, ns, fleet, emulator)
    assert operators.tracebacks() == [], "an operator logged a traceback"
    c = users.counts
    announce(
        request,
        f"chaos kills: seed={SEED} kills={kills} restarts={len(operators.started) - 1} "
        f"manifests={created + c.manifests} (created {created}, edits {c.manifests}) deletes={c.deletes} "
        f"recreated={c.recreated} backend-switches={c.switched} live={len(fleet.desired)} "
        f"(kuscia {len(fleet.names(kuscia=True))}) converged-after-last-kill={took:.0f}s "
        f"total={time.monotonic() - started:.0f}s",
    )


def test_apiserver_restarts_during_a_rollout_then_everything_converges(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    knative: Knative,
    emulator: KusciaDoubleThread,
    incarnations: Callable[..., Incarnations],
) -> None:
    """kube-apiserver goes away mid-rollout: every watch (the operator's, the simulator's, the garbage
    collector's) must resume, and edits made after the restart must still be acted on."""
    started = time.monotonic()
    rng = random.Random(SEED + 1)
    cp, ns = control_plane, control_plane.create_namespace("chaos-api")
    operator = incarnations(operator_args(ns, emulator)).start()
    fleet, created = create_fleet(cp, ns, knative=30, kuscia_backed=6)
    wait_converged(cp, ns, fleet, emulator, timeout=300)
    users = Users(cp, ns, fleet, rng)
    users.act(1, updates=30, deletes=3)  # a rollout of most of the fleet
    wait_reconciles(operator, reconciles(operator.metrics()) + 10)
    outage = time.monotonic()
    cp.restart_apiserver()
    outage = time.monotonic() - outage
    users.act(2, updates=10, deletes=2, recreate=1)  # acted on only if the watches resumed
    took = wait_converged(cp, ns, fleet, emulator, timeout=300)
    final_checks(cp, ns, fleet, emulator)
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    assert "Traceback" not in operator.log(), operator.log()[-4000:]
    c = users.counts
    announce(
        request,
        f"chaos apiserver: seed={SEED + 1} apiserver-restarts=1 (down and back in {outage:.0f}s) "
        f"manifests={created + c.manifests} "
        f"deletes={c.deletes} live={len(fleet.desired)} converged-after-last-restart={took:.0f}s "
        f"total={time.monotonic() - started:.0f}s",
    )


def test_a_kuscia_update_sent_just_before_a_crash_is_not_lost_when_the_spec_reverts(
    control_plane: ControlPlane,
    emulator: KusciaDoubleThread,
    incarnations: Callable[..., Incarnations],
    frozen_status: Callable[[str, str, bool], None],
) -> None:
    """replicas 1 -> 3 reaches Kuscia, then the operator dies before its status write lands; meanwhile the
    spec goes back to 1. The next operator must still bring Kuscia back to 1: the status only records what
    was sent before the crash, not what Kuscia runs."""
    cp, ns, name = control_plane, control_plane.create_namespace("chaos-crash"), "revert"
    operators = incarnations(operator_args(ns, emulator))
    operator = operators.start()
    apply_all(cp, ns, {name: kuscia_spec(1)})
    wait_for(lambda: ready_for_generation(cp, ns, name), timeout=60, what="Ready with 1 replica")
    frozen_status(ns, name, True)  # the status write after the next send cannot land

    apply_all(cp, ns, {name: kuscia_spec(3)})
    wait_for(lambda: alice_replicas(emulator, name) == 3, timeout=30, what="Kuscia running 3 replicas")
    operator.kill()
    apply_all(cp, ns, {name: kuscia_spec(1)})  # back to what the last written status recorded
    frozen_status(ns, name, False)
    operators.start()
    wait_for(lambda: ready_for_generation(cp, ns, name), timeout=60, what="Ready for the reverted generation")
    wait_for(
        lambda: alice_replicas(emulator, name) == 1, timeout=15, what="Kuscia back at 1 replica for alice"
    )
    delete_everything(cp, ns)
