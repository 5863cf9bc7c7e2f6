"""Status writes and Events shared by every reconciler: write only what changed, say only what moved."""

from __future__ import annotations

import logging
from typing import Any

from ..adapters.kube import Conflict, KubeError, NotFound, Resource
from ..builders.compare import merge_patch
from ..runtime.cache import ObjectCache
from ..runtime.context import Context, now_rfc3339
from ..runtime.queue import RetryLater
from ..status.conditions import Cond, merge_conditions

logger = logging.getLogger("paddle_kuscia")


def ready_of(status: dict[str, Any] | None) -> dict[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


async def write_status(
    ctx: Context, resource: Resource, cache: ObjectCache, body: dict[str, Any], status: dict[str, Any]
) -> bool:
    """Patch `.status` to `status` if it differs from the live one; post an Event when Ready moved."""
    old = body.get("status") or {}
    if old == status:
        return False
    meta = body["metadata"]
    patch = merge_patch(old, status)
    try:
        updated = await ctx.kube.patch_status(
            resource, meta["namespace"], meta["name"], patch, resource_version=meta.get("resourceVersion")
        )
    except NotFound:
        return False
    except Conflict as err:
        # Our cached copy is stale; the watch will deliver the newer one and the key will be queued again.
        raise RetryLater("status write conflicted with a newer version") from err
    except KubeError as err:
        raise RetryLater(f"status write failed: {err}") from err
    cache.store(updated)
    logger.info(
        "Updated status kind=%s namespace=%s name=%s generation=%s",
        resource.kind,
        meta["namespace"],
        meta["name"],
        meta.get("generation"),
    )
    before, after = ready_of(old), ready_of(status)
    if after is not None and _transition(before, after):
        log = logger.warning if after["status"] == "False" else logger.info
        log(
            "Ready changed kind=%s namespace=%s name=%s status=%s reason=%s message=%s",
            resource.kind,
            meta["namespace"],
            meta["name"],
            after["status"],
            after["reason"],
            after["message"],
        )
        await ctx.kube.post_event(
            body,
            type="Warning" if after["status"] == "False" else "Normal",
            reason=after["reason"],
            message=f"Ready={after['status']}: {after['message']}",
        )
    return True


def _transition(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Worth an Event: Ready flipped, or it failed for a new reason (rollout steps under Unknown are not,
    nor is the first Unknown of a new object: its creation is no news)."""
    if before is None:
        return after["status"] != "Unknown"
    if before.get("status") != after["status"]:
        return True
    return after["status"] == "False" and before.get("reason") != after["reason"]


def failure_status(
    body: dict[str, Any], *, reason: str, message: str, extra: list[Cond] | None = None, ready: str = "False"
) -> dict[str, Any]:
    """The previous status with `Ready=False` (or Unknown) and the given dependency conditions."""
    previous = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    wanted = [Cond("Ready", ready, reason, message), *(extra or [])]
    previous["conditions"] = merge_conditions(
        previous.get("conditions"), wanted, generation=generation, now=now_rfc3339()
    )
    previous["observedGeneration"] = generation
    return previous


async def ensure_finalizer(
    ctx: Context, resource: Resource, cache: ObjectCache, body: dict[str, Any], name: str
) -> dict[str, Any]:
    """Add our finalizer (JSON patch guarded by resourceVersion, so other finalizers are never lost)."""
    meta = body["metadata"]
    finalizers = meta.get("finalizers") or []
    if name in finalizers:
        return body
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    ]
    if finalizers:
        ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": name})
    else:
        ops.append({"op": "add", "path": "/metadata/finalizers", "value": [name]})
    try:
        updated = await ctx.kube.json_patch(resource, meta["namespace"], meta["name"], ops)
    except KubeError as err:
        raise RetryLater(f"adding the finalizer failed: {err}") from err
    cache.store(updated)
    return updated


async def remove_finalizer(
    ctx: Context, resource: Resource, cache: ObjectCache, body: dict[str, Any], name: str
) -> None:
    meta = body["metadata"]
    finalizers = meta.get("finalizers") or []
    if name not in finalizers:
        return
    index = finalizers.index(name)
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "test", "path": f"/metadata/finalizers/{index}", "value": name},
        {"op": "remove", "path": f"/metadata/finalizers/{index}"},
    ]
    try:
        updated = await ctx.kube.json_patch(resource, meta["namespace"], meta["name"], ops)
    except NotFound:
        return
    except KubeError as err:
        raise RetryLater(f"removing the finalizer failed: {err}") from err
    cache.store(updated)
    logger.info(
        "Released finalizer kind=%s namespace=%s name=%s", resource.kind, meta["namespace"], meta["name"]
    )
