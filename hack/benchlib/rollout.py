"""The rollout: the operator converges N new PaddleServices; the watcher (or, with --observer audit, the audit
log) stamps each object's milestones."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import subprocess
import time
from typing import Any

from paddle_kuscia.adapters.kube import PADDLESERVICES

from . import apiserver
from .base import log, ms, percentile, rnd
from .harness import Harness
from .objects import create_all, spread
from .processes import Operator, start_profiler


async def rollout(h: Harness) -> Operator:
    assert h.admin is not None and h.plane is not None
    a = h.args
    by_audit = a.observer == "audit"
    if not by_audit:
        await h.watch.start(h.plane.admin_kubeconfig, h.rollout_ns, h.out_dir / "watcher.log")
    op = await h.start_operator(h.rollout_ns, "rollout")
    await asyncio.sleep(3.0)  # kopf opens its watch streams after the liveness endpoint
    h.result["operator_startup"] = {"cpu_seconds": rnd(op.cpu()), "rss_mib": rnd(op.rss_mib(), 1)}
    profiler = start_profiler(op, a.py_spy, h.out_dir)

    bodies = spread(h.n, h.rollout_ns)
    log(f"rollout: creating {h.n} PaddleServices in {h.rollout_ns[0]}.. ({len(h.rollout_ns)} namespaces)")
    m0 = await h.mark()
    t0 = time.monotonic()
    created = await create_all(h.admin, PADDLESERVICES, bodies, a.create_concurrency)
    created_at = {name: t for name, (t, _) in created.items()}
    create_seconds = max(created_at.values()) - t0

    deadline = t0 + a.timeout
    names = set(created_at)
    watch = h.watch
    ksvc_at, gen_at, ready_at_by_name = watch.ksvc, watch.gen, watch.ready
    seen = None
    if by_audit:
        assert h.audit is not None
        seen = apiserver.OperatorMilestones(h.audit.path, set(h.rollout_ns), m0["audit"])

    def converged() -> int:
        if seen is not None:
            seen.poll()
            return sum(1 for n in names if n in seen.ksvc and n in seen.status)
        return sum(1 for n in names if n in watch.ksvc and n in watch.gen)

    while converged() < h.n and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    m_conv = await h.mark(end=True)
    if seen is not None:
        wall_minus_monotonic = time.time() - time.monotonic()
        ksvc_at = {n: t.timestamp() - wall_minus_monotonic for n, t in seen.ksvc.items() if n in names}
        gen_at = {n: t.timestamp() - wall_minus_monotonic for n, t in seen.status.items() if n in names}
        for n in names - await observed_generation(h):
            gen_at.pop(n, None)  # the first status patch did not leave observedGeneration at generation
        # The watcher still serves the idle phase (quiet PaddleServices); it starts after the clock stopped.
        await h.watch.start(h.plane.admin_kubeconfig, h.rollout_ns, h.out_dir / "watcher.log")
        h.track_cpu()
    if a.knative == "none":  # nothing becomes Ready: the rollout ends at converged
        m_ready = m_conv
    else:
        while len(names & set(watch.ready)) < h.n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        m_ready = await h.mark(end=True)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.wait(60)

    r = h.result
    done = [n for n in names if n in ksvc_at and n in gen_at]
    converge_at = [max(ksvc_at[n], gen_at[n]) for n in done]
    ready_at = [ready_at_by_name[n] for n in names if n in ready_at_by_name]
    complete = len(done) == h.n
    r["converged"] = len(done)
    r["ready"] = len(ready_at)
    r["create_seconds"] = rnd(create_seconds)
    r["converge_seconds"] = rnd(max(converge_at) - t0) if complete else None
    r["ready_seconds"] = rnd(max(ready_at) - t0) if len(ready_at) == h.n else None
    update_ratio(r)
    floor = r.get("floor_seconds")

    r["observer"] = a.observer
    to_ksvc = [ksvc_at[n] - created_at[n] for n in names if n in ksvc_at]
    to_gen = [gen_at[n] - created_at[n] for n in names if n in gen_at]
    to_ready = [ready_at_by_name[n] - created_at[n] for n in names if n in ready_at_by_name]
    r["p50_ms"] = ms(percentile(to_ksvc, 50))
    r["p99_ms"] = ms(percentile(to_ksvc, 99))
    r["latency_ms"] = {
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
        "create_to_ksvc_audit": audit_latency(h, m0["audit"], m_conv["audit"]),
    }
    key = h.operator_cpu_key(op)
    r["rollout"] = {
        "to_converged": h.window(m0, m_conv),
        "to_ready": h.window(m0, m_ready),
        "operator_metrics": await op.metrics(),
    }
    r["cpu_seconds"] = rnd(m_ready["cpu"][key] - m0["cpu"][key])
    r["cpu_seconds_to_converged"] = rnd(m_conv["cpu"][key] - m0["cpu"][key])
    per_1000 = 1000 / h.n
    r["cpu_seconds_per_1000"] = rnd(r["cpu_seconds"] * per_1000)
    r["cpu_seconds_to_converged_per_1000"] = rnd(r["cpu_seconds_to_converged"] * per_1000)
    writes = r["rollout"]["to_ready"]["operator_writes_by_kind"]
    status_patches = writes.get("patch paddleservices/status", 0)
    r["status_writes_per_object"] = rnd(status_patches / h.n)
    r["writes_per_object"] = rnd((status_patches + writes.get("patch services", 0)) / h.n)
    log(
        f"rollout: converged {len(done)}/{h.n} in {r['converge_seconds']}s, "
        f"Ready {len(ready_at)}/{h.n} in {r['ready_seconds']}s (floor {floor}s)"
    )
    return op


async def observed_generation(h: Harness) -> set[str]:
    """The rollout's PaddleServices whose status has observedGeneration at their generation, listed in pages."""
    assert h.admin is not None
    out: set[str] = set()
    for namespace in h.rollout_ns:
        params = {"limit": "500"}
        while True:
            page = await h.admin.request("GET", PADDLESERVICES.path(namespace), params=params)
            for obj in page.get("items") or []:
                meta = obj["metadata"]
                if (obj.get("status") or {}).get("observedGeneration") == meta.get("generation"):
                    out.add(meta["name"])
            if not (cont := (page.get("metadata") or {}).get("continue")):
                break
            params = {"limit": "500", "continue": cont}
    return out


