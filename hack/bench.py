#!/usr/bin/env python3
"""Scale benchmark: N PaddleServices created at once against the real local control plane.

    hack/bench.py --n 1000 [--workers 16] [--idle-seconds 300] [--skip-kuscia] [--json FILE] [--keep]

Phases, all in one run and one control plane:
  floor     the operator's Kubernetes client, without the operator, makes the N Knative Service applies and
            N status patches it has to make (same bodies, identity, concurrency), in a namespace it ignores
  rollout   the operator (`paddle-kuscia run`, a subprocess) converges N new PaddleServices; a watcher process
            stamps when each Knative Service appears, each status reaches observedGeneration, each is Ready
            (with --knative none the audit log stamps the operator's apply and first status patch instead,
            and a list checks observedGeneration after the clock stops)
  idle      nothing changes for --idle-seconds; every write the operator makes is counted from the audit log
  restart   the operator restarts over the N converged objects; its writes in the first --restart-seconds
  kuscia    --kuscia-n mirrored KusciaJobs (and KusciaDeployments) against the in-process Kuscia emulator;
            Kuscia API calls per poll interval in steady state, per route
It prints figures and never asserts: the targets are compared in the summary, the exit code is 0 whenever
the run completed. Every process it starts is stopped by PID; the bench namespaces are deleted.
The phases live in hack/benchlib/ (a module each; idle and restart share one), the table in report.py there.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests"), str(ROOT / "operator")]

try:
    import aiohttp  # noqa: F401
    import httpx  # noqa: F401
    import kopf  # noqa: F401
    import prometheus_client  # noqa: F401
    import yaml  # noqa: F401
except ImportError:
    import os

    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != venv_python.parents[1].resolve():
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    raise

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

from benchlib.base import log  # noqa: E402
from benchlib.floor import floor  # noqa: E402
from benchlib.harness import Harness  # noqa: E402
from benchlib.idle_restart import idle, restart  # noqa: E402
from benchlib.kuscia import kuscia  # noqa: E402
from benchlib.report import report  # noqa: E402
from benchlib.rollout import rollout, update_ratio  # noqa: E402


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The phases in their order, in one control plane, torn down however the run ends."""
    h = Harness(args)
    async with h.running():
        if args.floor_runs > 0:
            await floor(h, 1)
        op = await rollout(h)
        await idle(h, op)
        await restart(h, op)
        if args.floor_runs > 1:
            await floor(h, 2)
            update_ratio(h.result)
        if not args.skip_kuscia:
            await kuscia(h)
    return h.finish()


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
    p.add_argument(
        "--observer",
        choices=("auto", "watch", "audit"),
        default="auto",
        help="how the rollout sees each object converge: a watcher process, or the audit log, which adds no "
        "watch stream to the API server's work but sees no Ready (auto: audit with --knative none)",
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
        choices=("real", "sim", "none"),
        default="real",
        help="Knative Serving's real control plane (default), the simulator (tests/support/knative_sim.py), "
        "or none: only Knative's CRDs, so a run measures the operator's own cost per object",
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
    if args.observer == "auto":
        args.observer = "audit" if args.knative == "none" else "watch"
    if args.observer == "audit" and args.knative != "none":
        p.error("--observer audit sees no Ready: it needs --knative none")
    if args.timeout is None:
        args.timeout = max(600.0, 0.6 * args.n)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(run(args))
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
