"""What the reconcilers share: status writes and Events (write only what changed, say only what moved),
finalizers, and ownership of a child."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, overload

from pydantic import ValidationError

from ..adapters.kube import PADDLESERVICES, Conflict, KubeError, NotFound, Resource
from ..builders.compare import merge_patch
from ..models.base import WireModel
from ..models.paddleservice import Condition, ConditionedStatus, ConditionStatus, PaddleServiceStatus
from ..runtime.cache import ObjectCache
from ..runtime.context import Context, now_rfc3339
from ..runtime.queue import RetryLater
from ..status.conditions import Cond, condition, merge_conditions, parse_conditions

logger = logging.getLogger("paddle_kuscia")

StatusT = TypeVar("StatusT", bound=ConditionedStatus)


def ready_of(status: Mapping[str, Any] | None) -> Condition | None:
    """The `Ready` condition of a status as written to the API."""
    conditions = parse_conditions((status or {}).get("conditions"))
    return next((c for c in conditions if c.type == "Ready"), None)


async def write_status(
    ctx: Context,
    resource: Resource,
    cache: ObjectCache,
    body: dict[str, Any],
    status: WireModel | dict[str, Any],
) -> bool:
    """Patch `.status` to `status` if its serialised form differs from the live one; post an Event when Ready
    moved. Dicts are accepted for the Kuscia statuses until they are built from their models."""
    old = body.get("status") or {}
    new = status.wire() if isinstance(status, WireModel) else status
    if old == new:
        return False
    meta = body["metadata"]
    patch = merge_patch(old, new)
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
    before, after = ready_of(old), ready_of(new)
    if after is not None and _transition(before, after):
        log = logger.warning if after.status == "False" else logger.info
        log(
            "Ready changed kind=%s namespace=%s name=%s status=%s reason=%s message=%s",
            resource.kind,
            meta["namespace"],
            meta["name"],
            after.status,
            after.reason,
            after.message,
        )
        await ctx.kube.post_event(
            body,
            type="Warning" if after.status == "False" else "Normal",
            reason=after.reason,
            message=f"Ready={after.status}: {after.message}",
        )
    return True


def _transition(before: Condition | None, after: Condition) -> bool:
    """Worth an Event: Ready flipped, or it failed for a new reason (rollout steps under Unknown are not,
    nor is the first Unknown of a new object: its creation is no news)."""
    if before is None:
        return after.status != "Unknown"
    if before.status != after.status:
        return True
    return after.status == "False" and before.reason != after.reason


@overload
def failure_status(
    body: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    model: type[StatusT],
    extra: Sequence[Condition | Cond] = (),
    ready: ConditionStatus = "False",
) -> StatusT: ...


@overload
def failure_status(
    body: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    extra: Sequence[Condition | Cond] = (),
    ready: ConditionStatus = "False",
) -> dict[str, Any]: ...


def failure_status(
    body: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    model: type[StatusT] | None = None,
    extra: Sequence[Condition | Cond] = (),
    ready: ConditionStatus = "False",
) -> StatusT | dict[str, Any]:
    """The previous status with `Ready=False` (or Unknown) and the given dependency conditions.

    Without `model` (the Kuscia reconcilers, until their statuses are models) it works on the status dict.
    """
    generation = body["metadata"].get("generation")
    now = now_rfc3339()
    decided = [condition("Ready", ready, reason, message, now=now)]
    decided += [c.at(now) if isinstance(c, Cond) else c for c in extra]
    if model is None:
        legacy = dict(body.get("status") or {})
        merged = merge_conditions(legacy.get("conditions"), decided, generation=generation)
        legacy["conditions"] = [c.wire() for c in merged]
        legacy["observedGeneration"] = generation
        return legacy
    try:
        previous = model.model_validate(body.get("status") or {})
    except ValidationError:
        previous = model()
    conditions = merge_conditions(previous.conditions, decided, generation=generation)
    return previous.model_copy(update={"conditions": conditions, "observed_generation": generation})


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


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """`obj` is controlled by the object with this uid: both PaddleService paths touch only their own Knative
    Service (the Knative path updates it, the Kuscia path deletes it after a backend switch)."""
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


async def refuse_paddleservice(ctx: Context, body: dict[str, Any], reason: str, message: str) -> None:
    """Ready=False with `reason`: the PaddleService cannot be served as it is written."""
    logger.warning(
        "Refused PaddleService namespace=%s name=%s reason=%s message=%s",
        body["metadata"]["namespace"],
        body["metadata"]["name"],
        reason,
        message,
    )
    status = failure_status(body, model=PaddleServiceStatus, reason=reason, message=message)
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, status)
