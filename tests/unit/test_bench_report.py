"""The bench's printed report reads the result dict alone: phases that did not run print as n/a, not errors."""

from __future__ import annotations

from typing import Any

from benchlib.report import TARGETS, report, table, work_ratios


def _result(**figures: Any) -> dict[str, Any]:
    return {
        "n": 10,
        "workers": 2,
        "machine": {"nproc": 2, "memory_gib": 4.0, "loadavg_at_start": [0.1, 0.2, 0.3]},
        **figures,
    }


def _verdicts(text: str) -> dict[str, str]:
    lines = text.split("\nTargets\n", 1)[1].splitlines()
    verdicts = ("NOT met", "met", "n/a")
    return {line.split()[0]: next(v for v in verdicts if line.endswith(" " + v)) for line in lines}


def test_a_run_without_its_phases_reports_every_target_as_not_applicable() -> None:
    text = report(_result(**dict.fromkeys(TARGETS)))
    assert "paddle-kuscia bench  N=10  workers=2" in text
    assert set(_verdicts(text).values()) == {"n/a"}
    assert "Kuscia backend" not in text


def test_each_figure_is_judged_against_its_target() -> None:
    text = report(
        _result(
            ratio=1.2,
            writes_per_object=3.5,
            idle_writes=0,
            restart_writes=2,
            kuscia_calls_per_interval={"job": 1.0, "serving": 1.0},
            kuscia_call_limit=1,
            peak_rss_mib=90.0,
            kuscia={"jobs": 5, "deployments": 5, "poll_interval": 2.0},
        )
    )
    assert _verdicts(text) == {
        "ratio": "met",
        "writes_per_object": "NOT met",
        "idle_writes": "met",
        "restart_writes": "NOT met",
        "kuscia_calls_per_interval": "met",
        "peak_rss_mib": "met",
    }
    assert "Kuscia backend" in text


def test_the_memory_budget_grows_with_the_fleet() -> None:
    judged = {
        (n, rss): _verdicts(report({**_result(peak_rss_mib=rss), "n": n}))["peak_rss_mib"]
        for n, rss in [(1000, 150.0), (5000, 200.7), (10000, 200.7), (10000, 300.5)]
    }
    assert judged == {
        (1000, 150.0): "met",
        (5000, 200.7): "NOT met",
        (10000, 200.7): "met",
        (10000, 300.5): "NOT met",
    }


def test_a_table_aligns_its_values_after_the_longest_label() -> None:
    assert table([("a", 1), ("longer", "x")], "T") == "T\n-\na       1\nlonger  x"


def test_work_ratios_split_the_rollout_into_the_operator_and_the_rest() -> None:
    figures = {
        "floor_runs": [
            {"cpu_seconds": {"machine": 100.0}, "create_cpu_seconds": {"machine": 40.0}},
            {"cpu_seconds": {"machine": 120.0}, "create_cpu_seconds": {"machine": 20.0}},
        ],
        "rollout": {"to_converged": {"cpu_seconds": {"machine": 165.0, "operator-0": 22.0, "bench": 9.0}}},
    }
    # floor 110 (mean), its creates 30: 165/110, (165-22)/110, 165/140
    assert (
        work_ratios(figures) == "1.50  (without the operator 1.30; against the floor with its creates 1.18)"
    )
    assert work_ratios({"floor_runs": []}) == "None"


def test_watch_events_are_reported_per_phase() -> None:
    kinds = {"paddleservices": 2000, "services": 990, "leases": 6, "nodes": 4}
    watch = {"events": 3000, "bytes": 3 * 2**20, "events_by_kind": kinds}
    text = report(
        _result(
            floor_runs=[{"watch_events": {"events": 0, "bytes": 0, "events_by_kind": {}}}],
            rollout={"to_converged": {"watch_events": watch}},
        )
    )
    rows = text.split("Watch events sent by the API server", 1)[1].splitlines()
    assert any(r.startswith("floor run 1") and "0 events, 0.0 MiB" in r for r in rows)
    assert any(
        r.startswith("rollout to converged")
        and r.endswith('3000 events, 3.0 MiB  {"paddleservices": 2000, "services": 990, "other kinds": 10}')
        for r in rows
    )
    assert any(r.startswith("idle") and r.rstrip().endswith("-") for r in rows)
