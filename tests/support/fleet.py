"""A fleet of PaddleServices whose desired state is tracked, the users who edit it, and the checks that it
converged: shared by the chaos tests (tests/integration) and the soak (hack/soak.py), which runs the same
edits and checks at a scale a test suite cannot afford.

Nothing here depends on pytest: checks return lists of problems, or raise AssertionError on a timeout.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support.control_plane import ROOT, ControlPlane, wait_for
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

Obj = dict[str, Any]

IMAGE = "registry.example.com/paddle/serving"
CANARY_IMAGE = "registry.example.com/paddle/serving-canary"
KUSCIA_FINALIZER = "paddle-kuscia.io/kuscia-serving"
SAMPLES = ROOT / "manifests" / "samples"


# ---- the operator -----------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^paddle_kuscia_reconciles_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$", re.M)


def reconciles(metrics_text: str, *, kind: str | None = None, outcome: str | None = None) -> int:
    """Reconcile attempts counted by `paddle_kuscia_reconciles_total`, optionally for one kind/outcome."""
    total = 0.0
    for match in _SAMPLE.finditer(metrics_text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if kind is not None and labels.get("kind") != kind:
            continue
        if outcome is not None and labels.get("outcome") != outcome:
            continue
        total += float(match["value"])
    return int(total)


@dataclass
class Incarnations:
    """Operator processes started one after another (each crash is followed by a fresh start); every one
    started is stopped at the end, by its own PID."""

    plane: ControlPlane
    logs: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    started: list[OperatorProcess] = field(default_factory=list)

    def start(self) -> OperatorProcess:
        proc = OperatorProcess(
            self.plane, self.logs / f"operator-{len(self.started):02d}.log", args=self.args, env=self.env
        )
        self.started.append(proc)
        return proc.start()

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()

    def tracebacks(self) -> list[str]:
        """Log files (of every incarnation) that contain a Python traceback."""
        return [p.log_path.name for p in self.started if "Traceback" in p.log()]


def wait_reconciles(proc: OperatorProcess, at_least: int, *, idle: float = 1.5, timeout: float = 60) -> int:
    """Wait until `proc` has counted `at_least` reconcile attempts, or has gone `idle` seconds without one
    (all its work is done); returns the count reached."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            count = reconciles(proc.metrics())
        except OSError:
            count = last
        if count >= at_least:
            return count
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > idle:
            return count
        time.sleep(0.05)
    raise AssertionError(f"operator made no progress towards {at_least} reconciles in {timeout:.0f}s")


def delete_everything(cp: ControlPlane, namespace: str, *, timeout: float = 90) -> float:
    """Delete every PaddleService in `namespace` at once and wait until all are gone, which needs the operator
    to release every finalizer; the namespace itself goes afterwards, without waiting."""
    started = time.monotonic()
    cp.kubectl("delete", "paddleservice", "--all", "-n", namespace, f"--timeout={timeout:.0f}s")
    cp.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
    return time.monotonic() - started


def alice_replicas(emulator: KusciaDoubleThread, serving: str) -> int | None:
    """Replicas Kuscia runs for party alice of `serving`, None when there is no such serving."""
    parties = (emulator.servings.get(serving) or {}).get("parties") or []
    return next((p["replicas"] for p in parties if p["domain_id"] == "alice"), None)


def ready_for_generation(cp: ControlPlane, namespace: str, name: str) -> bool:
    ready = condition(obj := cp.get("paddleservice", name, namespace), "Ready")
    return ready.get("status") == "True" and ready.get("observedGeneration") == obj["metadata"]["generation"]


# ---- a fleet of PaddleServices --------------------------------------------------------------------------


def endpoint(image: str, tag: str) -> Obj:
    return {"containerImage": image, "tag": tag, "port": 9292}


def knative_spec(tag: str) -> Obj:
    return {"default": endpoint(IMAGE, tag)}


_KUSCIA_SAMPLE = yaml.safe_load((SAMPLES / "paddleservice-kuscia.yaml").read_text())["spec"]


def kuscia_spec(replicas: int) -> Obj:
    """The Kuscia sample (alice and bob serve a GLM model) with `replicas` for alice."""
    spec = copy.deepcopy(_KUSCIA_SAMPLE)
    spec["kuscia"]["parties"][0]["replicas"] = replicas
    return spec


def is_kuscia(spec: Obj) -> bool:
    return spec.get("backend") == "kuscia"


def manifest(name: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {"name": name},
        "spec": spec,
    }


