"""The floor: the operator's unavoidable API work, N Knative Service applies and N status patches, done as fast
as the API server accepts them from one Python process.

It runs the operator's own client (`KubeClient.apply` and `patch_status`, the same calls the reconciler makes),
with the operator's identity, bodies and concurrency, but none of its reconciling: no watch, cache, queue or
status computation during the timed part. The operator's rollout is compared with it (`ratio`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from paddle_kuscia.adapters.kube import KNATIVE_SERVICES, PADDLESERVICES
from paddle_kuscia.builders.compare import digest
from paddle_kuscia.builders.knative import FIELD_MANAGER, Owner, build_knative_service
from paddle_kuscia.models.paddleservice import PaddleService
from paddle_kuscia.reconcile.knative_serving import APPLIED_DIGEST
from paddle_kuscia.status.knative import knative_status

from . import apiserver, proc
from .base import log, ms, percentile, rnd
from .harness import Harness
from .objects import create_all, spread

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


async def floor(h: Harness, run: int) -> None:
    """Run once before the rollout and once after the restart, in namespaces of their own, so load from
    elsewhere on the machine shows up as a spread between the two rather than as a silent bias.
    """
    assert h.admin is not None and h.plane is not None
    a = h.args
    k = a.namespaces
    namespaces = [f"{h.floor_ns}-{run}-{i}" for i in range(k)] if k > 1 else [f"{h.floor_ns}-{run}"]
    await h.create_namespaces(namespaces)
    log(f"floor {run}: creating {h.n} PaddleServices in {namespaces[0]}.. (not watched by the operator)")
    # The creates are outside the floor's clock, but the rollout has to do them too: measured apart, so the
    # report can say how much of the rollout's work they are.
    assert h.cpu is not None
    cpu_before = h.cpu.sample()
    start = time.monotonic()
    created = await create_all(h.admin, PADDLESERVICES, spread(h.n, namespaces), a.create_concurrency)
    create_seconds = time.monotonic() - start
    create_cpu = proc.CpuMeter.delta(cpu_before, h.cpu.sample())

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
        work.append((meta["namespace"], name, desired, status, meta["resourceVersion"]))

    client = h.client(h.plane.operator_kubeconfig, a.workers, agent="paddle-kuscia-bench-floor")
    apply_lat: list[float] = []
    status_lat: list[float] = []
    todo = list(reversed(work))

    async def worker() -> None:
        while todo:
            namespace, name, desired, status, resource_version = todo.pop()
            t = time.monotonic()
            await client.apply(KNATIVE_SERVICES, desired, field_manager=FIELD_MANAGER)
            t2 = time.monotonic()
            await client.patch_status(
                PADDLESERVICES, namespace, name, status, resource_version=resource_version
            )
            apply_lat.append(t2 - t)
            status_lat.append(time.monotonic() - t2)

    log(f"floor {run}: {h.n} Knative Service applies + {h.n} status patches, {a.workers} in flight")
    m0 = await h.mark()
    started = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(a.workers)))
    finally:
        await client.aclose()
    seconds = time.monotonic() - started
    m1 = await h.mark(end=True)
    figures: dict[str, Any] = {
        "namespaces": namespaces,
        "create_seconds": rnd(create_seconds),
        "create_cpu_seconds": create_cpu,
        "seconds": rnd(seconds),
        "requests_per_second": rnd(2 * h.n / seconds, 1),
        "apply_p50_ms": ms(percentile(apply_lat, 50)),
        "apply_p99_ms": ms(percentile(apply_lat, 99)),
        "status_p50_ms": ms(percentile(status_lat, 50)),
        "status_p99_ms": ms(percentile(status_lat, 99)),
        "cpu_seconds": proc.CpuMeter.delta(m0["cpu"], m1["cpu"]),
        "watch_events": apiserver.watch_summary(m0["metrics"]["watch"], m1["metrics"]["watch"]),
    }
    figures["other_load_cores"] = rnd(figures["cpu_seconds"]["other"] / max(m1["t"] - m0["t"], 1e-6))
    runs = h.result.setdefault("floor_runs", [])
    runs.append(figures)
    averaged = ("create_seconds", "seconds", "requests_per_second", "apply_p50_ms", "apply_p99_ms")
    averaged += ("status_p50_ms", "status_p99_ms")
    h.result["floor"] = {k: rnd(sum(r[k] for r in runs) / len(runs)) for k in averaged}
    h.result["floor_seconds"] = h.result["floor"]["seconds"]
    h.result["floor_seconds_runs"] = [r["seconds"] for r in runs]
    figures["knative_ready_seconds"] = None
    if a.knative != "none":
        log(f"floor {run}: {seconds:.2f}s; waiting for Knative to finish the floor's Knative Services")
        if await wait_knative_ready(h, namespaces, timeout=a.timeout):
            figures["knative_ready_seconds"] = rnd(time.monotonic() - m1["t"])


async def wait_knative_ready(h: Harness, namespaces: list[str], timeout: float) -> bool:
    """Poll until every Knative Service in `namespaces` is Ready (Knative has caught up).

    Reads the server-side table (name and printer columns, no objects): a few hundred bytes per row.
    """
    assert h.admin is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for namespace in namespaces:
            body = await h.admin.request(
                "GET", KNATIVE_SERVICES.path(namespace), params={"includeObject": "None"}, accept=TABLE
            )
            column = [c["name"] for c in body.get("columnDefinitions") or []].index("Ready")
            ready += sum(1 for r in body.get("rows") or [] if r["cells"][column] == "True")
        if ready >= h.n:
            return True
        await asyncio.sleep(5.0)
    log(f"warning: Knative Services in {namespaces[0]}.. not all Ready after {timeout:.0f}s")
    return False
