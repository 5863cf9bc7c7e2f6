"""Reconcile a PaddleService served by Knative: build -> apply (only if different) -> observe -> status (only if
changed). `reconcile.paddleservice` hands over every PaddleService that is not Kuscia-backed."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..adapters.kube import KNATIVE_SERVICES, PADDLESERVICES, Invalid, KubeError
from ..builders.compare import digest, first_difference, is_subset
from ..builders.knative import FIELD_MANAGER, InvalidSpec, Owner, build_knative_service, knative_warnings
from ..models.observed import KnativeObservation, parse_knative_service, parse_revision
from ..models.paddleservice import PaddleService, PaddleServiceStatus
from ..runtime.cache import Key
from ..runtime.context import Context, now_rfc3339
from ..runtime.queue import RetryLater
from ..status.knative import APPLY_FAILED, knative_status, worth_writing
from .common import failure_status, owned_by, refuse_paddleservice, write_status

logger = logging.getLogger("paddle_kuscia")

APPLIED_DIGEST = "paddle-kuscia.io/applied-digest"
# A status step not worth a write of its own (`worth_writing`) waits at most this long for one that is.
HOLD_SECONDS = 300.0


def observe(ctx: Context, key: Key, live: dict[str, Any] | None) -> KnativeObservation | None:
    if live is None:
        return None
    revisions = {r["metadata"]["name"]: parse_revision(r) for r in ctx.revisions.by_index(key)}
    return parse_knative_service(live, revisions)


def owned_by_predecessor(obj: dict[str, Any], owner: Owner) -> bool:
    """Controlled by a PaddleService of this very name but another uid: one that was deleted (names are unique
    in a namespace, so the live PaddleService of this name is `owner`)."""
    return any(
        ref.get("controller")
        and ref.get("kind") == "PaddleService"
        and ref.get("apiVersion", "").startswith("elasticserving.paddlepaddle.org/")
        and ref.get("name") == owner.name
        and ref.get("uid") != owner.uid
        for ref in obj["metadata"].get("ownerReferences") or []
    )


async def reconcile_knative_serving(
    ctx: Context, key: Key, body: dict[str, Any], ps: PaddleService
) -> float | None:
    meta = body["metadata"]
    generation = meta.get("generation", 1)
    owner = Owner(meta["name"], meta["namespace"], meta["uid"], dict(meta.get("labels") or {}))
    live = ctx.knative_services.get(key)
    if live is not None and owned_by_predecessor(live, owner):
        # Deleted and re-created under the same name: the old Knative Service is garbage the collector has
        # not reached yet (slow after an API server restart). Remove it now, that incarnation only.
        logger.info(
            "Deleted the Knative Service of a deleted predecessor namespace=%s name=%s uid=%s",
            owner.namespace,
            owner.name,
            live["metadata"]["uid"],
        )
        await ctx.kube.delete(KNATIVE_SERVICES, owner.namespace, owner.name, uid=live["metadata"]["uid"])
        ctx.knative_services.forget(key)
        live = None
    if live is not None and not owned_by(live, owner.uid):
        await refuse_paddleservice(
            ctx,
            body,
            "KnativeServiceConflict",
            f"A Knative Service named {owner.name} already exists and is not owned by this PaddleService; "
            "rename one of them.",
        )
        return None
    observed = observe(ctx, key, live)
    try:
        desired, rollout = build_knative_service(owner, ps.spec, observed)
    except InvalidSpec as err:
        await refuse_paddleservice(ctx, body, "InvalidSpec", str(err))
        return None
    desired["metadata"].setdefault("annotations", {})[APPLIED_DIGEST] = digest(desired)

    if live is None or not is_subset(desired, live):
        why = "absent" if live is None else first_difference(desired, live)
        try:
            applied = await ctx.kube.apply(KNATIVE_SERVICES, desired, field_manager=FIELD_MANAGER)
        except Invalid as err:
            await refuse_paddleservice(
                ctx,
                body,
                "KnativeServiceRejected",
                f"The API server refused the Knative Service: {err.message}",
            )
            return None
        except KubeError as err:
            await write_status(
                ctx,
                PADDLESERVICES,
                ctx.paddleservices,
                body,
                failure_status(
                    body,
                    model=PaddleServiceStatus,
                    reason=APPLY_FAILED,
                    ready="Unknown",
                    message=f"Applying the Knative Service failed; retrying with backoff: {err.message}",
                ),
            )
            raise RetryLater(f"applying the Knative Service failed: {err}") from err
        ctx.knative_services.store(applied)
        live = ctx.knative_services.get(key)
        observed = observe(ctx, key, live)
        logger.info(
            "Applied Knative Service namespace=%s name=%s generation=%s changed=%s template=%s traffic=%s",
            owner.namespace,
            owner.name,
            generation,
            why,
            rollout.template["metadata"]["name"],
            ",".join(f"{t['tag']}:{t['revisionName']}={t['percent']}" for t in rollout.traffic),
        )

    has_status = bool(live and live.get("status"))
    status = knative_status(
        generation=generation,
        previous=ps.status,
        rollout=rollout,
        observed=observed if has_status else None,
        now=now_rfc3339(),
    )
    if (body.get("status") or {}).get("observedGeneration") != generation:
        await _warn_once(ctx, key, body, generation, knative_warnings(ps.spec))
    wait = _hold(ctx, key, body.get("status") or {}, status.wire())
    if wait is not None:
        return wait
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, status)
    return None


def _hold(ctx: Context, key: Key, stored: dict[str, Any], new: dict[str, Any]) -> float | None:
    """Seconds to hold the new status back (a step between the writes that matter), or None to write it now.

    A held step goes out with the next status worth a write, or once it has waited HOLD_SECONDS (the
    reconcile is queued again for then), so a rollout stuck in Unknown still shows its latest step.
    """
    if stored == new or worth_writing(stored, new):
        ctx.held.pop(key, None)
        return None
    now = time.monotonic()
    wait = HOLD_SECONDS - (now - ctx.held.setdefault(key, now))
    if wait > 0:
        return wait
    ctx.held.pop(key, None)
    return None


async def _warn_once(
    ctx: Context, key: Key, body: dict[str, Any], generation: int, warnings: list[str]
) -> None:
    if not warnings or ctx.warned.get(key) == generation:
        return
    ctx.warned[key] = generation
    for message in warnings:
        await ctx.kube.post_event(body, type="Warning", reason="SlowColdStart", message=message)