APPLY_CHUNK = 100  # objects per kubectl call: kubectl applies them one by one, and each call has a timeout


def apply_all(cp: ControlPlane, namespace: str, specs: dict[str, Obj]) -> None:
    """Apply many PaddleServices (full replacement of each spec), a hundred per kubectl call."""
    items = [manifest(name, spec) for name, spec in sorted(specs.items())]
    for i in range(0, len(items), APPLY_CHUNK):
        cp.apply({"apiVersion": "v1", "kind": "List", "items": items[i : i + APPLY_CHUNK]}, namespace)


def delete_all(cp: ControlPlane, namespace: str, names: list[str]) -> None:
    if names:
        cp.kubectl("delete", "paddleservice", *sorted(names), "-n", namespace, "--wait=false")


@dataclass
class Fleet:
    """What the user asked for: the spec of every PaddleService that should exist, and every name deleted."""

    desired: dict[str, Obj] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def set(self, name: str, spec: Obj) -> None:
        self.desired[name] = spec
        self.deleted.discard(name)

    def delete(self, name: str) -> None:
        self.desired.pop(name)
        self.deleted.add(name)

    def names(self, kuscia: bool | None = None) -> list[str]:
        return sorted(n for n, s in self.desired.items() if kuscia is None or is_kuscia(s) == kuscia)


def condition(obj: Obj | None, ctype: str) -> Obj:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return {}


def image_of(ep: Obj) -> str:
    return f"{ep['containerImage']}:{ep['tag']}"


def _knative_problems(name: str, spec: Obj, ps: Obj, ksvc: Obj | None, images: dict[str, str]) -> list[str]:
    if ksvc is None:
        return [f"{name}: no Knative Service"]
    owners = [r for r in ksvc["metadata"].get("ownerReferences") or [] if r.get("controller")]
    if [r.get("uid") for r in owners] != [ps["metadata"]["uid"]]:
        return [f"{name}: Knative Service owned by {owners}, not by uid {ps['metadata']['uid']}"]
    percent = 0
    want_images = {"default": image_of(spec["default"])}
    if "canary" in spec:
        percent = spec.get("canaryTrafficPercent", 50)
        want_images["canary"] = image_of(spec["canary"])
    want_split = {"default": 100 - percent, **({"canary": percent} if "canary" in spec else {})}
    traffic = ksvc["spec"].get("traffic") or []
    split = {t.get("tag"): t.get("percent") for t in traffic}
    if split != want_split:
        return [f"{name}: Knative traffic {split}, want {want_split}"]
    got_images = {t.get("tag"): images.get(t.get("revisionName", ""), "?") for t in traffic}
    if got_images != want_images:
        return [f"{name}: revisions serve {got_images}, want {want_images}"]
    status_split = {t.get("tag"): t.get("percent") for t in (ps.get("status") or {}).get("traffic") or []}
    if status_split != want_split:
        return [f"{name}: status.traffic {status_split}, want {want_split}"]
    if ps["metadata"].get("finalizers"):
        return [f"{name}: finalizers {ps['metadata']['finalizers']} on a Knative-backed PaddleService"]
    return []


def _kuscia_problems(name: str, spec: Obj, ps: Obj, serving: Obj | None) -> list[str]:
    if serving is None:
        return [f"{name}: no Kuscia serving"]
    replicas = {p["domain_id"]: p.get("replicas") for p in serving["parties"]}
    want = spec["kuscia"]["parties"][0]["replicas"]
    if replicas.get("alice") != want:
        return [f"{name}: Kuscia serving runs {replicas.get('alice')} replicas for alice, want {want}"]
    if ps["metadata"].get("finalizers") != [KUSCIA_FINALIZER]:
        return [f"{name}: finalizers {ps['metadata'].get('finalizers')}, want [{KUSCIA_FINALIZER}]"]
    return []


