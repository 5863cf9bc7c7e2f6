"""The Kuscia backend: mirrored KusciaJobs and KusciaDeployments against the in-process Kuscia emulator, and the
Kuscia API calls per poll interval once every job is running (the target: ceil(N/100) per kind)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from paddle_kuscia.adapters.kube import KUSCIA_DEPLOYMENTS, KUSCIA_JOBS, KubeError

from .base import log, rnd
from .harness import Harness
from .objects import create_all, kuscia_deployment, kuscia_job

MERGE = "application/merge-patch+json"


async def kuscia(h: Harness) -> None:
    from support.kuscia_double import KusciaDoubleThread

    assert h.admin is not None
    a = h.args
    jobs = a.kuscia_n if a.kuscia_n is not None else min(h.n, 250)
    deployments = a.kuscia_deployments if a.kuscia_deployments is not None else jobs
    interval = a.kuscia_poll_interval
    out: dict[str, Any] = {"jobs": jobs, "deployments": deployments, "poll_interval": interval}
    h.result["kuscia"] = out
    # One emulated step per hour: every job stays unfinished (and polled) unless we move time on.
    with KusciaDoubleThread(h.out_dir / "kuscia-pki", step_seconds=3600, seed=7) as emulator:
        op = await h.start_operator(
            [h.kuscia_ns],
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
            log(f"kuscia: creating {jobs} KusciaJobs and {deployments} KusciaDeployments in {h.kuscia_ns}")
            t0 = time.monotonic()
            await create_all(
                h.admin,
                KUSCIA_JOBS,
                [kuscia_job(f"job-{i:05d}", h.kuscia_ns) for i in range(jobs)],
                a.create_concurrency,
            )
            await create_all(
                h.admin,
                KUSCIA_DEPLOYMENTS,
                [kuscia_deployment(f"kd-{i:05d}", h.kuscia_ns) for i in range(deployments)],
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
                items = (await h.admin.request("GET", KUSCIA_JOBS.path(h.kuscia_ns))).get("items") or []
                if len(items) == jobs and all(
                    (i.get("status") or {}).get("phase") == "Running" for i in items
                ):
                    break
                await asyncio.sleep(1.0)
            out["running_seconds"] = rnd(time.monotonic() - t0)
            await asyncio.sleep(2 * interval)  # the status round that followed the step has been written
            window = a.kuscia_window * interval
            m0 = await h.mark()
            emulator.reset_stats()
            await asyncio.sleep(window)  # the measurement window
            stats = emulator.stats()
            m1 = await h.mark(end=True)
            out["steady_calls"] = stats
            per = {route: round(n / a.kuscia_window, 2) for route, n in sorted(stats.items())}
            out["steady_calls_per_interval"] = per
            steady = h.window(m0, m1)
            out["steady_operator_writes"] = steady["operator_writes"]
            out["steady_operator_cpu_seconds"] = steady["cpu_seconds"].get(h.operator_cpu_key(op))
            out["peak_rss_mib"] = rnd(op.peak_rss_mib(), 1)
            out["operator_metrics"] = await op.metrics()
            h.result["kuscia_calls_per_interval"] = {
                "job": per.get("/api/v1/job/status/batchQuery", 0.0),
                "serving": per.get("/api/v1/serving/status/batchQuery", 0.0),
                **{r: v for r, v in per.items() if "batchQuery" not in r},
            }
            h.result["kuscia_call_limit"] = max(math.ceil(jobs / 100), math.ceil(deployments / 100))
            out["limit_per_kind"] = {
                "job": math.ceil(jobs / 100),
                "serving": math.ceil(deployments / 100),
            }
            log(f"kuscia: steady calls per {interval:g}s interval {per}")
        finally:
            op.stop()
            if h.plane is not None and (not h.plane.owned or a.keep):
                await release_finalizers(h)


async def release_finalizers(h: Harness) -> None:
    """The stopped operator cannot release its finalizers; drop them so the namespace can go."""
    assert h.admin is not None
    for resource in (KUSCIA_JOBS, KUSCIA_DEPLOYMENTS):
        items = (await h.admin.request("GET", resource.path(h.kuscia_ns))).get("items") or []
        for item in items:
            if item["metadata"].get("finalizers"):
                with contextlib.suppress(KubeError):
                    await h.admin.request(
                        "PATCH",
                        resource.path(h.kuscia_ns, item["metadata"]["name"]),
                        body={"metadata": {"finalizers": None}},
                        content_type=MERGE,
                    )
