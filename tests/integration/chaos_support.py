"""Shared pieces of the chaos and bad-input tests: operator incarnations, metrics, the backoff budget, and a
fleet of PaddleServices whose desired state is tracked so convergence can be checked against it.

Lives next to the integration tests (not in tests/chaos/) so the session's one control plane is reused: a
conftest that re-exported tests/integration/conftest.py from another directory would start a second one.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kuscia_fixtures import SAMPLES

from support.control_plane import ControlPlane, wait_for
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

Obj = dict[str, Any]

IMAGE = "registry.example.com/paddle/serving"
CANARY_IMAGE = "registry.example.com/paddle/serving-canary"
KUSCIA_FINALIZER = "paddle-kuscia.io/kuscia-serving"
# OperatorProcess starts every operator with --backoff-base=0.5 --backoff-max=10.
BACKOFF_BASE, BACKOFF_MAX = 0.5, 10.0


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


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[KusciaDoubleThread]:
    """A Kuscia emulator of the test's own, so its servings are exactly the ones the test caused."""
    with KusciaDoubleThread(tmp_path / "kuscia-pki", step_seconds=0.3, seed=7) as double:
        yield double


def delete_everything(cp: ControlPlane, namespace: str, *, timeout: float = 90) -> float:
    """Delete every PaddleService in `namespace` at once and wait until all are gone, which needs the operator
    to release every finalizer; the namespace itself goes afterwards, without waiting."""
    started = time.monotonic()
    cp.kubectl("delete", "paddleservice", "--all", "-n", namespace, f"--timeout={timeout:.0f}s")
    cp.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
    return time.monotonic() - started


FREEZE_LABEL = "chaos.paddle-kuscia.io/freeze-status"


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


def apply_all(cp: ControlPlane, namespace: str, specs: dict[str, Obj]) -> None:
    """Apply many PaddleServices with one kubectl call (full replacement of each spec)."""
    if specs:
        items = [manifest(name, spec) for name, spec in sorted(specs.items())]
        cp.apply({"apiVersion": "v1", "kind": "List", "items": items}, namespace)


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
    check: Callable[[], list[str]], *, timeout: float, what: str, stall: float | None = None
) -> float:
    """Poll `check` until it reports no problem; returns the seconds it took, or fails listing the last ones.
    With `stall`, fail early once the very same problems have persisted that long (nothing is moving)."""
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
        wait_for(clear, timeout=timeout, interval=1.0, what=what)
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
