#!/usr/bin/env python3
"""Scale benchmark: N PaddleServices created at once against the real local control plane.

    hack/bench.py --n 1000 [--workers 16] [--idle-seconds 300] [--skip-kuscia] [--json FILE] [--keep]

Phases, all in one run and one control plane:
  floor     a minimal async client makes the N Knative Service applies and N status patches the operator
            has to make (same bodies, same identity, same concurrency), in a namespace the operator ignores
  rollout   the operator (`paddle-kuscia run`, a subprocess) converges N new PaddleServices; a watcher process
            stamps when each Knative Service appears, each status reaches observedGeneration, each is Ready
  idle      nothing changes for --idle-seconds; every write the operator makes is counted from the audit log
  restart   the operator restarts over the N converged objects; its writes in the first --restart-seconds
  kuscia    --kuscia-n mirrored KusciaJobs (and KusciaDeployments) against the in-process Kuscia emulator;
            Kuscia API calls per poll interval in steady state, per route
It prints figures and never asserts: the targets are compared in the summary, the exit code is 0 whenever
the run completed. Every process it starts is stopped by PID; the bench namespaces are deleted.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests"), str(ROOT / "operator")]

try:
    import httpx
    import kopf  # noqa: F401
    import prometheus_client  # noqa: F401
    import yaml
except ImportError:
    import os

    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != venv_python.parents[1].resolve():
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    raise

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata as pkg_metadata  # noqa: E402
from typing import Any  # noqa: E402

from benchlib import apiserver, proc  # noqa: E402
from benchlib.kube import APPLY, KD, KJ, KSVC, MERGE, PS, ApiError, Kube, path  # noqa: E402
from paddle_kuscia.builders.compare import digest  # noqa: E402
from paddle_kuscia.builders.knative import FIELD_MANAGER, Owner, build_knative_service  # noqa: E402
from paddle_kuscia.models.paddleservice import PaddleService  # noqa: E402
from paddle_kuscia.reconcile.paddleservice import APPLIED_DIGEST  # noqa: E402
from paddle_kuscia.status.knative import knative_status  # noqa: E402
from support.control_plane import ControlPlane  # noqa: E402

SAMPLES = ROOT / "manifests" / "samples"
PYTHON = (
    str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
)
SIM_LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/knative-sim.paddle-kuscia.io"

TARGETS = {
    "ratio": ("≤ 1.5 at N=1000", lambda r: r["ratio"] is not None and r["ratio"] <= 1.5),
    "writes_per_object": (
        "≤ 3 (ksvc, first status, Ready)",
        lambda r: r["writes_per_object"] is not None and r["writes_per_object"] <= 3,
    ),
    "idle_writes": ("0", lambda r: r["idle_writes"] == 0),
    "restart_writes": ("0", lambda r: r["restart_writes"] == 0),
    "kuscia_calls_per_interval": (
        "≤ ceil(N/100) per kind",
        lambda r: (
            r["kuscia_calls_per_interval"] is not None
            and all(v <= r["kuscia_call_limit"] for v in r["kuscia_calls_per_interval"].values())
        ),
    ),
    "peak_rss_mib": (
        "≤ 200 MiB at N=5000",
        lambda r: r["peak_rss_mib"] is not None and r["peak_rss_mib"] <= 200,
    ),
}


# --------------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(popen: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM the process we started, SIGKILL it if it does not leave within `timeout`."""
    if popen is None or popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def versions(plane: ControlPlane, source: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for package in ("kopf", "httpx", "pydantic", "aiohttp", "kubernetes"):
        with contextlib.suppress(pkg_metadata.PackageNotFoundError):
            out[package] = pkg_metadata.version(package)
    with contextlib.suppress(Exception):
        out["kube_apiserver"] = plane.version()
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    out["etcd"] = env.get("ETCD_VERSION")
    out["knative_serving_crds"] = env.get("KNATIVE_SERVING_VERSION")
    git = ["git", "-C", str(ROOT)]
    out["git_commit"] = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "operator"], capture_output=True, text=True
    ).stdout
    out["operator_dirty_files"] = len(dirty.splitlines())
    out["operator_tree_sha256"] = operator_tree_digest(source)
    out["operator_source"] = str(source)
    return out


