"""Watch namespaces' PaddleServices and Knative Services; print when each object reaches each milestone.

Runs as its own process (`python -m benchlib.watcher`), so the arrival times it stamps are not delayed by
the harness's own work. Output is one JSON object per line on stdout, times from CLOCK_MONOTONIC (the same
clock in every process on the machine):

    {"k": "synced"}                                   both watches are open
    {"k": "ksvc", "n": NAME, "t": T}                  first time the Knative Service NAME is seen
    {"k": "gen", "n": NAME, "t": T}                   first status.observedGeneration == metadata.generation
    {"k": "ready", "n": NAME, "t": T}                 first Ready=True for the current generation
    {"k": "act", "t": T, "ps": N, "ksvc": M}          at most once a second: events since the last line
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from paddle_kuscia.adapters.kube import KNATIVE_SERVICES, PADDLESERVICES, KubeClient, KubeError, Resource

# Watch only metadata: enough to time an object's arrival, at a fraction of the bytes.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class Milestones:
    def __init__(self) -> None:
        self.ksvc: set[str] = set()
        self.gen: dict[str, int] = {}
        self.ready: dict[str, int] = {}
        self.counts = {"ps": 0, "ksvc": 0}
        self.last_flush = time.monotonic()

    def emit(self, **fields: Any) -> None:
        sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")

    def on_ksvc(self, kind: str, obj: dict[str, Any]) -> None:
        self.counts["ksvc"] += 1
        name = obj["metadata"]["name"]
        if kind != "DELETED" and name not in self.ksvc:
            self.ksvc.add(name)
            self.emit(k="ksvc", n=name, t=time.monotonic())

    def on_ps(self, kind: str, obj: dict[str, Any]) -> None:
        self.counts["ps"] += 1
        if kind == "DELETED":
            return
        meta, status = obj["metadata"], obj.get("status") or {}
        name, generation = meta["name"], meta.get("generation", 1)
        if status.get("observedGeneration") != generation:
            return
        now = time.monotonic()
        if self.gen.get(name, 0) < generation:
            self.gen[name] = generation
            self.emit(k="gen", n=name, g=generation, t=now)
        if self.ready.get(name, 0) < generation and ready(obj):
            self.ready[name] = generation
            self.emit(k="ready", n=name, g=generation, t=now)

    def flush(self) -> None:
        now = time.monotonic()
        if now - self.last_flush >= 1.0:
            if any(self.counts.values()):
                self.emit(k="act", t=now, **self.counts)
                self.counts = {"ps": 0, "ksvc": 0}
            self.last_flush = now
        sys.stdout.flush()


async def inform(
    kube: KubeClient, resource: Resource, ns: str, on: Any, synced: asyncio.Event, accept: str | None
) -> None:
    """List, then watch from the list's resourceVersion; relist after 410 Gone."""
    rv: str | None = None
    while True:
        if rv is None:
            listing = await kube.request("GET", resource.path(ns))
            for item in listing.get("items") or []:
                on("ADDED", item)
            rv = listing["metadata"]["resourceVersion"]
            synced.set()
        try:
            async for event in kube.watch(resource, ns, rv, accept=accept):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    rv = None if obj.get("code") == 410 else rv
                    break
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if event.get("type") != "BOOKMARK":
                    on(event["type"], obj)
        except KubeError as err:
            if err.status == 410:
                rv = None
            else:
                await asyncio.sleep(0.5)


async def main(kubeconfig: str, namespaces: list[str]) -> None:
    kube = KubeClient(
        kubeconfig=kubeconfig,
        max_connections=2 * len(namespaces) + 2,
        timeout=60.0,
        agent="paddle-kuscia-bench-watcher",
    )
    ms = Milestones()
    synced: list[asyncio.Event] = []
    tasks = []
    for ns in namespaces:
        for resource, on, accept in (
            (PADDLESERVICES, ms.on_ps, None),
            (KNATIVE_SERVICES, ms.on_ksvc, METADATA_ONLY),
        ):
            synced.append(asyncio.Event())
            tasks.append(asyncio.create_task(inform(kube, resource, ns, on, synced[-1], accept)))
    await asyncio.gather(*(s.wait() for s in synced))
    ms.emit(k="synced")
    sys.stdout.flush()
    while True:
        done = [t for t in tasks if t.done()]
        for t in done:
            t.result()
        ms.flush()
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", action="append", required=True, help="repeatable")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.kubeconfig, args.namespace))
