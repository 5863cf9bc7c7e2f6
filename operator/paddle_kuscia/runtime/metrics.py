"""Prometheus metrics: reconciles, Kubernetes and Kuscia API calls, and objects by Ready state."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
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


class ReadyStateCollector(Collector):
    """`paddle_kuscia_objects{kind, ready}` computed at scrape time from the operator's caches."""

    def __init__(self, sources: Callable[[], Iterable[tuple[str, Iterable[dict]]]]) -> None:
        self._sources = sources

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(
            "paddle_kuscia_objects", "Watched objects by kind and Ready status.", labels=["kind", "ready"]
        )
        for kind, objects in self._sources():
            counts = {"True": 0, "False": 0, "Unknown": 0}
            for obj in objects:
                cond = next(
                    (
                        c
                        for c in (obj.get("status") or {}).get("conditions") or []
                        if c.get("type") == "Ready"
                    ),
                    None,
                )
                counts[cond.get("status", "Unknown") if cond else "Unknown"] += 1
            for ready, n in counts.items():
                family.add_metric([kind, ready], n)
        yield family


_collector: ReadyStateCollector | None = None


def serve(
    port: int, sources: Callable[[], Iterable[tuple[str, Iterable[dict]]]], addr: str = "0.0.0.0"
) -> None:
    global _collector
    if _collector is None:
        _collector = ReadyStateCollector(sources)
        REGISTRY.register(_collector)
    start_http_server(port, addr=addr)
