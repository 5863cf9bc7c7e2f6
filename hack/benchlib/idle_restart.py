"""After the rollout: nothing changes for --idle-seconds, then the operator restarts over the converged objects.

Both windows count the operator's writes from the audit log; the targets are zero.
"""

from __future__ import annotations

import asyncio
import time

from .base import log, rnd
from .harness import Harness
from .processes import Operator


async def settle(h: Harness) -> float:
    """Wait until no PaddleService changed for --settle-seconds (revisions scaling to zero may still move)."""
    start = time.monotonic()
    deadline = start + h.args.settle_timeout
    while time.monotonic() < deadline:
        if time.monotonic() - max(h.watch.last_ps_event, start) >= h.args.settle_seconds:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - start


async def idle(h: Harness, op: Operator) -> None:
    settled = await settle(h)
    log(f"idle: settled after {settled:.1f}s; observing {h.args.idle_seconds:.0f}s")
    m0 = await h.mark()
    await asyncio.sleep(h.args.idle_seconds)  # the observation window itself, not a synchronisation
    m1 = await h.mark(end=True)
    win = h.window(m0, m1)
    win["settle_seconds"] = rnd(settled)
    h.result["idle"] = win
    h.result["idle_writes"] = win["operator_writes"]
    h.result["idle_operator_cpu_seconds"] = win["cpu_seconds"].get(h.operator_cpu_key(op))


async def restart(h: Harness, op: Operator) -> None:
    r = h.result
    r["rollout_peak_rss_mib"] = rnd(op.peak_rss_mib(), 1)
    r["rollout_rss_mib_before_restart"] = rnd(op.rss_mib(), 1)
    r["rollout_rss_mib_timeline"] = op.rss_timeline(step=max(2.0, h.n / 250))
    op.stop()
    log("restart: operator stopped; starting a new one over the converged objects")
    m0 = await h.mark()
    new = await h.start_operator(h.rollout_ns, "restart")
    live = time.monotonic() - new.started
    synced = await reconciled_all(new, h.n, timeout=max(h.args.restart_seconds, 600.0))
    await asyncio.sleep(max(0.0, h.args.restart_seconds - (time.monotonic() - new.started)))
    m1 = await h.mark(end=True)
    win = h.window(m0, m1)
    key = h.operator_cpu_key(new)
    win["liveness_seconds"] = rnd(live)
    win["synced_seconds"] = rnd(synced) if synced is not None else None
    win["operator_cpu_seconds"] = rnd(m1["cpu"].get(key, 0.0))
    win["peak_rss_mib"] = rnd(new.peak_rss_mib(), 1)
    win["rss_mib_at_end"] = rnd(new.rss_mib(), 1)
    win["rss_mib_timeline"] = new.rss_timeline(step=1.0)
    win["operator_metrics"] = await new.metrics()
    r["restart"] = win
    r["restart_writes"] = win["operator_writes"]
    r["peak_rss_mib"] = max(r["rollout_peak_rss_mib"], win["peak_rss_mib"])
    new.stop()


async def reconciled_all(op: Operator, n: int, timeout: float) -> float | None:
    """Seconds from the operator's start until it has reconciled every one of the N PaddleServices once (its
    caches primed, its queue through them): restart-to-synced. None when not within `timeout`."""
    while time.monotonic() - op.started < timeout:
        counts = (await op.metrics())["reconciles"]
        if sum(v for k, v in counts.items() if k.startswith("PaddleService ")) >= n:
            return time.monotonic() - op.started
        await asyncio.sleep(0.5)
    return None