def fleet_problems(cp: ControlPlane, namespace: str, fleet: Fleet, emulator: KusciaDoubleThread) -> list[str]:
    """Everything that differs from "converged": each desired PaddleService Ready for its generation and its
    Knative Service or Kuscia serving matching its spec; each deleted one gone, with its Kuscia serving."""
    objects = {o["metadata"]["name"]: o for o in cp.list("paddleservice", namespace)}
    ksvcs = {o["metadata"]["name"]: o for o in cp.list("ksvc", namespace)}
    images = {
        r["metadata"]["name"]: r["spec"]["containers"][0]["image"]
        for r in cp.list("revisions.serving.knative.dev", namespace)
    }
    servings = emulator.servings
    problems = []
    for name, spec in sorted(fleet.desired.items()):
        ps = objects.get(name)
        if ps is None:
            problems.append(f"{name}: missing")
            continue
        generation = ps["metadata"]["generation"]
        ready = condition(ps, "Ready")
        observed = (ps.get("status") or {}).get("observedGeneration")
        if ps["spec"] != spec:
            problems.append(f"{name}: spec in the API differs from what the test applied")
        elif observed != generation or ready.get("observedGeneration") != generation:
            problems.append(
                f"{name}: observedGeneration {observed}, Ready for {ready.get('observedGeneration')}, generation {generation}"
            )
        elif ready.get("status") != "True":
            problems.append(
                f"{name}: Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message')}"
            )
        elif is_kuscia(spec):
            problems += _kuscia_problems(name, spec, ps, servings.get(name))
            if name in ksvcs:
                problems.append(f"{name}: a Knative Service exists for a Kuscia-backed PaddleService")
        else:
            problems += _knative_problems(name, spec, ps, ksvcs.get(name), images)
            if name in servings:
                problems.append(f"{name}: a Kuscia serving exists for a Knative-backed PaddleService")
    for name in sorted(fleet.deleted):
        if name in objects:
            meta = objects[name]["metadata"]
            problems.append(f"{name}: not deleted (finalizers {meta.get('finalizers')})")
        if name in servings:
            problems.append(f"{name}: deleted, but its Kuscia serving remains")
    kuscia_live = set(fleet.names(kuscia=True))
    strays = set(servings) - kuscia_live - fleet.deleted
    problems += [f"{sid}: Kuscia serving without a PaddleService" for sid in sorted(strays)]
    return problems


class _Stalled(Exception):
    pass


def wait_no_problems(
    check: Callable[[], list[str]],
    *,
    timeout: float,
    what: str,
    stall: float | None = None,
    interval: float = 1.0,
) -> float:
    """Poll `check` every `interval` seconds until it reports no problem; returns the seconds it took, or fails
    listing the last ones. With `stall`, fail early once the very same problems have persisted that long
    (nothing is moving)."""
    started = time.monotonic()
    last: list[str] = []
    changed = [started]

    def clear() -> bool:
        problems = check()
        if problems != last:
            last[:], changed[0] = problems, time.monotonic()
        elif stall is not None and time.monotonic() - changed[0] > stall:
            raise _Stalled
        return not last

    try:
        wait_for(clear, timeout=timeout, interval=interval, what=what)
    except (AssertionError, _Stalled) as err:
        why = f"the same problems for {stall:.0f}s" if isinstance(err, _Stalled) else f"{timeout:.0f}s"
        shown = "\n  ".join(last[:25])
        raise AssertionError(
            f"gave up waiting for {what} after {why}; {len(last)} problems, first ones:\n  {shown}"
        ) from None
    return time.monotonic() - started


def wait_converged(
    cp: ControlPlane, namespace: str, fleet: Fleet, emulator: KusciaDoubleThread, *, timeout: float
) -> float:
    return wait_no_problems(
        lambda: fleet_problems(cp, namespace, fleet, emulator),
        timeout=timeout,
        what="the fleet to converge",
        # Longer than any backoff (10 s), a Kuscia rollout, a garbage-collector pass or Knative deploying a
        # revision on a loaded 2-core machine: a problem this old is stuck, and waiting for the full timeout
        # would only burn CI time.
        stall=90,
    )


def orphan_knative_services(cp: ControlPlane, namespace: str) -> list[str]:
    """Knative Services whose controlling owner is not a live PaddleService (same uid)."""
    live = {o["metadata"]["uid"] for o in cp.list("paddleservice", namespace)}
    orphans = []
    for ksvc in cp.list("ksvc", namespace):
        owners = [r.get("uid") for r in ksvc["metadata"].get("ownerReferences") or [] if r.get("controller")]
        if not owners or owners[0] not in live:
            orphans.append(ksvc["metadata"]["name"])
    return orphans


def wait_no_orphans(cp: ControlPlane, namespace: str, *, timeout: float = 75) -> None:
    """The garbage collector removes Knative Services of deleted PaddleServices; it re-discovers custom
    kinds every 30 s, so one resync is allowed for."""
    wait_for(
        lambda: not orphan_knative_services(cp, namespace),
        timeout=timeout,
        interval=1.0,
        what="no Knative Service without a live owner",
    )


# ---- its users ------------------------------------------------------------------------------------------

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
