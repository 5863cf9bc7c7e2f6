"""The processes a run starts: the operator, the Knative simulator (--knative sim), the watcher, py-spy.

Each is stopped by its PID; the operator and the simulator run in sessions of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from paddle_kuscia.adapters.kube import KubeClient, KubeError
from paddle_kuscia.runtime.leader import LEASES
from support.control_plane import ControlPlane

from . import proc
from .base import PYTHON, ROOT, log
from .provenance import operator_tree_digest

SIM_LEASE = LEASES.path("kube-system", "knative-sim.paddle-kuscia.io")


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

    async def start(self, admin: KubeClient) -> str:
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
    async def _holder(admin: KubeClient) -> str | None:
        try:
            lease = await admin.request("GET", SIM_LEASE)
        except KubeError:
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
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "hack"), str(ROOT / "operator")]))
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

    def kill(self) -> None:
        """Synchronous, for a signal handler."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


def start_profiler(op: Operator, output: str | None, out_dir: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording the operator into `output` (raw stacks), when asked for and installed."""
    if not output:
        return None
    spy = ROOT / ".venv" / "bin" / "py-spy"
    if not spy.exists():
        log("warning: --py-spy given but .venv/bin/py-spy is missing (pip install py-spy)")
        return None
    out = Path(output).resolve()
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
        stderr=(out_dir / "py-spy.log").open("ab"),
    )
