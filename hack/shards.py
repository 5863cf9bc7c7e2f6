#!/usr/bin/env python3
"""Sharding by namespace, measured: N PaddleServices spread over M namespaces, served once by one operator
watching all M and once by K operators, each watching M/K of them with a Lease of its own
(`--leader-elect --leader-election-name shard-I`), as docs/performance.md describes.

    .venv/bin/python hack/shards.py --n 1000 --namespaces 10 --shards 2

No Knative controller runs (only its CRDs, as `hack/bench.py --knative none`): the figures are the operator's
and the API server's. For each setting it prints the time from the first create to every object converged
(Knative Service applied and `observedGeneration` written), the operators' CPU seconds and peak RSS, the API
server's CPU seconds and requests by verb in that window, and, after every operator is restarted at once over
the converged objects, the time until each reports itself synced and the API server's work for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests"), str(ROOT / "operator")]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from benchlib import apiserver, proc  # noqa: E402
from benchlib.base import log, rnd  # noqa: E402
from benchlib.harness import Harness  # noqa: E402
from benchlib.objects import NAMESPACES, create_all, spread  # noqa: E402
from benchlib.processes import Operator, Watch  # noqa: E402
from paddle_kuscia.adapters.kube import PADDLESERVICES, KubeClient  # noqa: E402
from support.control_plane import ControlPlane  # noqa: E402


async def wait(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


def apiserver_pid(plane: ControlPlane) -> int:
    return int((plane.run_dir / "kube-apiserver.pid").read_text().strip())


async def api_requests(admin: KubeClient) -> Any:
    return apiserver.request_totals(
        (await admin.request_raw("GET", "/metrics", accept="text/plain")).decode()
    )


async def setting(
    plane: ControlPlane, admin: KubeClient, out: Path, namespaces: list[str], shards: int, n: int
) -> dict[str, Any]:
    """Create N objects in `namespaces`, served by `shards` operators; converge, then restart them all."""
    for ns in namespaces:
        await admin.create(NAMESPACES, {"metadata": {"name": ns}})
    groups = [namespaces[i::shards] for i in range(shards)]

    def start(tag: str) -> list[Operator]:
        ops = []
        for i, group in enumerate(groups):
            args = [arg for ns in group for arg in ("--namespace", ns)]
            args += ["--leader-elect", "--leader-election-name", f"shard-{uuid.uuid4().hex[:6]}-{i}"]
            op = Operator(plane, out / f"operator-{shards}-{tag}-{i}.log", args, ROOT / "operator")
            op.start()
            ops.append(op)
        return ops

    async def live(ops: list[Operator]) -> None:
        for op in ops:
            await op.wait_live()

    api = apiserver_pid(plane)
    watch = Watch()  # stamps each object's milestones from its own watch streams
    await watch.start(plane.admin_kubeconfig, namespaces, out / f"watcher-{shards}.log")
    ops = start("rollout")
    await live(ops)
    await asyncio.sleep(3.0)  # kopf opens its watch streams after the liveness endpoint
    cpu0, api0, req0 = [op.cpu() for op in ops], proc.cpu_seconds(api), await api_requests(admin)
    t0 = time.monotonic()
    names = set(await create_all(admin, PADDLESERVICES, spread(n, namespaces), 32))

    async def converged() -> bool:  # its Knative Service applied and its generation observed
        return all(name in watch.ksvc and name in watch.gen for name in names)

    try:
        took = await wait(converged, 1800, "every object converged")
    finally:
        await watch.stop()
    cpu1, api1, req1 = [op.cpu() for op in ops], proc.cpu_seconds(api), await api_requests(admin)
    result: dict[str, Any] = {
        "shards": shards,
        "namespaces_per_shard": [len(g) for g in groups],
        "converged_seconds": rnd(time.monotonic() - t0),
        "wait_seconds": rnd(took),
        "operator_cpu_seconds": [rnd(b - a) for a, b in zip(cpu0, cpu1, strict=True)],
        "operator_peak_rss_mib": [rnd(op.peak_rss_mib(), 1) for op in ops],
        "apiserver_cpu_seconds": rnd(api1 - api0),
        "apiserver_requests": apiserver.by_verb(apiserver.subtract(req1, req0)),
    }
    for op in ops:
        op.stop()

    # A restart of every shard at once over the converged objects: lists, watches and nothing to write.
    api0, req0, t0 = proc.cpu_seconds(api), await api_requests(admin), time.monotonic()
    ops = start("restart")
    try:
        await live(ops)
        synced: list[float] = []
        for op in ops:

            async def reports_synced(op: Operator = op) -> bool:
                metrics = await op.metrics()
                return bool(metrics["reconciles"])  # its queues ran: the caches were primed first

            await wait(reports_synced, 300, "a restarted shard reconciling")
            synced.append(time.monotonic() - t0)
        await asyncio.sleep(10.0)  # let every restarted shard go through its queue
        result["restart"] = {
            "to_first_reconcile_seconds": [rnd(s) for s in synced],
            "operator_cpu_seconds": [rnd(op.cpu()) for op in ops],
            "operator_peak_rss_mib": [rnd(op.peak_rss_mib(), 1) for op in ops],
            "apiserver_cpu_seconds": rnd(proc.cpu_seconds(api) - api0),
            "apiserver_requests": apiserver.by_verb(apiserver.subtract(await api_requests(admin), req0)),
        }
    finally:
        for op in ops:
            op.stop()
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("operators", lambda r: r["shards"]),
        ("namespaces per operator", lambda r: r["namespaces_per_shard"]),
        ("first create -> all converged", lambda r: f"{r['converged_seconds']} s"),
        ("operator CPU seconds (each)", lambda r: r["operator_cpu_seconds"]),
        ("operator CPU seconds (sum)", lambda r: rnd(sum(r["operator_cpu_seconds"]))),
        ("operator peak RSS MiB (each)", lambda r: r["operator_peak_rss_mib"]),
        ("API server CPU seconds", lambda r: r["apiserver_cpu_seconds"]),
        ("API server requests", lambda r: r["apiserver_requests"]),
        ("restart: to first reconcile", lambda r: r["restart"]["to_first_reconcile_seconds"]),
        ("restart: operator CPU (each)", lambda r: r["restart"]["operator_cpu_seconds"]),
        ("restart: API server CPU seconds", lambda r: r["restart"]["apiserver_cpu_seconds"]),
        ("restart: API server requests", lambda r: r["restart"]["apiserver_requests"]),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(
        f"{label:<{width}}  " + "  |  ".join(str(value(r)) for r in results) for label, value in rows
    )


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    plane = ControlPlane.start(Path(tempfile.mkdtemp(prefix="pk-shards-")), knative=False)
    out = plane.run_dir / "shards"
    out.mkdir(exist_ok=True)
    admin = Harness.client(plane.admin_kubeconfig, 32)
    try:
        base = ROOT / "manifests" / "base"
        plane.kubectl(
            "apply", "-f", str(base / "clusterrole.yaml"), "-f", str(base / "clusterrolebinding.yaml")
        )
        results = []
        for shards in (1, args.shards):
            namespaces = [f"shard{shards}-{i:02d}" for i in range(args.namespaces)]
            log(f"{shards} operator(s) over {args.namespaces} namespaces, N={args.n}")
            results.append(await setting(plane, admin, out, namespaces, shards, args.n))
        return results
    finally:
        await admin.aclose()
        plane.stop()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    results = asyncio.run(run(args))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
