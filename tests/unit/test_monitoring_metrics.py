"""The metrics the alerts read: per-object readiness, queue depth, leadership and Kuscia poll health."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from paddle_kuscia.runtime import metrics
from paddle_kuscia.runtime.queue import WorkQueue


def _obj(ns: str, name: str, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "status": {"conditions": [{"type": t, "status": s, "reason": r} for t, s, r in conditions]},
    }


def scrape(sources: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, dict[tuple, float]]:
    """{metric name: {sorted label items: value}} as Prometheus would read it."""
    registry = CollectorRegistry()
    registry.register(metrics.ReadyStateCollector(lambda: sources))
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_each_object_reports_ready_and_its_failing_conditions_by_name() -> None:
    healthy = _obj("demo", "good", ("Ready", "True", "Serving"), ("DefaultEndpointReady", "True", "x"))
    canary = _obj(
        "demo",
        "bad-canary",
        ("Ready", "False", "ImagePullBackOff"),
        ("DefaultEndpointReady", "True", "RevisionReady"),
        ("CanaryEndpointReady", "False", "ImagePullBackOff"),
    )
    fresh = {"metadata": {"namespace": "demo", "name": "new"}}
    got = scrape([("PaddleService", [healthy, canary, fresh])])

    ready = got["paddle_kuscia_object_ready"]
    key = lambda name: (("kind", "PaddleService"), ("name", name), ("namespace", "demo"))  # noqa: E731
    assert ready == {key("good"): 1.0, key("bad-canary"): 0.0, key("new"): 0.0}
    failing = {
        (dict(k)["name"], dict(k)["condition"], dict(k)["status"], dict(k)["reason"])
        for k in got["paddle_kuscia_object_condition"]
    }
    assert failing == {
        ("bad-canary", "Ready", "False", "ImagePullBackOff"),
        ("bad-canary", "CanaryEndpointReady", "False", "ImagePullBackOff"),
    }
    counts = {dict(k)["ready"]: v for k, v in got["paddle_kuscia_objects"].items()}
    assert counts == {"True": 1.0, "False": 1.0, "Unknown": 1.0}


async def test_running_queues_report_their_depth_and_make_the_instance_the_leader() -> None:
    assert scrape([])["paddle_kuscia_leader"] == {(): 0.0}
    gate = asyncio.Event()

    async def reconcile(_key: object) -> None:
        await gate.wait()

    q = WorkQueue("PaddleService", reconcile, workers=1)
    q.start()
    try:
        for key in ("a", "b", "c"):
            q.add(key)
        await asyncio.sleep(0)  # the single worker takes "a"; "b" and "c" wait
        got = scrape([])
        assert got["paddle_kuscia_leader"] == {(): 1.0}
        assert got["paddle_kuscia_workqueue_depth"] == {(("kind", "PaddleService"),): 2.0}
    finally:
        gate.set()
        await q.stop()
    got = scrape([])
    assert got["paddle_kuscia_leader"] == {(): 0.0}
    assert "paddle_kuscia_workqueue_depth" not in got


def test_kuscia_polls_report_last_success_and_the_current_failure_without_credentials_in_labels() -> None:
    url = "https://user:secret@kuscia.example:8082/?token=abc"
    public = "https://kuscia.example:8082/"

    def ours(series: dict[tuple, float]) -> dict[tuple, float]:
        return {k: v for k, v in series.items() if ("url", public) in k}

    metrics.on_kuscia_poll(url, "serving", None)
    metrics.on_kuscia_poll(url, "serving", "KusciaAuthFailed")
    got = scrape([])
    failing = ours(got["paddle_kuscia_kuscia_poll_failing"])
    assert failing == {(("reason", "KusciaAuthFailed"), ("route", "serving"), ("url", public)): 1.0}
    last = ours(got["paddle_kuscia_kuscia_poll_last_success_timestamp_seconds"])
    assert list(last) == [(("route", "serving"), ("url", public))]
    registry = CollectorRegistry()
    registry.register(metrics.ReadyStateCollector(lambda: []))
    text = generate_latest(registry).decode()
    assert "secret" not in text and "token" not in text

    metrics.on_kuscia_poll(url, "serving", None)
    assert not ours(scrape([]).get("paddle_kuscia_kuscia_poll_failing", {}))


def test_a_failure_stops_being_reported_once_nothing_on_the_connection_needs_polling() -> None:
    url = "https://kuscia-idle.example:8082"
    metrics.on_kuscia_poll(url, "job", "KusciaUnavailable")
    assert any(("url", url) in k for k in scrape([])["paddle_kuscia_kuscia_poll_failing"])
    metrics.on_kuscia_poll_idle(url, "job")
    assert not any(("url", url) in k for k in scrape([]).get("paddle_kuscia_kuscia_poll_failing", {}))
