"""What the Kubernetes client offers tools beside the operator: an explicit kubeconfig and user agent, create,
raw bodies and watch streams, against a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from paddle_kuscia.adapters.kube import (
    PADDLESERVICES,
    Conflict,
    KubeClient,
    KubeError,
    Resource,
    split_lines,
)

NAMESPACES = Resource("", "v1", "namespaces", "Namespace")


def test_split_lines_keeps_an_unfinished_line_for_the_next_chunk() -> None:
    assert split_lines(b'{"a":1}\n{"b"') == ([b'{"a":1}'], b'{"b"')
    assert split_lines(b':2}\n\n{"c":3}\n') == ([b":2}", b'{"c":3}'], b"")
    assert split_lines(b"") == ([], b"")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[list[dict[str, Any]], Path]]:
    """A fake API server; yields the requests it saw and a kubeconfig that points at it."""
    seen: list[dict[str, Any]] = []

    async def record(request: web.Request) -> None:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )

    async def create(request: web.Request) -> web.Response:
        await record(request)
        body = json.loads(seen[-1]["body"])
        if body["metadata"]["name"] == "taken":
            return web.json_response({"message": "already exists"}, status=409)
        return web.json_response({**body, "metadata": {**body["metadata"], "uid": "u1"}}, status=201)

    async def metrics(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="apiserver_request_total 1\n")

    async def watch(request: web.Request) -> web.StreamResponse:
        await record(request)
        if request.query["resourceVersion"] == "old":
            return web.json_response({"message": "too old resource version"}, status=410)
        resp = web.StreamResponse()
        await resp.prepare(request)
        events = b"".join(
            json.dumps({"type": "ADDED", "object": {"metadata": {"name": f"ps-{i}"}}}).encode() + b"\n"
            for i in range(3)
        )
        for at in range(0, len(events), 7):  # events cut across chunks
            await resp.write(events[at : at + 7])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/api/v1/namespaces", create)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/apis/elasticserving.paddlepaddle.org/v1/namespaces/ns/paddleservices", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    yield seen, kubeconfig
    await runner.cleanup()


async def test_an_explicit_kubeconfig_and_agent_are_used_for_create(api: Any) -> None:
    seen, kubeconfig = api
    kube = KubeClient(kubeconfig=str(kubeconfig), agent="paddle-kuscia-bench")
    try:
        created = await kube.create(NAMESPACES, {"metadata": {"name": "ns"}})
        with pytest.raises(Conflict):
            await kube.create(NAMESPACES, {"metadata": {"name": "taken"}})
    finally:
        await kube.aclose()
    assert created["metadata"] == {"name": "ns", "uid": "u1"}
    assert seen[0]["path"] == "/api/v1/namespaces"
    assert seen[0]["headers"]["User-Agent"] == "paddle-kuscia-bench"
    assert seen[0]["headers"]["Authorization"] == "Bearer t0ken"


async def test_request_raw_returns_a_body_that_is_not_json(api: Any) -> None:
    seen, kubeconfig = api
    kube = KubeClient(kubeconfig=str(kubeconfig))
    try:
        raw = await kube.request_raw("GET", "/metrics", accept="text/plain")
    finally:
        await kube.aclose()
    assert raw == b"apiserver_request_total 1\n"
    assert seen[0]["headers"]["Accept"] == "text/plain"
    assert seen[0]["headers"]["User-Agent"].startswith("paddle-kuscia-operator/")


async def test_a_watch_yields_every_event_whole_and_maps_gone_to_a_typed_error(api: Any) -> None:
    seen, kubeconfig = api
    kube = KubeClient(kubeconfig=str(kubeconfig))
    try:
        events = [e async for e in kube.watch(PADDLESERVICES, "ns", "7", timeout=5)]
        with pytest.raises(KubeError) as gone:
            async for _ in kube.watch(PADDLESERVICES, "ns", "old"):
                pass
    finally:
        await kube.aclose()
    assert [e["object"]["metadata"]["name"] for e in events] == ["ps-0", "ps-1", "ps-2"]
    assert seen[0]["query"] == {
        "watch": "1",
        "resourceVersion": "7",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "5",
    }
    assert gone.value.status == 410