def operator_tree_digest(source: Path = ROOT / "operator") -> str:
    """Which operator code ran: others edit the working tree while benchmarks run."""
    h = hashlib.sha256()
    for file in sorted((source / "paddle_kuscia").rglob("*.py")):
        h.update(file.relative_to(source).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


def sample_paddleservice(name: str, namespace: str) -> dict[str, Any]:
    obj = yaml.safe_load((SAMPLES / "paddleservice-minimal.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": namespace}
    return obj


def spread(n: int, namespaces: list[str]) -> list[dict[str, Any]]:
    """N PaddleServices with names unique across the run, dealt round-robin over `namespaces`."""
    return [sample_paddleservice(f"ps-{i:05d}", namespaces[i % len(namespaces)]) for i in range(n)]


def kuscia_job(name: str, namespace: str) -> dict[str, Any]:
    """The PSI sample with task ids of its own, mirrored to Kuscia."""
    obj = yaml.safe_load((SAMPLES / "kusciajob-psi.yaml").read_text())
    obj["metadata"] = {
        "name": name,
        "namespace": namespace,
        "annotations": {"paddle-kuscia.io/mirror": "true"},
    }
    for task in obj["spec"]["tasks"]:
        task["taskID"] = f"{name}-{task['alias']}"
    return obj


def kuscia_deployment(name: str, namespace: str) -> dict[str, Any]:
    obj = yaml.safe_load((SAMPLES / "kusciadeployment-serving.yaml").read_text())
    obj["metadata"].update(name=name, namespace=namespace)
    return obj


async def create_all(
    kube: Kube, gv_plural: tuple[str, str], bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, tuple[float, dict[str, Any]]]:
    """POST every body with `concurrency` requests in flight; name -> (monotonic completion time, object)."""
    todo = list(reversed(bodies))
    done: dict[str, tuple[float, dict[str, Any]]] = {}

    async def worker() -> None:
        while todo:
            body = todo.pop()
            for attempt in range(20):
                try:
                    url = path(*gv_plural, body["metadata"]["namespace"])
                    obj = await kube.request("POST", url, body)
                    done[obj["metadata"]["name"]] = (time.monotonic(), obj)
                    break
                except (ApiError, httpx.TransportError) as err:
                    if isinstance(err, ApiError) and err.status not in (429, 500, 503, 504):
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


# --------------------------------------------------------------------------------------------------
# Processes: the Knative simulator (--knative sim), the operator and the watcher
# --------------------------------------------------------------------------------------------------


class Operator:
    """`paddle-kuscia run --standalone` under the operator's ServiceAccount, as a subprocess."""

    def __init__(self, plane: ControlPlane, log_path: Path, args: list[str], source: Path) -> None:
        self.plane, self.log_path, self.args, self.source = plane, log_path, args, source
        self.liveness = free_port()
        self.metrics_port = free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.tree = ""
        self.rss_samples: list[tuple[float, float]] = []  # (seconds since start, VmRSS MiB)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        cmd = [
            PYTHON,
            "-m",
            "paddle_kuscia.cli",
            "run",
            "--standalone",
            f"--liveness=http://127.0.0.1:{self.liveness}/healthz",
            f"--metrics-port={self.metrics_port}",
            "--metrics-address=127.0.0.1",
            *self.args,
        ]
        env = self.plane.env(self.plane.operator_kubeconfig)
        env["PYTHONPATH"] = str(self.source)
        self.tree = operator_tree_digest(self.source)
        with self.log_path.open("ab") as out:
            self.started = time.monotonic()
            self.popen = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    async def wait_live(self, timeout: float = 120.0) -> float:
        """Seconds from start until kopf's liveness endpoint answers."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.popen is None or self.popen.poll() is not None:
                    raise RuntimeError(f"operator exited; log: {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{self.liveness}/healthz")).status_code == 200:
                        return time.monotonic() - self.started
                await asyncio.sleep(0.1)
        raise TimeoutError(f"operator not live after {timeout:.0f}s; log: {self.log_path}")

    async def metrics(self) -> dict[str, Any]:
        """The operator's own counters: reconciles by outcome, Kubernetes requests by verb and code."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, dict[str, float]] = {"reconciles": {}, "kube_requests": {}, "kuscia_calls": {}}
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        except httpx.HTTPError:
            return out
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "paddle_kuscia_reconciles_total":
                    out["reconciles"][f"{s.labels['kind']} {s.labels['outcome']}"] = s.value
                elif s.name == "paddle_kuscia_kube_requests_total":
                    out["kube_requests"][f"{s.labels['verb']} {s.labels['code']}"] = s.value
                elif s.name == "paddle_kuscia_kuscia_api_calls_total":
                    out["kuscia_calls"][f"{s.labels['route']} {s.labels['outcome']}"] = s.value
        return out

    def cpu(self) -> float:
        return proc.tree_cpu_seconds(self.pid) if self.popen else 0.0

    def peak_rss_mib(self) -> float:
        return proc.tree_peak_rss_kib(self.pid) / 1024 if self.popen else 0.0

    def rss_mib(self) -> float:
        return proc.status_kib(self.pid, "VmRSS") / 1024 if self.popen else 0.0

    async def sample_rss(self, every: float = 0.25) -> None:
        """Record VmRSS while the process lives: tells a start-up spike from steady-state size."""
        while self.popen is not None and self.popen.poll() is None:
            self.rss_samples.append((round(time.monotonic() - self.started, 2), round(self.rss_mib(), 1)))
            await asyncio.sleep(every)

    def rss_timeline(self, step: float = 2.0) -> list[tuple[float, float]]:
        """The samples thinned to one per `step` seconds, keeping each interval's maximum."""
        out: dict[int, tuple[float, float]] = {}
        for t, rss in self.rss_samples:
            slot = int(t // step)
            if slot not in out or rss > out[slot][1]:
                out[slot] = (t, rss)
        return [out[k] for k in sorted(out)]

    def stop(self) -> None:
        stop_pid(self.popen)


class Simulator:
    """hack/knative-sim as a process, so its CPU is its own; reused when one already holds the lease."""

    def __init__(self, plane: ControlPlane, out_dir: Path, ready_delay: float, workers: int) -> None:
        self.plane, self.out_dir, self.ready_delay, self.workers = plane, out_dir, ready_delay, workers
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    async def start(self, admin: Kube) -> str:
        holder = await self._holder(admin)
        if holder:
            with contextlib.suppress(ValueError, IndexError):
                self.pid = int(holder.split("_")[-2])
            return f"reused (holder {holder})"
        pid_file = self.out_dir / "knative-sim.pid"
        with (self.out_dir / "knative-sim.log").open("ab") as out:
            self.popen = subprocess.Popen(
                [
                    PYTHON,
                    str(ROOT / "hack" / "knative-sim"),
                    "--kubeconfig",
                    str(self.plane.admin_kubeconfig),
                    "--pid-file",
                    str(pid_file),
                    "--ready-delay",
                    str(self.ready_delay),
                    "--workers",
                    str(self.workers),
                    "--log-level",
                    "WARNING",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"knative-sim exited; log: {self.out_dir / 'knative-sim.log'}")
            holder = await self._holder(admin)
            if holder and f"_{self.pid}_" in holder:
                await asyncio.sleep(1.0)  # its informers sync right after the lease
                return f"started pid={self.pid}"
            await asyncio.sleep(0.3)
        raise TimeoutError("knative-sim did not take its lease")

    @staticmethod
    async def _holder(admin: Kube) -> str | None:
        try:
            lease = await admin.request("GET", SIM_LEASE)
        except ApiError:
            return None
        spec = lease.get("spec") or {}
        renewed = spec.get("renewTime")
        if not spec.get("holderIdentity") or not renewed:
            return None
        age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(renewed)).total_seconds()
        return spec["holderIdentity"] if age < (spec.get("leaseDurationSeconds") or 15) else None

    def stop(self) -> None:
        stop_pid(self.popen)


@dataclass
class Watch:
    """Milestones from benchlib.watcher, read as the watcher prints them."""

    ksvc: dict[str, float] = field(default_factory=dict)
    gen: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    last_ps_event: float = 0.0
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None

    async def start(self, kubeconfig: Path, namespaces: list[str], stderr_path: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "hack"))
        with stderr_path.open("ab") as err:
            self.process = await asyncio.create_subprocess_exec(
                PYTHON,
                "-m",
                "benchlib.watcher",
                "--kubeconfig",
                str(kubeconfig),
                *(arg for ns in namespaces for arg in ("--namespace", ns)),
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
                limit=1 << 20,
            )
        self.task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.synced.wait(), 60)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = json.loads(raw)
            kind = line["k"]
            if kind == "ksvc":
                self.ksvc.setdefault(line["n"], line["t"])
            elif kind == "gen":
                self.gen[line["n"]] = line["t"]
            elif kind == "ready":
                self.ready[line["n"]] = line["t"]
            elif kind == "act" and line.get("ps"):
                self.last_ps_event = line["t"]
            elif kind == "synced":
                self.synced.set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n: int = args.n
        self.out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="pk-bench-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:6]
        k = args.namespaces
        self.rollout_ns = (
            [f"bench-{self.run_id}-{i}" for i in range(k)] if k > 1 else [f"bench-{self.run_id}"]
        )
        self.floor_ns = f"bench-floor-{self.run_id}"
        self.kuscia_ns = f"bench-kuscia-{self.run_id}"
        self.result: dict[str, Any] = {
            "n": self.n,
            "workers": args.workers,
            "create_concurrency": args.create_concurrency,
            "ready_delay": args.ready_delay,
            "sim_workers": args.sim_workers,
            "machine": proc.machine(),
            "out_dir": str(self.out_dir),
        }
        self.plane: ControlPlane | None = None
        self.admin: Kube | None = None
        self.sim: Simulator | None = None
        self.operators: list[Operator] = []
        self.watch = Watch()
        self.namespaces: list[str] = []
        self.audit: apiserver.AuditLog | None = None
        self.cpu: proc.CpuMeter | None = None
        self.background: list[asyncio.Task[None]] = []
        self.signals = 0

    # -- shared measurements ---------------------------------------------------------------------------

    async def metrics(self) -> Any:
        assert self.admin is not None
        resp = await self.admin.http.get("/metrics")
        resp.raise_for_status()
        return apiserver.request_totals(resp.text)

    async def mark(self, *, end: bool = False) -> dict[str, Any]:
        """Everything a phase compares before and after: time, CPU, API counters, audit offset.

        Time and CPU are read next to the work they bracket (last for a start mark, first for an end mark),
        so the slower counter reads stay outside the window.
        """
        assert self.audit is not None and self.cpu is not None
        first = {"t": time.monotonic(), "cpu": self.cpu.sample()} if end else {}
        counters = {"metrics": await self.metrics(), "audit": self.audit.mark()}
        last = {} if end else {"cpu": self.cpu.sample(), "t": time.monotonic()}
        return {**first, **counters, **last}

    def window(self, a: dict[str, Any], b: dict[str, Any], keep: Any = None) -> dict[str, Any]:
        assert self.audit is not None
        delta = apiserver.subtract(b["metrics"], a["metrics"])
        audit = apiserver.summarize(self.audit.events(a["audit"], b["audit"]), keep or (lambda e: True))
        cpu = proc.CpuMeter.delta(a["cpu"], b["cpu"])
        return {
            "seconds": rnd(b["t"] - a["t"]),
            "other_load_cores": rnd(cpu["other"] / max(b["t"] - a["t"], 1e-6)),
            "apiserver_requests_by_verb": apiserver.by_verb(delta),
            "apiserver_requests_total": sum(delta.values()),
            "cpu_seconds": cpu,
            **audit,
        }

    def track_cpu(self) -> None:
        """(Re)build the CPU meter from the processes alive now."""
        assert self.plane is not None
        groups: dict[str, list[tuple[int, bool]]] = {}
        for name in (
            "kube-apiserver",
            "etcd",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "knative-controller",
            "knative-webhook",
            "knative-autoscaler",
        ):
            pid_file = self.plane.run_dir / f"{name}.pid"
            if pid_file.exists():
                groups[name] = [(int(pid_file.read_text().strip()), False)]
        if self.sim and self.sim.pid:
            groups["knative-sim"] = [(self.sim.pid, True)]
        # The harness itself: this process (with the in-process Kuscia emulator thread) and its watcher.
        groups["bench"] = [(os.getpid(), False)] + ([(self.watch.pid, False)] if self.watch.pid else [])
        for i, op in enumerate(self.operators):
            if op.popen and op.popen.poll() is None:
                groups[f"operator-{i}"] = [(op.pid, True)]
        self.cpu = proc.CpuMeter(groups)

    def operator_cpu_key(self, op: Operator) -> str:
        assert self.cpu is not None
        key = self.cpu.key_of(op.pid)
        assert key is not None
        return key

    # -- setup -------------------------------------------------------------------------------------------

    async def setup(self) -> None:
        log(f"starting or reusing the control plane (logs and outputs in {self.out_dir})")
        # The simulator replaces Knative's controllers: never both.
        self.plane = ControlPlane.start(knative=self.args.knative != "sim")
        self.result["control_plane"] = {"run_dir": str(self.plane.run_dir), "owned": self.plane.owned}
        base = ROOT / "manifests" / "base"
        self.plane.kubectl(
            "apply", "-f", str(base / "clusterrole.yaml"), "-f", str(base / "clusterrolebinding.yaml")
        )
        self.audit = apiserver.AuditLog(self.plane.audit_log)
        self.admin = Kube(self.plane.admin_kubeconfig, connections=max(self.args.create_concurrency, 8))
        self.result["knative"] = self.args.knative
        if self.args.knative == "sim":
            if (self.plane.run_dir / "knative-controller.pid").exists():
                raise RuntimeError(
                    "a control plane with Knative's controllers is running; --knative sim needs one without"
                )
            self.sim = Simulator(self.plane, self.out_dir, self.args.ready_delay, self.args.sim_workers)
            self.result["knative_sim"] = await self.sim.start(self.admin)
            log(f"Knative simulator {self.result['knative_sim']}")
        else:
            log("Knative Serving's real controller, webhook and autoscaler (hack/knative.sh)")
        await self.create_namespaces(self.rollout_ns + ([] if self.args.skip_kuscia else [self.kuscia_ns]))
        self.result["versions"] = versions(self.plane, self.args.operator_source.resolve())
        self.track_cpu()

    async def create_namespaces(self, names: list[str]) -> None:
        assert self.admin is not None
        for ns in names:
            await self.admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            self.namespaces.append(ns)

    # -- floor ---------------------------------------------------------------------------------------------

    async def floor(self, run: int) -> None:
        """The operator's unavoidable API work, done by the thinnest client: N applies + N status patches.

        Run once before the rollout and once after the restart, in namespaces of their own, so load from
        elsewhere on the machine shows up as a spread between the two rather than as a silent bias.
        """
        assert self.admin is not None and self.plane is not None
        a = self.args
        k = a.namespaces
        namespaces = [f"{self.floor_ns}-{run}-{i}" for i in range(k)] if k > 1 else [f"{self.floor_ns}-{run}"]
        await self.create_namespaces(namespaces)
        log(
            f"floor {run}: creating {self.n} PaddleServices in {namespaces[0]}.. (not watched by the operator)"
        )
        start = time.monotonic()
        created = await create_all(self.admin, PS, spread(self.n, namespaces), a.create_concurrency)
        create_seconds = time.monotonic() - start

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        work = []
        for name, (_, obj) in sorted(created.items()):
            meta = obj["metadata"]
            owner = Owner(meta["name"], meta["namespace"], meta["uid"], dict(meta.get("labels") or {}))
            spec = PaddleService.model_validate(obj).spec
            desired, rollout = build_knative_service(owner, spec, None)
            desired["metadata"].setdefault("annotations", {})[APPLIED_DIGEST] = digest(desired)
            status = knative_status(
                generation=meta.get("generation", 1), previous=None, rollout=rollout, observed=None, now=now
            ).wire()
            patch = {"status": status, "metadata": {"resourceVersion": meta["resourceVersion"]}}
            work.append((meta["namespace"], name, desired, patch))

        client = Kube(
            self.plane.operator_kubeconfig, connections=a.workers, agent="paddle-kuscia-bench-floor"
        )
        apply_lat: list[float] = []
        status_lat: list[float] = []
        todo = list(reversed(work))

        async def worker() -> None:
            while todo:
                namespace, name, desired, patch = todo.pop()
                t = time.monotonic()
                await client.request(
                    "PATCH",
                    path(*KSVC, namespace, name),
                    desired,
                    content_type=APPLY,
                    params={"fieldManager": FIELD_MANAGER, "force": "true"},
                )
                t2 = time.monotonic()
                await client.request("PATCH", path(*PS, namespace, name, "status"), patch, content_type=MERGE)
                apply_lat.append(t2 - t)
                status_lat.append(time.monotonic() - t2)

        log(f"floor {run}: {self.n} Knative Service applies + {self.n} status patches, {a.workers} in flight")
        m0 = await self.mark()
        started = time.monotonic()
        try:
            await asyncio.gather(*(worker() for _ in range(a.workers)))
        finally:
            await client.aclose()
        seconds = time.monotonic() - started
        m1 = await self.mark(end=True)
        figures = {
            "namespaces": namespaces,
            "create_seconds": rnd(create_seconds),
            "seconds": rnd(seconds),
            "requests_per_second": rnd(2 * self.n / seconds, 1),
            "apply_p50_ms": ms(percentile(apply_lat, 50)),
            "apply_p99_ms": ms(percentile(apply_lat, 99)),
            "status_p50_ms": ms(percentile(status_lat, 50)),
            "status_p99_ms": ms(percentile(status_lat, 99)),
            "cpu_seconds": proc.CpuMeter.delta(m0["cpu"], m1["cpu"]),
        }
        figures["other_load_cores"] = rnd(figures["cpu_seconds"]["other"] / max(m1["t"] - m0["t"], 1e-6))
        runs = self.result.setdefault("floor_runs", [])
        runs.append(figures)
        averaged = ("create_seconds", "seconds", "requests_per_second", "apply_p50_ms", "apply_p99_ms")
        averaged += ("status_p50_ms", "status_p99_ms")
        self.result["floor"] = {k: rnd(sum(r[k] for r in runs) / len(runs)) for k in averaged}
        self.result["floor_seconds"] = self.result["floor"]["seconds"]
        self.result["floor_seconds_runs"] = [r["seconds"] for r in runs]
        log(f"floor {run}: {seconds:.2f}s; waiting for Knative to finish the floor's Knative Services")
        settled = await self.wait_knative_ready(namespaces, timeout=self.args.timeout)
        figures["knative_ready_seconds"] = rnd(time.monotonic() - m1["t"]) if settled else None

    async def wait_knative_ready(self, namespaces: list[str], timeout: float) -> bool:
        """Poll until every Knative Service in `namespaces` is Ready (Knative has caught up).

        Reads the server-side table (name and printer columns, no objects): a few hundred bytes per row.
        """
        assert self.admin is not None
        table = "application/json;as=Table;v=v1;g=meta.k8s.io"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = 0
            for namespace in namespaces:
                resp = await self.admin.http.get(
                    path(*KSVC, namespace), params={"includeObject": "None"}, headers={"Accept": table}
                )
                resp.raise_for_status()
                body = resp.json()
                column = [c["name"] for c in body.get("columnDefinitions") or []].index("Ready")
                ready += sum(1 for r in body.get("rows") or [] if r["cells"][column] == "True")
            if ready >= self.n:
                return True
            await asyncio.sleep(5.0)
        log(f"warning: Knative Services in {namespaces[0]}.. not all Ready after {timeout:.0f}s")
        return False

    # -- rollout -------------------------------------------------------------------------------------------

    def operator_args(self, namespaces: list[str], *extra: str) -> list[str]:
        return [
            *(arg for ns in namespaces for arg in ("--namespace", ns)),
            "--workers",
            str(self.args.workers),
            *extra,
            *self.args.operator_arg,
        ]

    async def start_operator(self, namespaces: list[str], tag: str, *extra: str) -> Operator:
        assert self.plane is not None
        log_path = self.out_dir / f"operator-{tag}.log"
        op = Operator(self.plane, log_path, self.operator_args(namespaces, *extra), self.args.operator_source)
        op.start()
        self.operators.append(op)
        self.background.append(asyncio.create_task(op.sample_rss()))
        live = await op.wait_live()
        self.result.setdefault("operator_tree_by_phase", {})[tag] = op.tree
        self.track_cpu()
        log(f"operator ({tag}) pid={op.pid} live after {live:.2f}s")
        return op

    async def rollout(self) -> Operator:
        assert self.admin is not None and self.plane is not None
        a = self.args
        await self.watch.start(self.plane.admin_kubeconfig, self.rollout_ns, self.out_dir / "watcher.log")
        op = await self.start_operator(self.rollout_ns, "rollout")
        await asyncio.sleep(3.0)  # kopf opens its watch streams after the liveness endpoint
        self.result["operator_startup"] = {"cpu_seconds": rnd(op.cpu()), "rss_mib": rnd(op.rss_mib(), 1)}
        profiler = self.start_profiler(op)

        bodies = spread(self.n, self.rollout_ns)
        log(
            f"rollout: creating {self.n} PaddleServices in {self.rollout_ns[0]}.. ({len(self.rollout_ns)} namespaces)"
        )
        m0 = await self.mark()
        t0 = time.monotonic()
        created = await create_all(self.admin, PS, bodies, a.create_concurrency)
        created_at = {name: t for name, (t, _) in created.items()}
        create_seconds = max(created_at.values()) - t0

        deadline = t0 + a.timeout
        names = set(created_at)

        def converged() -> int:
            return sum(1 for n in names if n in self.watch.ksvc and n in self.watch.gen)

        while converged() < self.n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        m_conv = await self.mark(end=True)
        while len(names & set(self.watch.ready)) < self.n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        m_ready = await self.mark(end=True)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(60)

        done = [n for n in names if n in self.watch.ksvc and n in self.watch.gen]
        converge_at = [max(self.watch.ksvc[n], self.watch.gen[n]) for n in done]
        ready_at = [self.watch.ready[n] for n in names if n in self.watch.ready]
        complete = len(done) == self.n
        self.result["converged"] = len(done)
        self.result["ready"] = len(ready_at)
        self.result["create_seconds"] = rnd(create_seconds)
        self.result["converge_seconds"] = rnd(max(converge_at) - t0) if complete else None
        self.result["ready_seconds"] = rnd(max(ready_at) - t0) if len(ready_at) == self.n else None
        self.update_ratio()
        floor = self.result.get("floor_seconds")

        to_ksvc = [self.watch.ksvc[n] - created_at[n] for n in names if n in self.watch.ksvc]
        to_gen = [self.watch.gen[n] - created_at[n] for n in names if n in self.watch.gen]
        to_ready = [self.watch.ready[n] - created_at[n] for n in names if n in self.watch.ready]
        self.result["p50_ms"] = ms(percentile(to_ksvc, 50))
        self.result["p99_ms"] = ms(percentile(to_ksvc, 99))
        self.result["latency_ms"] = {
            "create_to_ksvc": {
                "p50": ms(percentile(to_ksvc, 50)),
                "p99": ms(percentile(to_ksvc, 99)),
                "max": ms(max(to_ksvc, default=None)),
            },
            "create_to_observed_generation": {
                "p50": ms(percentile(to_gen, 50)),
                "p99": ms(percentile(to_gen, 99)),
            },
            "create_to_ready": {"p50": ms(percentile(to_ready, 50)), "p99": ms(percentile(to_ready, 99))},
            "create_to_ksvc_audit": self.audit_latency(m0["audit"], m_conv["audit"]),
        }
        key = self.operator_cpu_key(op)
        self.result["rollout"] = {
            "to_converged": self.window(m0, m_conv),
            "to_ready": self.window(m0, m_ready),
            "operator_metrics": await op.metrics(),
        }
        self.result["cpu_seconds"] = rnd(m_ready["cpu"][key] - m0["cpu"][key])
        self.result["cpu_seconds_to_converged"] = rnd(m_conv["cpu"][key] - m0["cpu"][key])
        per_1000 = 1000 / self.n
        self.result["cpu_seconds_per_1000"] = rnd(self.result["cpu_seconds"] * per_1000)
        self.result["cpu_seconds_to_converged_per_1000"] = rnd(
            self.result["cpu_seconds_to_converged"] * per_1000
        )
        writes = self.result["rollout"]["to_ready"]["operator_writes_by_kind"]
        status_patches = writes.get("patch paddleservices/status", 0)
        self.result["status_writes_per_object"] = rnd(status_patches / self.n)
        self.result["writes_per_object"] = rnd((status_patches + writes.get("patch services", 0)) / self.n)
        log(
            f"rollout: converged {len(done)}/{self.n} in {self.result['converge_seconds']}s, "
            f"Ready {len(ready_at)}/{self.n} in {self.result['ready_seconds']}s (floor {floor}s)"
        )
        return op

    def update_ratio(self) -> None:
        """Operator time over floor time (the floor averaged over its runs so far)."""
        floor = self.result.get("floor_seconds")
        conv = self.result.get("converge_seconds")
        creates = (self.result.get("floor") or {}).get("create_seconds")
        self.result["ratio"] = rnd(conv / floor) if conv and floor else None
        self.result["ratio_including_creates"] = (
            rnd(conv / (floor + creates)) if conv and floor and creates is not None else None
        )

    def audit_latency(self, start: int, end: int) -> dict[str, float | None]:
        """Create -> Knative Service from the API server's own microsecond stamps (no client-side lag)."""
        assert self.audit is not None
        created: dict[str, dt.datetime] = {}
        applied: dict[str, dt.datetime] = {}
        for e in self.audit.events(start, end):
            ref = e.get("objectRef") or {}
            if e.get("stage") != "ResponseComplete" or ref.get("namespace") not in self.rollout_ns:
                continue
            when = dt.datetime.fromisoformat(e["stageTimestamp"])
            if (
                ref.get("resource") == "paddleservices"
                and e["verb"] == "create"
                and apiserver.actor(e) == "bench"
            ):
                created[ref.get("name") or ""] = when
            elif (
                ref.get("resource") == "services"
                and not ref.get("subresource")
                and apiserver.operator_write(e)
                and (e.get("responseStatus") or {}).get("code", 0) < 300
            ):
                applied.setdefault(ref.get("name") or "", when)
        lat = [(applied[n] - created[n]).total_seconds() for n in applied if n in created]
        return {"p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)), "samples": len(lat)}

    def start_profiler(self, op: Operator) -> subprocess.Popen[bytes] | None:
        if not self.args.py_spy:
            return None
        spy = ROOT / ".venv" / "bin" / "py-spy"
        if not spy.exists():
            log("warning: --py-spy given but .venv/bin/py-spy is missing (pip install py-spy)")
            return None
        out = Path(self.args.py_spy).resolve()
        log(f"profiling the operator during the rollout into {out}")
        return subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(op.pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.out_dir / "py-spy.log").open("ab"),
        )

    # -- idle and restart --------------------------------------------------------------------------------------

    async def settle(self) -> float:
        """Wait until no PaddleService changed for --settle-seconds (revisions scaling to zero may still move)."""
        start = time.monotonic()
        deadline = start + self.args.settle_timeout
        while time.monotonic() < deadline:
            if time.monotonic() - max(self.watch.last_ps_event, start) >= self.args.settle_seconds:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - start

    async def idle(self, op: Operator) -> None:
        settle = await self.settle()
        log(f"idle: settled after {settle:.1f}s; observing {self.args.idle_seconds:.0f}s")
        m0 = await self.mark()
        await asyncio.sleep(self.args.idle_seconds)  # the observation window itself, not a synchronisation
        m1 = await self.mark(end=True)
        win = self.window(m0, m1)
        win["settle_seconds"] = rnd(settle)
        self.result["idle"] = win
        self.result["idle_writes"] = win["operator_writes"]
        self.result["idle_operator_cpu_seconds"] = win["cpu_seconds"].get(self.operator_cpu_key(op))

    async def restart(self, op: Operator) -> None:
        self.result["rollout_peak_rss_mib"] = rnd(op.peak_rss_mib(), 1)
        self.result["rollout_rss_mib_before_restart"] = rnd(op.rss_mib(), 1)
        self.result["rollout_rss_mib_timeline"] = op.rss_timeline(step=max(2.0, self.n / 250))
        op.stop()
        log("restart: operator stopped; starting a new one over the converged objects")
        m0 = await self.mark()
        new = await self.start_operator(self.rollout_ns, "restart")
        live = time.monotonic() - new.started
        await asyncio.sleep(max(0.0, self.args.restart_seconds - (time.monotonic() - new.started)))
        m1 = await self.mark(end=True)
        win = self.window(m0, m1)
        key = self.operator_cpu_key(new)
        win["liveness_seconds"] = rnd(live)
        win["operator_cpu_seconds"] = rnd(m1["cpu"].get(key, 0.0))
        win["peak_rss_mib"] = rnd(new.peak_rss_mib(), 1)
        win["rss_mib_at_end"] = rnd(new.rss_mib(), 1)
        win["rss_mib_timeline"] = new.rss_timeline(step=1.0)
        win["operator_metrics"] = await new.metrics()
        self.result["restart"] = win
        self.result["restart_writes"] = win["operator_writes"]
        self.result["peak_rss_mib"] = max(self.result["rollout_peak_rss_mib"], win["peak_rss_mib"])
        new.stop()

    # -- Kuscia ------------------------------------------------------------------------------------------------

    async def kuscia(self) -> None:
        from support.kuscia_double import KusciaDoubleThread

        assert self.admin is not None
        a = self.args
        jobs = a.kuscia_n if a.kuscia_n is not None else min(self.n, 250)
        deployments = a.kuscia_deployments if a.kuscia_deployments is not None else jobs
        interval = a.kuscia_poll_interval
        out: dict[str, Any] = {"jobs": jobs, "deployments": deployments, "poll_interval": interval}
        self.result["kuscia"] = out
        # One emulated step per hour: every job stays unfinished (and polled) unless we move time on.
        with KusciaDoubleThread(self.out_dir / "kuscia-pki", step_seconds=3600, seed=7) as emulator:
            op = await self.start_operator(
                [self.kuscia_ns],
                "kuscia",
                "--kuscia-url",
                emulator.base_url,
                "--kuscia-credentials-dir",
                str(emulator.pki.directory),
                "--kuscia-poll-interval",
                str(interval),
            )
            try:
                emulator.reset_stats()
                log(
                    f"kuscia: creating {jobs} KusciaJobs and {deployments} KusciaDeployments in {self.kuscia_ns}"
                )
                t0 = time.monotonic()
                await create_all(
                    self.admin,
                    KJ,
                    [kuscia_job(f"job-{i:05d}", self.kuscia_ns) for i in range(jobs)],
                    a.create_concurrency,
                )
                await create_all(
                    self.admin,
                    KD,
                    [kuscia_deployment(f"kd-{i:05d}", self.kuscia_ns) for i in range(deployments)],
                    a.create_concurrency,
                )
                deadline = t0 + a.timeout
                while (
                    len(emulator.jobs) < jobs or len(emulator.servings) < deployments
                ) and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                out["submit_seconds"] = rnd(time.monotonic() - t0)
                out["submit_calls"] = emulator.stats()
                emulator.advance(1)  # every job Running, every serving Progressing
                while time.monotonic() < deadline:
                    items = (await self.admin.request("GET", path(*KJ, self.kuscia_ns))).get("items") or []
                    if len(items) == jobs and all(
                        (i.get("status") or {}).get("phase") == "Running" for i in items
                    ):
                        break
                    await asyncio.sleep(1.0)
                out["running_seconds"] = rnd(time.monotonic() - t0)
                await asyncio.sleep(2 * interval)  # the status round that followed the step has been written
                window = a.kuscia_window * interval
                m0 = await self.mark()
                emulator.reset_stats()
                await asyncio.sleep(window)  # the measurement window
                stats = emulator.stats()
                m1 = await self.mark(end=True)
                out["steady_calls"] = stats
                per = {route: round(n / a.kuscia_window, 2) for route, n in sorted(stats.items())}
                out["steady_calls_per_interval"] = per
                steady = self.window(m0, m1)
                out["steady_operator_writes"] = steady["operator_writes"]
                out["steady_operator_cpu_seconds"] = steady["cpu_seconds"].get(self.operator_cpu_key(op))
                out["peak_rss_mib"] = rnd(op.peak_rss_mib(), 1)
                out["operator_metrics"] = await op.metrics()
                self.result["kuscia_calls_per_interval"] = {
                    "job": per.get("/api/v1/job/status/batchQuery", 0.0),
                    "serving": per.get("/api/v1/serving/status/batchQuery", 0.0),
                    **{r: v for r, v in per.items() if "batchQuery" not in r},
                }
                self.result["kuscia_call_limit"] = max(math.ceil(jobs / 100), math.ceil(deployments / 100))
                out["limit_per_kind"] = {
                    "job": math.ceil(jobs / 100),
                    "serving": math.ceil(deployments / 100),
                }
                log(f"kuscia: steady calls per {interval:g}s interval {per}")
            finally:
                op.stop()
                if self.plane is not None and (not self.plane.owned or self.args.keep):
                    await self.release_finalizers()

    async def release_finalizers(self) -> None:
        """The stopped operator cannot release its finalizers; drop them so the namespace can go."""
        assert self.admin is not None
        for gv_plural in (KJ, KD):
            items = (await self.admin.request("GET", path(*gv_plural, self.kuscia_ns))).get("items") or []
            for item in items:
                if item["metadata"].get("finalizers"):
                    with contextlib.suppress(ApiError):
                        await self.admin.request(
                            "PATCH",
                            path(*gv_plural, self.kuscia_ns, item["metadata"]["name"]),
                            {"metadata": {"finalizers": None}},
                            content_type=MERGE,
                        )

    # -- teardown --------------------------------------------------------------------------------------------------

    def stop_processes(self) -> None:
        """Stop, by PID, every process this run started (synchronous: also usable from a signal handler)."""
        if self.watch.process is not None and self.watch.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.watch.process.kill()
        for op in self.operators:
            op.stop()
        if self.sim is not None:
            self.sim.stop()

    def stop_plane(self) -> None:
        if self.plane is None:
            return
        if self.args.keep or not self.plane.owned:
            log(f"control plane left running: PK_RUN_DIR={self.plane.run_dir}")
        else:
            self.plane.stop()
            self.plane = None

    async def teardown(self) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.watch.stop(), 15)
        self.stop_processes()
        if self.admin is not None:
            for ns in self.namespaces:
                with contextlib.suppress(ApiError, httpx.HTTPError, asyncio.TimeoutError):
                    await asyncio.wait_for(self.admin.request("DELETE", f"/api/v1/namespaces/{ns}"), 15)
            await self.admin.aclose()
        self.stop_plane()

    def on_signal(self, main: asyncio.Task[Any]) -> None:
        """First SIGINT/SIGTERM: cancel the run so teardown cleans up. Second: stop everything now."""
        self.signals += 1
        if self.signals == 1:
            log("interrupted: cleaning up (signal again to stop at once)")
            main.cancel()
            return
        self.stop_processes()
        self.stop_plane()
        os._exit(130)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, main)
        try:
            await self.setup()
            if self.args.floor_runs > 0:
                await self.floor(1)
            op = await self.rollout()
            await self.idle(op)
            await self.restart(op)
            if self.args.floor_runs > 1:
                await self.floor(2)
                self.update_ratio()
            if not self.args.skip_kuscia:
                await self.kuscia()
        finally:
            await self.teardown()
        for key in (
            "writes_per_object",
            "idle_writes",
            "restart_writes",
            "peak_rss_mib",
            "kuscia_calls_per_interval",
            "kuscia_call_limit",
        ):
            self.result.setdefault(key, None)
        return self.result


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def table(rows: list[tuple[str, Any]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def fmt_verbs(d: dict[str, int] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (d or {}).items()) or "-"


def fmt_cpu(d: dict[str, float] | None) -> str:
    """Per-process CPU seconds; `other` is everything else on the machine (other people's work included)."""
    return " ".join(f"{k}={v:.1f}" for k, v in (d or {}).items() if k != "machine") + (
        f" (machine {d['machine']:.1f})" if d else ""
    )


def report(r: dict[str, Any]) -> str:
    rollout = r.get("rollout") or {}
    conv = rollout.get("to_converged") or {}
    ready = rollout.get("to_ready") or {}
    idle = r.get("idle") or {}
    restart = r.get("restart") or {}
    floor = r.get("floor") or {}
    lat = r.get("latency_ms") or {}
    m = r["machine"]
    v = r.get("versions") or {}
    out = [
        f"paddle-kuscia bench  N={r['n']}  workers={r['workers']}  machine: {m['nproc']} cores, {m['memory_gib']} GiB"
        f"  load at start {m['loadavg_at_start']}",
        "Knative: "
        + (
            "the simulator (tests/support/knative_sim.py)"
            if r.get("knative") == "sim"
            else "Knative Serving's real controller, webhook and autoscaler; pods on kwok"
        ),
        f"versions: python {v.get('python')}  kopf {v.get('kopf')}  httpx {v.get('httpx')}  kube-apiserver "
        f"{v.get('kube_apiserver')}  etcd {v.get('etcd')}  git {v.get('git_commit')} "
        f"(+{v.get('operator_dirty_files')} dirty operator files, tree {v.get('operator_tree_sha256')})",
    ]
    if v.get("operator_source") != str((ROOT / "operator").resolve()):
        out.append(f"operator source: {v.get('operator_source')} (not the working tree)")
    trees = r.get("operator_tree_by_phase") or {}
    if len(set(trees.values())) > 1:
        out.append(f"WARNING: the operator code changed during the run: {trees}")
    out += [
        "",
        table(
            [
                ("create N PaddleServices", f"{r.get('create_seconds')} s"),
                (
                    "converged (ksvc + observedGeneration)",
                    f"{r.get('converge_seconds')} s  ({r.get('converged')}/{r['n']})",
                ),
                (
                    "all Ready (as Knative reports it)",
                    f"{r.get('ready_seconds')} s  ({r.get('ready')}/{r['n']})",
                ),
                (
                    "floor (N applies + N status patches)",
                    f"{r.get('floor_seconds')} s  (runs {r.get('floor_seconds_runs')}, "
                    f"{floor.get('requests_per_second')} req/s)",
                ),
                ("ratio converged / floor", r.get("ratio")),
                ("ratio incl. creates", r.get("ratio_including_creates")),
                ("create -> ksvc p50 / p99 (watch)", f"{r.get('p50_ms')} / {r.get('p99_ms')} ms"),
                (
                    "create -> ksvc p50 / p99 (audit)",
                    f"{(lat.get('create_to_ksvc_audit') or {}).get('p50')} / {(lat.get('create_to_ksvc_audit') or {}).get('p99')} ms",
                ),
                (
                    "create -> observedGeneration p50 / p99",
                    f"{(lat.get('create_to_observed_generation') or {}).get('p50')} / {(lat.get('create_to_observed_generation') or {}).get('p99')} ms",
                ),
                (
                    "create -> Ready p50 / p99",
                    f"{(lat.get('create_to_ready') or {}).get('p50')} / {(lat.get('create_to_ready') or {}).get('p99')} ms",
                ),
                ("floor apply p50 / p99", f"{floor.get('apply_p50_ms')} / {floor.get('apply_p99_ms')} ms"),
                ("floor status p50 / p99", f"{floor.get('status_p50_ms')} / {floor.get('status_p99_ms')} ms"),
                (
                    "operator CPU, rollout to Ready",
                    f"{r.get('cpu_seconds')} s  (to converged {r.get('cpu_seconds_to_converged')} s)",
                ),
                (
                    "operator CPU per 1000 objects",
                    f"{r.get('cpu_seconds_per_1000')} s to Ready  "
                    f"(to converged {r.get('cpu_seconds_to_converged_per_1000')} s)",
                ),
                (
                    "writes per object, create to all Ready",
                    f"{r.get('writes_per_object')}  (status patches {r.get('status_writes_per_object')}; "
                    "Knative Service applies + status patches, from the audit log)",
                ),
                (
                    "operator peak RSS",
                    f"{r.get('peak_rss_mib')} MiB  (rollout {r.get('rollout_peak_rss_mib')}, restart {restart.get('peak_rss_mib')})",
                ),
                (
                    "operator RSS after restart settled",
                    f"{restart.get('rss_mib_at_end')} MiB  (before restart {r.get('rollout_rss_mib_before_restart')})",
                ),
                (
                    "idle writes by operator",
                    f"{r.get('idle_writes')} in {idle.get('seconds')} s  {idle.get('operator_writes_by_kind') or ''}",
                ),
                (
                    "restart writes by operator",
                    f"{r.get('restart_writes')} in {restart.get('seconds')} s  {restart.get('operator_writes_by_kind') or ''}",
                ),
                (
                    "kuscia calls per poll interval",
                    f"{r.get('kuscia_calls_per_interval')}  (limit {r.get('kuscia_call_limit')})",
                ),
            ],
            "Results",
        ),
        "",
        table(
            [
                *[
                    (f"floor run {i + 1}", fmt_cpu(run.get("cpu_seconds")))
                    for i, run in enumerate(r.get("floor_runs") or [])
                ],
                ("rollout to converged", fmt_cpu(conv.get("cpu_seconds"))),
                ("rollout to Ready", fmt_cpu(ready.get("cpu_seconds"))),
                ("idle", fmt_cpu(idle.get("cpu_seconds"))),
                ("restart", fmt_cpu(restart.get("cpu_seconds"))),
            ],
            "CPU seconds by process (bench includes its watcher; other = the rest of the machine)",
        ),
        "",
        table(
            [
                ("rollout to Ready: all", fmt_verbs(ready.get("apiserver_requests_by_verb"))),
                (
                    "rollout: operator writes",
                    f"{ready.get('operator_writes')}  {ready.get('operator_writes_by_kind')}",
                ),
                (
                    "rollout: writes by actor",
                    json.dumps({k: v for k, v in (ready.get("requests_by_actor") or {}).items()}),
                ),
                ("idle: all", fmt_verbs(idle.get("apiserver_requests_by_verb"))),
                ("idle: by actor (audit)", json.dumps(idle.get("requests_by_actor") or {})),
                ("restart: all", fmt_verbs(restart.get("apiserver_requests_by_verb"))),
                ("restart: by actor (audit)", json.dumps(restart.get("requests_by_actor") or {})),
            ],
            "API requests (apiserver_request_total deltas; audit: operator reads+writes, others' writes only)",
        ),
    ]
    if r.get("kuscia"):
        k = r["kuscia"]
        out += [
            "",
            table(
                [
                    (
                        "objects",
                        f"{k.get('jobs')} KusciaJobs, {k.get('deployments')} KusciaDeployments, poll every {k.get('poll_interval')} s",
                    ),
                    ("submit calls", json.dumps(k.get("submit_calls"))),
                    ("steady calls per interval", json.dumps(k.get("steady_calls_per_interval"))),
                    ("limit per kind", json.dumps(k.get("limit_per_kind"))),
                    ("steady operator writes", k.get("steady_operator_writes")),
                    ("operator peak RSS", f"{k.get('peak_rss_mib')} MiB"),
                ],
                "Kuscia backend",
            ),
        ]
    out += ["", "Targets"]
    for key, (goal, check) in TARGETS.items():
        value = r.get(key)
        verdict = "n/a" if value is None else ("met" if check(r) else "NOT met")
        out.append(f"  {key:<28} {value!s:<40} target {goal:<24} {verdict}")
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="PaddleServices created at once (default 100)")
    p.add_argument("--workers", type=int, default=16, help="operator --workers and the floor's concurrency")
    p.add_argument("--idle-seconds", type=float, default=300.0)
    p.add_argument(
        "--restart-seconds", type=float, default=60.0, help="writes counted this long after a restart"
    )
    p.add_argument("--skip-kuscia", action="store_true")
    p.add_argument(
        "--namespaces",
        type=int,
        default=1,
        help="spread the N objects over this many namespaces (the operator gets one --namespace each)",
    )
    p.add_argument(
        "--floor-runs",
        type=int,
        choices=(0, 1, 2),
        default=2,
        help="floor before (and after) the rollout; 0 skips it (a memory or latency run, no ratio)",
    )
    p.add_argument("--kuscia-n", type=int, default=None, help="KusciaJobs (default min(N, 250))")
    p.add_argument(
        "--kuscia-deployments", type=int, default=None, help="KusciaDeployments (default --kuscia-n)"
    )
    p.add_argument("--kuscia-poll-interval", type=float, default=2.0)
    p.add_argument("--kuscia-window", type=int, default=5, help="steady-state window, in poll intervals")
    p.add_argument("--create-concurrency", type=int, default=32, help="the harness's creates in flight")
    p.add_argument(
        "--knative",
        choices=("real", "sim"),
        default="real",
        help="Knative Serving's real control plane (default), or the simulator (tests/support/knative_sim.py)",
    )
    p.add_argument("--ready-delay", type=float, default=0.3, help="Knative simulator revision ready delay")
    p.add_argument("--sim-workers", type=int, default=4, help="Knative simulator reconciles in flight")
    p.add_argument("--settle-seconds", type=float, default=10.0, help="quiet time before the idle window")
    p.add_argument("--settle-timeout", type=float, default=180.0)
    p.add_argument("--timeout", type=float, default=None, help="rollout deadline (default max(600, 0.6 N) s)")
    p.add_argument("--operator-arg", action="append", default=[], help="extra `paddle-kuscia run` argument")
    p.add_argument(
        "--operator-source",
        type=Path,
        default=ROOT / "operator",
        help="directory holding the paddle_kuscia package to run (A/B a tuning change from a copy)",
    )
    p.add_argument("--py-spy", metavar="FILE", help="record the operator during the rollout (raw stacks)")
    p.add_argument("--out-dir", help="logs and outputs (default a new temporary directory)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="leave the control plane running")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be positive")
    if args.timeout is None:
        args.timeout = max(600.0, 0.6 * args.n)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    try:
        result = asyncio.run(bench.run())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("interrupted; processes stopped and namespaces deleted")
        return 130
    result["args"] = {k: v for k, v in vars(args).items()}
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
