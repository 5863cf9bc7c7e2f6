"""The informer for Knative kinds: a list fills the cache, the watch resumes where the list ended, an expired
watch lists again and reports what vanished meanwhile, and a broken stream is retried without a hot loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from paddle_kuscia.adapters.kube import KNATIVE_SERVICES, KubeError
from paddle_kuscia.runtime import informer as informer_module
from paddle_kuscia.runtime.cache import ObjectCache, key_of
from paddle_kuscia.runtime.informer import Informer


def ksvc(name: str, rv: int, namespace: str = "team-a") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)}, "spec": {}}


class FakeKube:
    """Serves scripted list pages and watch streams; records what the informer asked for."""

    def __init__(
        self, lists: list[list[dict[str, Any]]], streams: list[list[dict[str, Any]] | Exception]
    ) -> None:
        self.lists = lists  # one entry per list call: the items, served in pages of two
        self.streams = streams  # one entry per watch call: its events, or the error it fails with
        self.calls: list[tuple[str, str | None, dict[str, str] | None]] = []
        self.exhausted = asyncio.Event()

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self.calls.append(("list", path, dict(params or {})))
        items = self.lists[0]
        start = int((params or {}).get("continue") or 0)
        page = items[start : start + 2]
        more = start + 2 < len(items)
        if not more:
            self.lists.pop(0)
        meta = {"continue": str(start + 2)} if more else {"resourceVersion": "100"}
        return {"items": [dict(i) for i in page], "metadata": meta}

    async def watch(
        self, resource: Any, namespace: str | None, resource_version: str, *, timeout: int
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(("watch", namespace, {"resourceVersion": resource_version}))
        if not self.streams:
            self.exhausted.set()
            await asyncio.Event().wait()  # a quiet stream: nothing more happens
        script = self.streams.pop(0)
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


async def run_until_exhausted(inf: Informer, kube: FakeKube) -> None:
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(kube.exhausted.wait(), timeout=10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_list_fills_the_cache_and_the_watch_resumes_where_it_ended() -> None:
    kube = FakeKube(
        lists=[[ksvc("a", 1), ksvc("b", 2), ksvc("c", 3), ksvc("elsewhere", 4, namespace="team-b")]],
        streams=[
            [
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "150"}}},
                {"type": "MODIFIED", "object": ksvc("a", 160)},
                {"type": "ADDED", "object": ksvc("other-team", 161, namespace="team-b")},
            ],
        ],
    )
    heard: list[tuple[str, str]] = []
    cache = ObjectCache()
    inf = Informer(
        kube,  # type: ignore[arg-type]
        KNATIVE_SERVICES,
        None,
        cache,
        lambda e: heard.append((e["type"], e["object"]["metadata"]["name"])),
        keep=lambda ns: ns == "team-a",
    )

    async def scenario() -> None:
        await inf.list(notify=False)
        assert heard == [], "the start-up list fills the cache without events"
        assert sorted(key for key in cache) == [("team-a", "a"), ("team-a", "b"), ("team-a", "c")]
        assert cache.get(("team-a", "a"))["kind"] == "Service"  # list items carry no kind: it is added
        await run_until_exhausted(inf, kube)

    asyncio.run(scenario())
    assert heard == [("MODIFIED", "a")], "bookmarks and other namespaces are not events"
    watches = [c for c in kube.calls if c[0] == "watch"]
    assert watches[0][2] == {"resourceVersion": "100"}, "the watch starts where the list ended"
    assert watches[1][2] == {"resourceVersion": "161"}, "and resumes after the last event, bookmarks included"
    assert [c[2].get("continue", "") for c in kube.calls if c[0] == "list"] == ["", "2"], "listed in pages"


def test_an_expired_watch_lists_again_and_reports_what_vanished(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube(
        lists=[
            [ksvc("a", 1), ksvc("b", 2)],
            [ksvc("a", 1), ksvc("c", 90)],  # b was deleted and c created while the watch was down
        ],
        streams=[
            KubeError(0, "connection refused"),  # the API server restarts
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
        ],
    )
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(informer_module.asyncio, "sleep", no_sleep)
    cache = ObjectCache()
    heard: list[tuple[str, str]] = []

    def handler(event: dict[str, Any]) -> None:
        obj = event["object"]
        heard.append((event["type"], obj["metadata"]["name"]))
        if event["type"] == "DELETED":
            cache.forget(("team-a", obj["metadata"]["name"]))
        else:
            cache.store(obj)

    inf = Informer(kube, KNATIVE_SERVICES, "team-a", cache, handler)  # type: ignore[arg-type]

    async def scenario() -> None:
        await inf.list(notify=False)
        cache.store(ksvc("ours", 150))  # the response of an apply made after the list that ends at 100
        await run_until_exhausted(inf, kube)

    asyncio.run(scenario())
    assert sleeps == [1.0], "a broken stream is retried after a back-off, an expired one at once"
    assert ("DELETED", "b") in heard and ("MODIFIED", "c") in heard
    assert ("DELETED", "ours") not in heard, "an object newer than the list is not taken for deleted"
    assert sorted(key for key in cache) == [("team-a", "a"), ("team-a", "c"), ("team-a", "ours")]
    assert [c[0] for c in kube.calls] == ["list", "watch", "watch", "list", "watch"]


def test_namespace_globs_follow_namespaces_as_they_come_and_go() -> None:
    """A shard defined by globs watches each matching namespace, including ones created later, and never the
    others: the API server sends it only its own namespaces' events. In a namespace being deleted only the
    kinds that may hold a finalizer stay watched, until the namespace is gone; then the handlers hear that
    whatever the caches still held of it is deleted."""
    from paddle_kuscia.adapters.kube import KNATIVE_REVISIONS, PADDLESERVICES
    from paddle_kuscia.runtime.context import Config
    from paddle_kuscia.runtime.informer import InformerSet, Watched

    def namespace(name: str, rv: int, **extra: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": str(rv)}, **extra}

    def ps(name: str, rv: int, namespace: str, mirrored: bool = True) -> dict[str, Any]:
        annotations = {"mirror": "true"} if mirrored else {}
        return {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": str(rv),
                "annotations": annotations,
            }
        }

    terminating = {"status": {"phase": "Terminating"}}
    lists = {
        "/api/v1/namespaces": [
            namespace("team-a", 1),
            namespace("other", 2),
            {
                "metadata": {
                    "name": "team-z",
                    "resourceVersion": "3",
                    "deletionTimestamp": "2026-12-02T00:00:00Z",
                }
            },
        ],
        "/apis/serving.knative.dev/v1/namespaces/team-a/services": [ksvc("x", 3)],
        "/apis/serving.knative.dev/v1/namespaces/team-b/services": [ksvc("y", 4, namespace="team-b")],
        "/apis/elasticserving.paddlepaddle.org/v1/namespaces/team-a/paddleservices": [
            ps("p", 5, "team-a"),
            ps("unmirrored", 6, "team-a", mirrored=False),
        ],
        "/apis/elasticserving.paddlepaddle.org/v1/namespaces/team-z/paddleservices": [
            ps("held", 7, "team-z")
        ],
    }
    namespace_events = [
        {"type": "ADDED", "object": namespace("team-b", 10)},
        {"type": "ADDED", "object": namespace("unrelated", 11)},
        {"type": "MODIFIED", "object": namespace("team-a", 12, **terminating)},
    ]
    gone = [{"type": "DELETED", "object": namespace("team-a", 13, **terminating)}]
    watched: list[tuple[str, str | None]] = []
    quiet = asyncio.Event()
    primed_watching = asyncio.Event()
    deleted = asyncio.Event()

    class Kube:
        async def request(self, method: str, path: str, *, params: dict[str, str] | None = None) -> dict:
            return {"items": [dict(i) for i in lists.get(path, [])], "metadata": {"resourceVersion": "9"}}

        async def watch(self, resource: Any, ns: str | None, rv: str, *, timeout: int) -> AsyncIterator[dict]:
            watched.append((resource.plural, ns))
            if (resource.plural, ns) == ("services", "team-a"):
                primed_watching.set()
            if resource.plural == "namespaces":
                await primed_watching.wait()  # namespaces change once the primed one is being watched
                for event in namespace_events:
                    yield event
                await deleted.wait()
                for event in gone:
                    yield event
            await quiet.wait()

    heard: list[tuple[str, str]] = []
    services, revisions, paddleservices = ObjectCache(), ObjectCache(), ObjectCache()

    def on_service(event: dict[str, Any]) -> None:
        heard.append((event["type"], event["object"]["metadata"]["name"]))
        services.store(event["object"])

    def on_ps(event: dict[str, Any]) -> None:
        heard.append((event["type"], event["object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            paddleservices.forget(key_of(event["object"]))

    kinds = [
        Watched(
            PADDLESERVICES,
            paddleservices,
            on_ps,
            admit=lambda o: bool(o["metadata"]["annotations"]),
            finalized=True,
        ),
        Watched(KNATIVE_SERVICES, services, on_service),
        Watched(KNATIVE_REVISIONS, revisions, lambda e: None),
    ]
    informers = InformerSet(Kube(), kinds, Config(namespaces=("team-*",)))  # type: ignore[arg-type]

    def running() -> dict[str | None, set[str]]:
        return {ns: {i.resource.plural for i in group} for ns, group in informers.informers.items()}

    async def until(condition: Any) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, (watched, running())
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        await informers.prime()
        assert running() == {
            "team-a": {"paddleservices", "services", "revisions"},
            "team-z": {"paddleservices"},
        }
        assert sorted(services) == [("team-a", "x")]
        assert sorted(paddleservices) == [("team-a", "p"), ("team-z", "held")], (
            "only admitted objects are kept"
        )
        informers.start()
        await until(
            lambda: ("services", "team-b") in watched and running().get("team-a") == {"paddleservices"}
        )
        assert len(informers.tasks) == 3 + 1 + 1, "team-b's three, team-a's and team-z's PaddleServices"
        deleted.set()
        await until(lambda: "team-a" not in running())
        await informers.stop()

    asyncio.run(scenario())
    assert heard == [("MODIFIED", "y"), ("DELETED", "p"), ("DELETED", "x")], (
        "a new namespace's first list tells the handler what is there; a deleted one, what is gone"
    )
    assert running() == {"team-b": {"paddleservices", "services", "revisions"}, "team-z": {"paddleservices"}}
    assert {ns for plural, ns in watched if plural == "services"} == {"team-a", "team-b"}
    assert {ns for plural, ns in watched if plural == "paddleservices"} == {"team-a", "team-b", "team-z"}