def update_ratio(result: dict[str, Any]) -> None:
    """Operator time over floor time (the floor averaged over its runs so far)."""
    floor = result.get("floor_seconds")
    conv = result.get("converge_seconds")
    creates = (result.get("floor") or {}).get("create_seconds")
    result["ratio"] = rnd(conv / floor) if conv and floor else None
    result["ratio_including_creates"] = (
        rnd(conv / (floor + creates)) if conv and floor and creates is not None else None
    )


def audit_latency(h: Harness, start: int, end: int) -> dict[str, float | None]:
    """Create -> Knative Service from the API server's own microsecond stamps (no client-side lag)."""
    assert h.audit is not None
    created: dict[str, dt.datetime] = {}
    applied = apiserver.OperatorMilestones(h.audit.path, set(h.rollout_ns), start)
    for e in h.audit.events(start, end):
        ref = e.get("objectRef") or {}
        if (
            e.get("stage") == "ResponseComplete"
            and ref.get("namespace") in h.rollout_ns
            and ref.get("resource") == "paddleservices"
            and e["verb"] == "create"
            and apiserver.actor(e) == "bench"
        ):
            created[ref.get("name") or ""] = apiserver.stamp(e, "stageTimestamp")
        else:
            applied.take(e)
    lat = [(t - created[n]).total_seconds() for n, t in applied.ksvc.items() if n in created]
    return {"p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)), "samples": len(lat)}
