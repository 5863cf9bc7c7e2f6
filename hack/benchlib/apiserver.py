"""What the API server saw: `apiserver_request_total` from /metrics, and writes from its audit log."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support.control_plane import OPERATOR_USER, WRITE_VERBS


def request_totals(metrics_text: str) -> Counter[tuple[str, str]]:
    """`apiserver_request_total` summed by (verb, resource[/subresource])."""
    out: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            out[(labels.get("verb", ""), resource)] += int(sample.value)
    return out


def watch_events(metrics_text: str) -> Counter[tuple[str, str]]:
    """Watch events the API server sent to watchers, by watched kind: `("<kind>", "events")` from
    `apiserver_watch_events_total` and `("<kind>", "bytes")` from `apiserver_watch_events_sizes`. One event sent to
    two watchers counts twice. The kind comes from the `resource` label, or `kind` in older API servers."""
    out: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if not family.name.startswith("apiserver_watch_events"):
            continue
        for sample in family.samples:
            kind = sample.labels.get("resource") or sample.labels.get("kind", "")
            if sample.name == "apiserver_watch_events_total":
                out[(kind, "events")] += int(sample.value)
            elif sample.name == "apiserver_watch_events_sizes_sum":
                out[(kind, "bytes")] += int(sample.value)
    return out


def watch_summary(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> dict[str, Any]:
    """A window's watch events, from `watch_events` at its two ends: totals, and events by kind."""
    delta = subtract(after, before)
    return {
        "events": sum(n for (_, what), n in delta.items() if what == "events"),
        "bytes": sum(n for (_, what), n in delta.items() if what == "bytes"),
        "events_by_kind": dict(sorted((kind, n) for (kind, what), n in delta.items() if what == "events")),
    }


def by_verb(delta: Counter[tuple[str, str]]) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for (verb, _), n in delta.items():
        verbs[verb] += n
    return dict(sorted(verbs.items()))


def subtract(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    out = Counter(after)
    out.subtract(before)
    return Counter({k: v for k, v in out.items() if v > 0})


@dataclass
class AuditLog:
    """Byte offsets into the API server's JSON audit log, so each phase reads only its own lines."""

    path: Path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, start: int, end: int | None = None, containing: str = "") -> Iterator[dict[str, Any]]:
        """The events between two marks, read as a stream (a soak's log reaches hundreds of megabytes). With `containing`,
        lines without that text are skipped before they are parsed."""
        if not self.path.exists():
            return
        needle = containing.encode()
        with self.path.open("rb") as f:
            f.seek(start)
            position = start
            for line in f:
                position += len(line)
                if end is not None and position > end:
                    break  # written after the end mark, or cut by it
                if needle not in line or not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line still being written


def completed(e: dict[str, Any]) -> bool:
    """One audit event per request: ResponseComplete, or ResponseStarted for long-running watches."""
    if e.get("verb") == "watch":
        return e.get("stage") == "ResponseStarted"
    return e.get("stage") == "ResponseComplete"


def stamp(e: dict[str, Any], field: str = "requestReceivedTimestamp") -> dt.datetime:
    """One of the event's own timestamps (microseconds, UTC)."""
    return dt.datetime.fromisoformat(e[field])


def resource_of(e: dict[str, Any]) -> str:
    ref = e.get("objectRef") or {}
    res = ref.get("resource", "")
    return f"{res}/{ref['subresource']}" if ref.get("subresource") else res


def actor(e: dict[str, Any]) -> str:
    user = (e.get("user") or {}).get("username", "")
    agent = e.get("userAgent", "")
    if agent.startswith("paddle-kuscia-bench"):
        return "bench"  # the floor runs under the operator's identity but is not the operator
    if user == OPERATOR_USER:
        return "operator"
    if agent.startswith("knative-sim"):
        return "knative-sim"
    if "kube-controller-manager" in agent or user.startswith("system:kube-controller-manager"):
        return "kube-controller-manager"
    return user or "unknown"


def operator_write(e: dict[str, Any]) -> bool:
    """A write the operator's ServiceAccount made (Lease renewals excluded)."""
    return (
        actor(e) == "operator"
        and e.get("verb") in WRITE_VERBS
        and e.get("stage") == "ResponseComplete"
        and (e.get("objectRef") or {}).get("resource") != "leases"
    )


def summarize(
    events: Iterator[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = lambda e: True
) -> dict[str, Any]:
    """Requests per actor and verb, and the operator's writes per verb and resource."""
    per_actor: dict[str, Counter[str]] = {}
    operator_writes: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for e in events:
        if not completed(e) or not keep(e):
            continue
        who = actor(e)
        per_actor.setdefault(who, Counter())[e.get("verb", "")] += 1
        if operator_write(e):
            operator_writes[f"{e['verb']} {resource_of(e)}"] += 1
            codes[str((e.get("responseStatus") or {}).get("code", ""))] += 1
    return {
        "requests_by_actor": {k: dict(sorted(v.items())) for k, v in sorted(per_actor.items())},
        "operator_writes": sum(operator_writes.values()),
        "operator_writes_by_kind": dict(sorted(operator_writes.items())),
        "operator_write_codes": dict(sorted(codes.items())),
    }


@dataclass
class OperatorMilestones:
    """Each object's first Knative Service apply and first status patch by the operator, read from the audit log
    as it grows. The API server writes that log in every phase anyway, so observing a rollout this way adds no
    watch stream to the work being timed, which a watcher's streams do (three watch events per object)."""

    path: Path
    namespaces: set[str]
    offset: int
    ksvc: dict[str, dt.datetime] = field(default_factory=dict)
    status: dict[str, dt.datetime] = field(default_factory=dict)

    def poll(self) -> None:
        """Read the lines written since the last poll; a line still being written waits for the next one."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        user = OPERATOR_USER.encode()
        for line in data[:complete].splitlines():
            if user in line and b"ResponseComplete" in line:
                try:
                    self.take(json.loads(line))
                except ValueError:
                    continue

    def take(self, e: dict[str, Any]) -> None:
        ref = e.get("objectRef") or {}
        if ref.get("namespace") not in self.namespaces or not operator_write(e):
            return
        if (e.get("responseStatus") or {}).get("code", 0) >= 300:
            return
        name, when = ref.get("name") or "", stamp(e, "stageTimestamp")
        if ref.get("resource") == "services" and not ref.get("subresource"):
            self.ksvc.setdefault(name, when)
        elif ref.get("resource") == "paddleservices" and ref.get("subresource") == "status":
            self.status.setdefault(name, when)
