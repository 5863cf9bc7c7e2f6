"""The printed report: the result dict of a run as tables, and each figure against its target.

Pure formatting: it reads the dict `hack/bench.py --json` writes and returns text.
"""

from __future__ import annotations

import json
from typing import Any

from .base import ROOT


def rss_budget_mib(n: int) -> int:
    """The peak-RSS budget for a fleet of n objects: 200 MiB up to 5000 objects, 300 MiB up to 10 000."""
    return 200 if n <= 5000 else 300


TARGETS = {
    "ratio": ("≤ 1.5", lambda r: r["ratio"] is not None and r["ratio"] <= 1.5),
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
        "≤ 200 MiB to N=5000, ≤ 300 to 10 000",
        lambda r: r["peak_rss_mib"] is not None and r["peak_rss_mib"] <= rss_budget_mib(r["n"]),
    ),
}


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


def fmt_watch(d: dict[str, Any] | None) -> str:
    """Watch events the API server sent in a window (one per watcher), their bytes, and the events by kind."""
    if not d:
        return "-"
    # Every watcher gets a bookmark a minute, so every kind shows up; name only the kinds that carry 1 %.
    big = {k: n for k, n in d["events_by_kind"].items() if n >= max(10, d["events"] / 100)}
    if rest := d["events"] - sum(big.values()):
        big["other kinds"] = rest
    return f"{d['events']} events, {d['bytes'] / 2**20:.1f} MiB  {json.dumps(big)}"


def work_ratios(r: dict[str, Any]) -> str:
    """Machine CPU of the rollout against the floor's (mean over floor runs). When both saturate the cores,
    their times stand in this ratio; without the operator's own CPU, and against the floor with its creates,
    it says how much of the time ratio is the operator's."""
    runs = [run for run in r.get("floor_runs") or [] if run.get("cpu_seconds")]
    rollout = ((r.get("rollout") or {}).get("to_converged") or {}).get("cpu_seconds") or {}
    if not runs or not rollout:
        return "None"
    floor = sum(run["cpu_seconds"]["machine"] for run in runs) / len(runs)
    creates = sum((run.get("create_cpu_seconds") or {}).get("machine", 0.0) for run in runs) / len(runs)
    operator = sum(v for k, v in rollout.items() if k.startswith("operator"))
    text = f"{rollout['machine'] / floor:.2f}  (without the operator {(rollout['machine'] - operator) / floor:.2f}"
    if creates:
        text += f"; against the floor with its creates {rollout['machine'] / (floor + creates):.2f}"
    return text + ")"


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
        + {
            "sim": "the simulator (tests/support/knative_sim.py)",
            "none": "no controller: Knative Services are only stored, nothing becomes Ready (cost per object)",
        }.get(
            r.get("knative") or "", "Knative Serving's real controller, webhook and autoscaler; pods on kwok"
        ),
        f"versions: python {v.get('python')}  kopf {v.get('kopf')}  httpx {v.get('httpx')}  kube-apiserver "
        f"{v.get('kube_apiserver')}  etcd {v.get('etcd')}  git {v.get('git_commit')} "
        f"(+{v.get('operator_dirty_files')} dirty operator files, tree {v.get('operator_tree_sha256')})",
    ]
    if v.get("operator_source") != str(ROOT / "operator"):
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
                ("machine CPU, rollout / floor", work_ratios(r)),
                (
                    "create -> ksvc p50 / p99 "
                    + ("(audit, from the bench's create)" if r.get("observer") == "audit" else "(watch)"),
                    f"{r.get('p50_ms')} / {r.get('p99_ms')} ms",
                ),
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
                    "restart: every object reconciled",
                    f"{restart.get('synced_seconds')} s after the new operator started "
                    f"(live after {restart.get('liveness_seconds')} s)",
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
                    row
                    for i, run in enumerate(r.get("floor_runs") or [])
                    for row in (
                        (f"floor run {i + 1} creates", fmt_cpu(run.get("create_cpu_seconds"))),
                        (f"floor run {i + 1}", fmt_cpu(run.get("cpu_seconds"))),
                    )
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
        "",
        table(
            [
                *[
                    (f"floor run {i + 1}", fmt_watch(run.get("watch_events")))
                    for i, run in enumerate(r.get("floor_runs") or [])
                ],
                ("rollout to converged", fmt_watch(conv.get("watch_events"))),
                ("rollout to Ready", fmt_watch(ready.get("watch_events"))),
                ("idle", fmt_watch(idle.get("watch_events"))),
                ("restart", fmt_watch(restart.get("watch_events"))),
            ],
            "Watch events sent by the API server (apiserver_watch_events_total deltas; one per watcher)",
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
        out.append(f"  {key:<28} {value!s:<40} target {goal:<38} {verdict}")
    return "\n".join(out)
