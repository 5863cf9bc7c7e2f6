"""Chaos: the operator is SIGKILLed at random moments, and kube-apiserver restarts, while users keep creating,
changing and deleting PaddleServices. Whatever happens in between, the end state must be the one asked for.

The edits come from a seeded RNG (PADDLE_KUSCIA_CHAOS_SEED overrides the seed), so a failing run can be replayed.
Kill moments are tied to the operator's own progress (a random number of reconciles after the last edit), so
they land in the middle of real work rather than in idle time. The last test replays, deterministically, the
one loss the random kills found: a Kuscia update sent just before a crash, then reverted.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from chaos_support import (
    CANARY_IMAGE,
    Fleet,
    Incarnations,
    Obj,
    alice_replicas,
    announce,
    apply_all,
    delete_all,
    delete_everything,
    emulator,
    endpoint,
    fleet_problems,
    frozen_status,
    incarnations,
    is_kuscia,
    knative_spec,
    kuscia_spec,
    orphan_knative_services,
    ready_for_generation,
    reconciles,
    wait_converged,
    wait_no_orphans,
    wait_reconciles,
)
from kuscia_fixtures import operator_args

from support.control_plane import ControlPlane, wait_for
from support.knative import Knative
from support.kuscia_double import KusciaDoubleThread

__all__ = ["emulator", "frozen_status", "incarnations"]

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("PADDLE_KUSCIA_CHAOS_SEED", "20240509"))
PERCENTS = (0, 10, 20, 30, 50, 80, 100, None)  # None: a canary without a percentage (ElasticServing's 50)


@dataclass
class Counts:
    manifests: int = 0
    deletes: int = 0
    recreated: int = 0
    switched: int = 0


class Users:
    """Random edits of the kind users make: canaries added, moved, promoted and dropped, images bumped,
    replicas changed, backends switched, services deleted and names reused."""

    def __init__(self, cp: ControlPlane, namespace: str, fleet: Fleet, rng: random.Random) -> None:
        self.cp, self.namespace, self.fleet, self.rng = cp, namespace, fleet, rng
        self.counts = Counts()

    def _edit_knative(self, spec: Obj, step: int) -> Obj:
        spec = copy.deepcopy(spec)
        move = self.rng.choice(["canary", "percent", "percent", "promote", "drop", "tag", "kuscia"])
        if move == "kuscia":
            self.counts.switched += 1
            return kuscia_spec(self.rng.randint(1, 3))
        if move == "tag":
            spec["default"]["tag"] = f"v{step}"
        elif move == "drop" or (move == "promote" and "canary" in spec):
            if move == "promote":
                spec["default"] = spec["canary"]
            spec.pop("canary", None)
            spec.pop("canaryTrafficPercent", None)
        else:
            if move == "canary" or "canary" not in spec:
                spec["canary"] = endpoint(CANARY_IMAGE, f"c{step}")
            percent = self.rng.choice(PERCENTS)
            spec.pop("canaryTrafficPercent", None)
            if percent is not None:
                spec["canaryTrafficPercent"] = percent
        return spec

    def _edit_kuscia(self, spec: Obj, step: int) -> Obj:
        if self.rng.random() < 0.15:
            self.counts.switched += 1
            return knative_spec(f"v{step}")
        spec = copy.deepcopy(spec)
        party = spec["kuscia"]["parties"][0]
        party["replicas"] = self.rng.choice([r for r in (1, 2, 3) if r != party.get("replicas")])
        return spec

    def act(self, step: int, *, updates: int, deletes: int, recreate: int = 0) -> None:
        """One batch of edits, applied with one kubectl call plus one for the deletions."""
        live = self.fleet.names()
        changed: dict[str, Obj] = {}
        for name in self.rng.sample(live, min(updates, len(live))):
            spec = self.fleet.desired[name]
            changed[name] = (
                self._edit_kuscia(spec, step) if is_kuscia(spec) else self._edit_knative(spec, step)
            )
        for name in self.rng.sample(sorted(self.fleet.deleted), min(recreate, len(self.fleet.deleted))):
            if self.cp.get("paddleservice", name, self.namespace) is None:  # its deletion has completed
                changed[name] = knative_spec(f"v{step}")
                self.counts.recreated += 1
        doomed = self.rng.sample(sorted(set(live) - set(changed)), deletes)
        apply_all(self.cp, self.namespace, changed)
        delete_all(self.cp, self.namespace, doomed)
        for name, spec in changed.items():
            self.fleet.set(name, spec)
        for name in doomed:
            self.fleet.delete(name)
        self.counts.manifests += len(changed)
        self.counts.deletes += len(doomed)


def create_fleet(cp: ControlPlane, namespace: str, knative: int, kuscia_backed: int) -> tuple[Fleet, int]:
    fleet = Fleet()
    for i in range(knative):
        fleet.set(f"ps-{i:03d}", knative_spec("v0"))
    for i in range(kuscia_backed):
        fleet.set(f"kps-{i:02d}", kuscia_spec(1))
    apply_all(cp, namespace, fleet.desired)
    return fleet, len(fleet.desired)


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
