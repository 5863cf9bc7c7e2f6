"""The bench's and the soak's audit-log reader: byte marks bound a phase, lines are streamed, and a filter
skips lines before they are parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchlib import apiserver
from benchlib.apiserver import OPERATOR_USER, AuditLog, operator_write, stamp


def _event(
    name: str, user: str = OPERATOR_USER, verb: str = "patch", resource: str = "paddleservices"
) -> str:
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "verb": verb,
            "user": {"username": user},
            "userAgent": "paddle-kuscia-operator/0 (pid 7)",
            "objectRef": {"resource": resource, "name": name, "namespace": "ns"},
        }
    )


def _names(events: Any) -> list[str]:
    return [e["objectRef"]["name"] for e in events]


def test_marks_bound_a_phase_and_a_line_cut_by_the_end_mark_is_left_out(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    assert log.mark() == 0 and list(log.events(0)) == []
    log.path.write_text(_event("before") + "\n")
    start = log.mark()
    with log.path.open("a") as f:
        f.write(_event("a") + "\n" + _event("b") + "\n")
    end = log.mark()
    with log.path.open("a") as f:
        f.write(_event("after") + "\n" + _event("half")[:20])
    assert _names(log.events(start, end)) == ["a", "b"]
    assert _names(log.events(start)) == ["a", "b", "after"]  # the half-written line is skipped
    assert _names(log.events(start, end - 5)) == ["a"]  # "b" crosses the mark


def test_containing_skips_other_users_and_operator_write_keeps_the_operators_writes(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    lines = [
        _event("mine"),
        _event("theirs", user="system:kube-controller-manager"),
        _event("lease", resource="leases"),
        _event("read", verb="get"),
    ]
    log.path.write_text("\n".join(lines) + "\n\n")
    assert _names(log.events(0, containing=OPERATOR_USER)) == ["mine", "lease", "read"]
    assert _names(e for e in log.events(0) if operator_write(e)) == ["mine"]


def test_stamps_are_read_as_the_api_server_writes_them() -> None:
    e = {
        "requestReceivedTimestamp": "2026-12-02T12:04:48.569482Z",
        "stageTimestamp": "2026-12-02T12:04:49.000001Z",
    }
    assert stamp(e).timestamp() == 1796213088.569482
    assert (stamp(e, "stageTimestamp") - stamp(e)).total_seconds() == 0.430519


METRICS = """\
# HELP apiserver_watch_events_total [ALPHA] Number of events sent in watch clients
# TYPE apiserver_watch_events_total counter
apiserver_watch_events_total{group="elasticserving.paddlepaddle.org",resource="paddleservices",version="v1"} 30
apiserver_watch_events_total{group="serving.knative.dev",resource="services",version="v1"} 12
# HELP apiserver_watch_events_sizes [ALPHA] Watch event size distribution in bytes
# TYPE apiserver_watch_events_sizes histogram
apiserver_watch_events_sizes_bucket{group="serving.knative.dev",resource="services",version="v1",le="1024"} 2
apiserver_watch_events_sizes_bucket{group="serving.knative.dev",resource="services",version="v1",le="+Inf"} 12
apiserver_watch_events_sizes_sum{group="serving.knative.dev",resource="services",version="v1"} 48000
apiserver_watch_events_sizes_count{group="serving.knative.dev",resource="services",version="v1"} 12
apiserver_watch_events_sizes_sum{group="elasticserving.paddlepaddle.org",resource="paddleservices",version="v1"} 60000
apiserver_watch_events_sizes_count{group="elasticserving.paddlepaddle.org",resource="paddleservices",version="v1"} 30
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",resource="services",verb="POST"} 7
"""


def test_watch_events_are_counted_by_kind_and_a_window_is_the_difference() -> None:
    before = apiserver.watch_events(METRICS.replace("} 30\n", "} 10\n").replace("} 60000", "} 20000"))
    after = apiserver.watch_events(METRICS)
    assert after[("services", "events")] == 12 and after[("services", "bytes")] == 48000
    summary = apiserver.watch_summary(before, after)
    assert summary == {"events": 20, "bytes": 40000, "events_by_kind": {"paddleservices": 20}}


def test_older_api_servers_label_watch_events_by_kind() -> None:
    text = 'apiserver_watch_events_total{group="",kind="Event",version="v1"} 3\n'
    assert apiserver.watch_events(text) == {("Event", "events"): 3}


def _write(
    name: str, resource: str, sub: str = "", code: int = 200, namespace: str = "ns", at: str = "01"
) -> str:
    ref = {"resource": resource, "name": name, "namespace": namespace}
    if sub:
        ref["subresource"] = sub
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "verb": "patch",
            "user": {"username": OPERATOR_USER},
            "userAgent": "paddle-kuscia-operator/0 (pid 7)",
            "objectRef": ref,
            "responseStatus": {"code": code},
            "stageTimestamp": f"2026-12-03T07:00:{at}.000000Z",
        }
    )


def test_the_audit_observer_stamps_each_objects_first_successful_apply_and_status_patch(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_event("before") + "\n")
    seen = apiserver.OperatorMilestones(log, {"ns"}, offset=log.stat().st_size)
    lines = [
        _write("a", "services", at="01"),
        _write("a", "paddleservices", "status", code=409, at="02"),  # refused: not a milestone
        _write("b", "services", namespace="elsewhere"),
        _event("a", user="someone-else", resource="services"),
        _write("a", "paddleservices", "status", at="03"),
        _write("a", "services", at="04"),  # a later apply does not move the first
    ]
    partial = _write("b", "services", at="05")
    log.write_text(log.read_text() + "\n".join(lines) + "\n" + partial[:40])
    seen.poll()
    assert {n: t.second for n, t in seen.ksvc.items()} == {"a": 1}
    assert {n: t.second for n, t in seen.status.items()} == {"a": 3}
    log.write_text(log.read_text() + partial[40:] + "\n")  # the line being written is read once complete
    seen.poll()
    assert {n: t.second for n, t in seen.ksvc.items()} == {"a": 1, "b": 5}
