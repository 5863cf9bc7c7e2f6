#!/usr/bin/env python3
"""Soak: a fleet of PaddleServices on real Knative (a share of them on Kuscia, against the emulator) edited by
seeded random users while the operator is SIGKILLed and kube-apiserver restarted, then checked for the end
state users asked for.

    .venv/bin/python hack/soak.py --kills 50 --apiserver-restarts 10            # N = 1000, a tenth on Kuscia
    .venv/bin/python hack/soak.py --n 200 --kills 10 --apiserver-restarts 2 --json soak.json

Two operator replicas run with --leader-elect, as the shipped Deployment can: the leader is the one that is
killed, at a moment tied to its own progress (a random number of reconciles after the last edits), and the
script restarts every replica that exits, as a Deployment would. Edits land while the leader is down and
right after. At the end, every object must be Ready for its last generation with its Knative Service or
Kuscia serving matching its spec, no Knative Service or Kuscia serving may outlive its PaddleService, no two
operator processes may have written at the same time (from the audit log), and no operator log may hold a
traceback, and no killed operator may have left a copy of its credentials on disk. Then everything is deleted at once, which must leave nothing behind on either backend.

Not part of hack/test.sh: at N = 1000 it takes most of an hour on 2 cores. It prints a table, and the same
figures as JSON with --json; the exit code is 1 when a check failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests"), str(ROOT / "operator")]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

from benchlib.apiserver import OPERATOR_USER, AuditLog, operator_write, stamp  # noqa: E402
from benchlib.proc import status_kib  # noqa: E402
from support.control_plane import ControlPlane, wait_for  # noqa: E402
from support.fleet import (  # noqa: E402
    Incarnations,
    Users,
    create_fleet,
    delete_everything,
    fleet_problems,
    orphan_knative_services,
    reconciles,
    wait_no_problems,
    wait_reconciles,
)
from support.kuscia_double import KusciaDoubleThread  # noqa: E402
from support.operator import OperatorProcess  # noqa: E402

LEASE_NAMESPACE = "paddle-kuscia-system"  # the operator's default --leader-election-namespace
LEASE_NAME = "paddle-kuscia-operator"


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Figures:
    seed: int
    n: int
    kuscia: int
    kills: int = 0
    apiserver_restarts: int = 0
    apiserver_outage_s: list[float] = field(default_factory=list)
    replica_exits: dict[str, int] = field(default_factory=dict)  # exit code -> how many (kills not counted)
    incarnations: int = 0
    manifests: int = 0
    edits: int = 0
    deletes: int = 0
    recreated: int = 0
    backend_switches: int = 0
    live: int = 0
    live_kuscia: int = 0
    takeover_s: list[float] = field(default_factory=list)
    converged_after_last_fault_s: float | None = None
    delete_all_s: float | None = None
    operator_writes: int = 0
    operator_writes_by_verb: dict[str, int] = field(default_factory=dict)
    writes_per_edit: float | None = None
    peak_rss_mib: float = 0.0
    overlapping_writers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    knative_failed: list[str] = field(default_factory=list)  # revisions Knative gave up on; status says so
    orphans: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    credentials_left: list[str] = field(default_factory=list)  # folders of kubeconfig key-data left on disk
    total_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.problems
            or self.orphans
            or self.tracebacks
            or self.overlapping_writers
            or self.credentials_left
        )


class Replicas:
    """`count` operator processes with leader election, kept running: one that exits is started again (as a
    Deployment's ReplicaSet would), and every one started is stopped at the end, by its PID."""

    def __init__(self, series: Incarnations, count: int, figures: Figures) -> None:
        self.series, self.count, self.figures = series, count, figures
        self.peak_kib = 0

    def alive(self) -> list[OperatorProcess]:
        return [p for p in self.series.started if p.proc is not None and p.proc.poll() is None]

    def keep_up(self) -> None:
        for proc in self.series.started:
            if proc.proc is not None and proc.proc.poll() is not None:
                code = str(proc.proc.returncode)
                self.figures.replica_exits[code] = self.figures.replica_exits.get(code, 0) + 1
                log(f"operator pid {proc.proc.pid} exited with {code}; starting another")
                proc.stop()
        self.sample_rss()
        while len(self.alive()) < self.count:
            self.series.start()

    def sample_rss(self) -> None:
        for proc in self.alive():
            assert proc.proc is not None
            with contextlib.suppress(OSError):  # it may have just exited
                self.peak_kib = max(self.peak_kib, status_kib(proc.proc.pid, "VmHWM"))

    def leader(self, cp: ControlPlane, timeout: float = 120) -> OperatorProcess:
        """The live replica holding the Lease (its identity ends in the process id)."""
        found: list[OperatorProcess] = []

        def holder() -> bool:
            self.keep_up()
            lease = cp.get("lease", LEASE_NAME, LEASE_NAMESPACE) or {}
            identity = (lease.get("spec") or {}).get("holderIdentity") or ""
            for proc in self.alive():
                assert proc.proc is not None
                if identity.endswith(f"-{proc.proc.pid}"):
                    found[:] = [proc]
                    return True
            return False

        wait_for(holder, timeout=timeout, interval=0.5, what="a leading operator replica")
        return found[0]


# ---- the audit log: who wrote, and when -------------------------------------------------------------


def operator_audit(audit: AuditLog, since: int, namespace: str) -> tuple[Counter[str], list[str]]:
    """The operator's writes into `namespace` after the mark `since` (by verb), and every pair of operator
    processes whose writes overlapped in time (each process's first to last write), with the objects both
    wrote. Leader election holds when that list is empty."""
    verbs: Counter[str] = Counter()
    windows: dict[str, list[float]] = {}
    objects: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for e in audit.events(since, containing=OPERATOR_USER):
        ref = e.get("objectRef") or {}
        if not operator_write(e) or ref.get("namespace") != namespace:
            continue
        verbs[e["verb"]] += 1
        pid = e.get("userAgent", "").rsplit("pid ", 1)[-1].rstrip(")")
        t = stamp(e).timestamp()
        window = windows.setdefault(pid, [t, t])
        window[0], window[1] = min(window[0], t), max(window[1], t)
        objects[pid][f"{ref.get('resource')}/{ref.get('name')}"].append(t)
    overlaps = []
    ordered = sorted(windows.items(), key=lambda kv: kv[1][0])
    for i, (a, (_, a1)) in enumerate(ordered):
        for b, (b0, _b1) in ordered[i + 1 :]:
            if b0 >= a1:
                break
            both = sorted(
                name
                for name, times in objects[b].items()
                if any(b0 <= t <= a1 for t in times) and any(b0 <= t <= a1 for t in objects[a].get(name, []))
            )
            overlaps.append(
                f"pids {a} and {b} wrote between {b0:.1f} and {a1:.1f}; objects both wrote: {both[:10]}"
            )
    return verbs, overlaps


def failed_by_knative(cp: ControlPlane, namespace: str, problems: list[str]) -> list[str]:
    """The problems that are Knative's verdict, not a lost edit: the PaddleService is `Ready=False` for its
    generation while its Knative Service is `Ready=False` too, because Knative failed a revision for good (on a
    starved 2-core machine: "Initial scale was never achieved", or an image it could not resolve while the API
    server was down). The operator's part is done, and its status tells the user Knative's reason."""
    ours = []
    for problem in problems:
        name, _, rest = problem.partition(": ")
        if not rest.startswith("Ready=False "):
            continue
        ksvc = cp.get("ksvc", name, namespace) or {}
        ready = next(
            (c for c in (ksvc.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {}
        )
        if ready.get("status") == "False":
            ours.append(problem)
    return ours


# ---- the run ----------------------------------------------------------------------------------------


def credential_folders() -> set[Path]:
    """Folders where processes of ours keep a kubeconfig's inline certificates and keys when the kernel has no
    memfd (`paddle_kuscia.adapters.kubeconfig`); a process killed with SIGKILL cannot remove its own."""
    return set(Path(tempfile.gettempdir()).glob("paddle-kuscia-credentials-*"))


def operator_args(namespace: str, emulator: KusciaDoubleThread) -> list[str]:
    return [
        "--namespace",
        namespace,
        "--leader-elect",
        "--kuscia-url",
        emulator.base_url,
        "--kuscia-credentials-dir",
        str(emulator.pki.directory),
        "--kuscia-poll-interval",
        "1",
        "--bfia-url",
        emulator.bfia_url,
    ]


def soak(args: argparse.Namespace, cp: ControlPlane, emulator: KusciaDoubleThread, work: Path) -> Figures:
    started = time.monotonic()
    rng = random.Random(args.seed)
    kuscia_backed = round(args.n * args.kuscia_share)
    figures = Figures(seed=args.seed, n=args.n, kuscia=kuscia_backed)
    base = ROOT / "manifests" / "base"
    cp.kubectl("apply", "-f", str(base / "clusterrole.yaml"), "-f", str(base / "clusterrolebinding.yaml"))
    cp.kubectl("create", "namespace", LEASE_NAMESPACE, check=False)
    ns = cp.create_namespace("soak")
    logs = work / "operators"
    logs.mkdir(parents=True, exist_ok=True)
    series = Incarnations(cp, logs, operator_args(ns, emulator))
    replicas = Replicas(series, args.replicas, figures)
    audit = AuditLog(cp.audit_log)
    mark = audit.mark()
    folders_before = credential_folders()
    try:
        replicas.keep_up()
        leader = replicas.leader(cp)
        fleet, created = create_fleet(cp, ns, knative=args.n - kuscia_backed, kuscia_backed=kuscia_backed)
        log(f"created {created} PaddleServices in {ns} ({kuscia_backed} on Kuscia)")
        users = Users(cp, ns, fleet, rng)
        updates, deletes = max(12, args.n // 50), max(2, args.n // 500)
        faults = ["kill"] * args.kills + ["apiserver"] * args.apiserver_restarts
        rng.shuffle(faults)
        for step, fault in enumerate(faults, 1):
            leader = replicas.leader(cp)
            try:  # a random moment within the work the last edits caused (at once when it is idle)
                wait_reconciles(
                    leader, reconciles(leader.metrics()) + rng.randint(1, args.progress), timeout=120
                )
            except (OSError, AssertionError) as err:
                log(f"step {step}: waiting for progress: {err}")
            replicas.sample_rss()
            if fault == "kill":
                pid = leader.proc.pid if leader.proc is not None else None
                leader.kill()
                figures.kills += 1
                down = time.monotonic()
                users.act(step, updates=updates, deletes=deletes, recreate=1)  # while no one leads
                replicas.keep_up()
                new = replicas.leader(cp)
                figures.takeover_s.append(round(time.monotonic() - down, 1))
                log(
                    f"step {step}/{len(faults)}: killed leader pid {pid}; pid {new.proc and new.proc.pid} leads"
                )
            else:
                down = time.monotonic()
                cp.restart_apiserver()
                figures.apiserver_restarts += 1
                figures.apiserver_outage_s.append(round(time.monotonic() - down, 1))
                log(
                    f"step {step}/{len(faults)}: kube-apiserver restarted in {figures.apiserver_outage_s[-1]} s"
                )
            users.act(step, updates=updates, deletes=deletes)  # right after the fault
            replicas.keep_up()
        last_fault = time.monotonic()
        log("faults done; waiting for the fleet to converge")
        try:
            wait_no_problems(
                lambda: (replicas.keep_up(), fleet_problems(cp, ns, fleet, emulator))[1],
                timeout=args.converge_timeout,
                what="the fleet to converge",
                stall=args.stall,
                interval=args.poll if args.poll is not None else max(1.0, args.n / 100),
            )
            figures.converged_after_last_fault_s = round(time.monotonic() - last_fault, 1)
        except AssertionError as err:
            figures.problems = fleet_problems(cp, ns, fleet, emulator) or [str(err)]
            figures.knative_failed = failed_by_knative(cp, ns, figures.problems)
            figures.problems = [p for p in figures.problems if p not in figures.knative_failed]
        if not figures.problems:
            try:  # the garbage collector rediscovers custom kinds every 30 s
                wait_for(
                    lambda: not orphan_knative_services(cp, ns), timeout=120, interval=2, what="no orphans"
                )
            except AssertionError:
                figures.orphans = [
                    f"Knative Service {o} without a live owner" for o in orphan_knative_services(cp, ns)
                ]
        c = users.counts
        figures.manifests, figures.edits = created + c.manifests, c.manifests
        figures.deletes, figures.recreated, figures.backend_switches = c.deletes, c.recreated, c.switched
        figures.live, figures.live_kuscia = len(fleet.desired), len(fleet.names(kuscia=True))
        verbs, figures.overlapping_writers = operator_audit(audit, mark, ns)
        figures.operator_writes = sum(verbs.values())
        figures.operator_writes_by_verb = dict(sorted(verbs.items()))
        figures.writes_per_edit = round(
            figures.operator_writes / max(1, figures.manifests + figures.deletes), 2
        )
        if not figures.problems:
            figures.delete_all_s = round(delete_everything(cp, ns, timeout=args.converge_timeout), 1)
            if emulator.servings:
                figures.orphans += [
                    f"Kuscia serving {sid} outlived its PaddleService" for sid in emulator.servings
                ]
        replicas.sample_rss()
    finally:
        figures.incarnations = len(series.started)
        figures.tracebacks = series.tracebacks()
        series.stop_all()
    figures.credentials_left = sorted(str(p) for p in credential_folders() - folders_before)
    figures.peak_rss_mib = round(replicas.peak_kib / 1024, 1)
    figures.total_s = round(time.monotonic() - started, 1)
    return figures


def _span(values: list[float]) -> str:
    return f"{min(values)}-{max(values)} s (median {sorted(values)[len(values) // 2]})" if values else "-"


def table(f: Figures) -> str:
    rows = [
        ("seed", f.seed),
        (
            "PaddleServices",
            f"{f.n} ({f.kuscia} on Kuscia), {f.live} live at the end ({f.live_kuscia} on Kuscia)",
        ),
        ("operator SIGKILLs (leader)", f"{f.kills}; standby took over in {_span(f.takeover_s)}"),
        ("kube-apiserver restarts", f"{f.apiserver_restarts}; down for {_span(f.apiserver_outage_s)}"),
        ("replicas that exited themselves", f.replica_exits or "none"),
        ("operator processes started", f.incarnations),
        (
            "manifests applied",
            f"{f.manifests} (edits {f.edits}, recreated {f.recreated}, backend switches {f.backend_switches})",
        ),
        ("deletes", f.deletes),
        ("converged after the last fault", f"{f.converged_after_last_fault_s} s"),
        ("operator API writes", f"{f.operator_writes} {f.operator_writes_by_verb}"),
        ("API writes per manifest or delete", f.writes_per_edit),
        ("peak RSS of an operator process", f"{f.peak_rss_mib} MiB"),
        ("everything deleted at once in", f"{f.delete_all_s} s"),
        ("two operators writing at once", len(f.overlapping_writers)),
        ("objects not converged", len(f.problems)),
        (
            "revisions Knative failed for good",
            f"{len(f.knative_failed)} (each reported as Ready=False with Knative's reason)",
        ),
        ("orphans", len(f.orphans)),
        ("logs with a traceback", len(f.tracebacks)),
        ("credential folders left on disk", len(f.credentials_left)),
        ("total", f"{f.total_s} s"),
        ("result", "PASS" if f.ok else "FAIL"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    for what, items in (
        ("not converged", f.problems),
        ("failed by Knative", f.knative_failed),
        ("orphans", f.orphans),
        ("overlapping writers", f.overlapping_writers),
        ("tracebacks", f.tracebacks),
        ("credentials left", f.credentials_left),
    ):
        lines += [f"{what}: {item}" for item in items[:20]]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="PaddleServices to create")
    p.add_argument("--kuscia-share", type=float, default=0.1, help="the share of them on Kuscia")
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs of the leading operator")
    p.add_argument("--apiserver-restarts", type=int, default=10)
    p.add_argument("--replicas", type=int, default=2, help="operator replicas, with leader election")
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--progress", type=int, default=200, help="at most this many reconciles between faults")
    p.add_argument("--converge-timeout", type=float, default=1800)
    p.add_argument(
        "--poll",
        type=float,
        help="seconds between convergence checks (default N/100, at least 1). Each check lists every "
        "PaddleService, Knative Service and Revision through kubectl, which at N = 1000 competes with "
        "Knative's own controllers for the cores when done every second",
    )
    p.add_argument(
        "--stall", type=float, default=300, help="give up once the same problems persist this long"
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        help="operator logs here, the control plane in its control-plane/ (default: a new temporary folder); "
        "the control plane's folder is removed when it stops, the logs stay",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    work = args.out_dir or Path(tempfile.mkdtemp(prefix="pk-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"control plane with Knative in {work / 'control-plane'}; operator logs in {work / 'operators'}")
    cp = ControlPlane.start(work / "control-plane", knative=True)
    try:
        with KusciaDoubleThread(work / "kuscia-pki", step_seconds=0.3, seed=args.seed) as emulator:
            figures = soak(args, cp, emulator, work)
    finally:
        cp.stop()
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(asdict(figures) | {"ok": figures.ok}, indent=2) + "\n")
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
