"""Prometheus metrics: reconciles, Kubernetes and Kuscia API calls, objects by Ready state, work queues,
leadership and Kuscia status polls. docs/monitoring.md lists them with the alerts that use them.

Per-object and per-queue series are computed at scrape time from the operator's own state, so a deleted
object or a stopped queue leaves no stale series behind.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RECONCILES = Counter("paddle_kuscia_reconciles_total", "Reconciles by kind and outcome.", ["kind", "outcome"])
RECONCILE_SECONDS = Histogram(
    "paddle_kuscia_reconcile_duration_seconds", "Reconcile duration by kind.", ["kind"]
)
KUBE_REQUESTS = Counter(
    "paddle_kuscia_kube_requests_total", "Kubernetes API requests by verb and code.", ["verb", "code"]
)
KUSCIA_CALLS = Counter(
    "paddle_kuscia_kuscia_api_calls_total", "Kuscia API calls by route and outcome.", ["route", "outcome"]
)
KUSCIA_SECONDS = Histogram(
    "paddle_kuscia_kuscia_api_latency_seconds", "Kuscia API call latency by route.", ["route"]
)


def on_reconcile(kind: str, outcome: str, seconds: float) -> None:
    RECONCILES.labels(kind, outcome).inc()
    RECONCILE_SECONDS.labels(kind).observe(seconds)


def on_kube_request(method: str, _path: str, code: int, _seconds: float) -> None:
    KUBE_REQUESTS.labels(method, str(code)).inc()


def on_kuscia_call(route: str, outcome: str, seconds: float) -> None:
    KUSCIA_CALLS.labels(route, outcome).inc()
    KUSCIA_SECONDS.labels(route).observe(seconds)


# Work queues that are running, by identity: kind -> a function returning how many keys wait for a worker.
_queues: dict[int, tuple[str, Callable[[], int]]] = {}
# Kuscia status polls: (url, route) -> [unix time of the last answered poll or None, failure reason or None]
_polls: dict[tuple[str, str], list[Any]] = {}


def watch_queue(queue: object, kind: str, depth: Callable[[], int]) -> None:
    """A work queue started: report its depth, and that this instance reconciles."""
    _queues[id(queue)] = (kind, depth)


def unwatch_queue(queue: object) -> None:
    _queues.pop(id(queue), None)


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment: a metric label must never carry a credential."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def on_kuscia_poll(url: str, route: str, failure_reason: str | None) -> None:
    """One batch status poll of a Kuscia connection answered (`failure_reason` None) or failed (the
    condition reason it gives objects, e.g. KusciaUnavailable, KusciaAuthFailed)."""
    state = _polls.setdefault((_public_url(url), route), [None, None])
    if failure_reason is None:
        state[0] = time.time()
    state[1] = failure_reason


def on_kuscia_poll_idle(url: str, route: str) -> None:
    """Nothing on this connection and route needs polling any more: a past failure no longer stands."""
    state = _polls.get((_public_url(url), route))
    if state is not None:
        state[1] = None


def _ready_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


class ReadyStateCollector(Collector):
    """Scrape-time gauges from the operator's caches and runtime state.

    `paddle_kuscia_objects{kind, ready}` counts objects; `paddle_kuscia_object_ready{kind, namespace, name}`
    is 1 or 0 per object, and `paddle_kuscia_object_condition{...condition, status, reason}` names each
    condition that is not True (a healthy object adds no such series). Queue depth, leadership and Kuscia
    polls come from what the queues and the poller reported.
    """

    def __init__(self, sources: Callable[[], Iterable[tuple[str, Iterable[dict[str, Any]]]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "paddle_kuscia_objects", "Watched objects by kind and Ready status.", labels=["kind", "ready"]
        )
        ready = GaugeMetricFamily(
            "paddle_kuscia_object_ready",
            "1 when the object's Ready condition is True, else 0.",
            labels=["kind", "namespace", "name"],
        )
        conditions = GaugeMetricFamily(
            "paddle_kuscia_object_condition",
            "1 for each condition of an object that is not True, with its status and reason.",
            labels=["kind", "namespace", "name", "condition", "status", "reason"],
        )
        for kind, items in self._sources():
            counts = {"True": 0, "False": 0, "Unknown": 0}
            for obj in items:
                meta = obj.get("metadata") or {}
                ns, name = meta.get("namespace", ""), meta.get("name", "")
                cond = _ready_condition(obj)
                status = cond.get("status", "Unknown") if cond else "Unknown"
                counts[status if status in counts else "Unknown"] += 1
                ready.add_metric([kind, ns, name], 1 if status == "True" else 0)
                for c in (obj.get("status") or {}).get("conditions") or []:
                    if c.get("status") != "True":
                        conditions.add_metric(
                            [
                                kind,
                                ns,
                                name,
                                c.get("type", ""),
                                c.get("status", "Unknown"),
                                c.get("reason", ""),
                            ],
                            1,
                        )
            for state, n in counts.items():
                objects.add_metric([kind, state], n)
        yield objects
        yield ready
        yield conditions
        yield from _runtime_families()


def _runtime_families() -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "paddle_kuscia_workqueue_depth", "Keys waiting for a worker, by kind.", labels=["kind"]
    )
    for kind, fn in sorted(_queues.values(), key=lambda q: q[0]):
        depth.add_metric([kind], fn())
    yield depth
    yield GaugeMetricFamily(
        "paddle_kuscia_leader",
        "1 when this instance reconciles (it holds the leader Lease, or runs without leader election).",
        value=1 if _queues else 0,
    )
    last = GaugeMetricFamily(
        "paddle_kuscia_kuscia_poll_last_success_timestamp_seconds",
        "Unix time of the last answered Kuscia status poll, by connection URL and status route.",
        labels=["url", "route"],
    )
    failing = GaugeMetricFamily(
        "paddle_kuscia_kuscia_poll_failing",
        "1 while the latest Kuscia status poll of a connection and route failed, with the reason.",
        labels=["url", "route", "reason"],
    )
    for (url, route), (when, reason) in sorted(_polls.items()):
        if when is not None:
            last.add_metric([url, route], when)
        if reason is not None:
            failing.add_metric([url, route, reason], 1)
    yield last
    yield failing


_collector: ReadyStateCollector | None = None


def serve(
    port: int, sources: Callable[[], Iterable[tuple[str, Iterable[dict[str, Any]]]]], addr: str = "0.0.0.0"
) -> None:
    global _collector
    if _collector is None:
        _collector = ReadyStateCollector(sources)
        REGISTRY.register(_collector)
    start_http_server(port, addr=addr)
