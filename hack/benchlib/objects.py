"""What the bench creates: the sample objects, named for the run, and creating many of them at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import yaml

from paddle_kuscia.adapters.kube import KubeClient, KubeError, Resource

from .base import SAMPLES

NAMESPACES = Resource("", "v1", "namespaces", "Namespace")
# Worth another attempt while many creates are in flight: no answer (0), throttled, or the server struggling.
RETRIED = (0, 429, 500, 503, 504)


def sample_paddleservice(name: str, namespace: str) -> dict[str, Any]:
    obj = yaml.safe_load((SAMPLES / "paddleservice-minimal.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": namespace}
    return obj


def spread(n: int, namespaces: list[str]) -> list[dict[str, Any]]:
    """N PaddleServices with names unique across the run, dealt round-robin over `namespaces`."""
    return [sample_paddleservice(f"ps-{i:05d}", namespaces[i % len(namespaces)]) for i in range(n)]


def kuscia_job(name: str, namespace: str) -> dict[str, Any]:
    """The PSI sample with task ids of its own, mirrored to Kuscia."""
    obj = yaml.safe_load((SAMPLES / "kusciajob-psi.yaml").read_text())
    obj["metadata"] = {
        "name": name,
        "namespace": namespace,
        "annotations": {"paddle-kuscia.io/mirror": "true"},
    }
    for task in obj["spec"]["tasks"]:
        task["taskID"] = f"{name}-{task['alias']}"
    return obj


def kuscia_deployment(name: str, namespace: str) -> dict[str, Any]:
    obj = yaml.safe_load((SAMPLES / "kusciadeployment-serving.yaml").read_text())
    obj["metadata"].update(name=name, namespace=namespace)
    return obj


async def create_all(
    kube: KubeClient, resource: Resource, bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, tuple[float, dict[str, Any]]]:
    """POST every body with `concurrency` requests in flight; name -> (monotonic completion time, object)."""
    todo = list(reversed(bodies))
    done: dict[str, tuple[float, dict[str, Any]]] = {}

    async def worker() -> None:
        while todo:
            body = todo.pop()
            for attempt in range(20):
                try:
                    obj = await kube.create(resource, body)
                    done[obj["metadata"]["name"]] = (time.monotonic(), obj)
                    break
                except KubeError as err:
                    if err.status not in RETRIED:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done
