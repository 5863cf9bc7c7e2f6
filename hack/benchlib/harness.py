"""One run's state and the measurements every phase takes: marks before and after, and the window between.

The phases (`floor`, `rollout`, `idle_restart`, `kuscia`) read and extend a `Harness`; `running()` sets the
control plane up and, however the run ends, stops every process it started and deletes its namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from paddle_kuscia.adapters.kube import KubeClient, KubeError
from support.control_plane import ControlPlane

from . import apiserver, proc
from .base import ROOT, log, rnd
from .objects import NAMESPACES
from .processes import Operator, Simulator, Watch
from .provenance import versions

CONTROL_PLANE_PROCESSES = (
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "knative-controller",
    "knative-webhook",
    "knative-autoscaler",
)


class Harness:
    """One run: its arguments, namespaces, control plane, admin client, processes and result dict."""

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
        self.admin: KubeClient | None = None
        self.sim: Simulator | None = None
        self.operators: list[Operator] = []
        self.watch = Watch()
        self.namespaces: list[str] = []
        self.audit: apiserver.AuditLog | None = None
        self.cpu: proc.CpuMeter | None = None
        self.background: list[asyncio.Task[None]] = []
        self.signals = 0

    # -- measurements ----------------------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Any]:
        """The API server's request and watch-event counters, from one read of /metrics."""
        assert self.admin is not None
        text = (await self.admin.request_raw("GET", "/metrics")).decode()
        return {"requests": apiserver.request_totals(text), "watch": apiserver.watch_events(text)}

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
        delta = apiserver.subtract(b["metrics"]["requests"], a["metrics"]["requests"])
        audit = apiserver.summarize(self.audit.events(a["audit"], b["audit"]), keep or (lambda e: True))
        cpu = proc.CpuMeter.delta(a["cpu"], b["cpu"])
        return {
            "seconds": rnd(b["t"] - a["t"]),
            "other_load_cores": rnd(cpu["other"] / max(b["t"] - a["t"], 1e-6)),
            "apiserver_requests_by_verb": apiserver.by_verb(delta),
            "apiserver_requests_total": sum(delta.values()),
            "watch_events": apiserver.watch_summary(a["metrics"]["watch"], b["metrics"]["watch"]),
            "cpu_seconds": cpu,
            **audit,
        }

    def track_cpu(self) -> None:
        """(Re)build the CPU meter from the processes alive now."""
        assert self.plane is not None
        groups: dict[str, list[tuple[int, bool]]] = {}
        for name in CONTROL_PLANE_PROCESSES:
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

    # -- setup -----------------------------------------------------------------------------------------------

    async def setup(self) -> None:
        log(f"starting or reusing the control plane (logs and outputs in {self.out_dir})")
        # The simulator replaces Knative's controllers: never both.
        self.plane = ControlPlane.start(knative=self.args.knative == "real")
        self.result["control_plane"] = {"run_dir": str(self.plane.run_dir), "owned": self.plane.owned}
        base = ROOT / "manifests" / "base"
        self.plane.kubectl(
            "apply", "-f", str(base / "clusterrole.yaml"), "-f", str(base / "clusterrolebinding.yaml")
        )
        self.audit = apiserver.AuditLog(self.plane.audit_log)
        self.admin = self.client(self.plane.admin_kubeconfig, max(self.args.create_concurrency, 8))
        self.result["knative"] = self.args.knative
        if self.args.knative == "sim":
            if (self.plane.run_dir / "knative-controller.pid").exists():
                raise RuntimeError(
                    "a control plane with Knative's controllers is running; --knative sim needs one without"
                )
            self.sim = Simulator(self.plane, self.out_dir, self.args.ready_delay, self.args.sim_workers)
            self.result["knative_sim"] = await self.sim.start(self.admin)
            log(f"Knative simulator {self.result['knative_sim']}")
        elif self.args.knative == "none":
            if (self.plane.run_dir / "knative-controller.pid").exists():
                raise RuntimeError(
                    "a control plane with Knative's controllers is running; --knative none needs one without"
                )
            log("no Knative controller: Knative Services are stored and never become Ready")
        else:
            log("Knative Serving's real controller, webhook and autoscaler (hack/knative.sh)")
        await self.create_namespaces(self.rollout_ns + ([] if self.args.skip_kuscia else [self.kuscia_ns]))
        self.result["versions"] = versions(self.plane, self.args.operator_source.resolve())
        self.track_cpu()

    @staticmethod
    def client(kubeconfig: Path, connections: int, agent: str = "paddle-kuscia-bench") -> KubeClient:
        """The operator's own client under a bench user agent (the audit log's `bench` actor)."""
        return KubeClient(kubeconfig=str(kubeconfig), max_connections=connections, timeout=60.0, agent=agent)

    async def create_namespaces(self, names: list[str]) -> None:
        assert self.admin is not None
        for ns in names:
            await self.admin.create(NAMESPACES, {"metadata": {"name": ns}})
            self.namespaces.append(ns)

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

    # -- teardown --------------------------------------------------------------------------------------------

    def stop_processes(self) -> None:
        """Stop, by PID, every process this run started (synchronous: also usable from a signal handler)."""
        self.watch.kill()
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
                with contextlib.suppress(KubeError, asyncio.TimeoutError):
                    await asyncio.wait_for(self.admin.request("DELETE", NAMESPACES.path(name=ns)), 15)
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

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Signals cancel the run; setup first, teardown whatever happened."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, main)
        try:
            await self.setup()
            yield
        finally:
            await self.teardown()

    def finish(self) -> dict[str, Any]:
        """The result, with every figure the targets read present (None when its phase did not run)."""
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
