"""Reconcile a PaddleService with `spec.backend: kuscia` onto a Kuscia serving.

A thin executor: `status/kuscia_plan.plan_serving` decides; this module deletes (finalizer, backend
switch), carries the plan out and writes its status.
"""

from __future__ import annotations

import logging
from typing import Any

from ..adapters.kube import KNATIVE_SERVICES, PADDLESERVICES, KubeError
from ..adapters.kuscia import KusciaAlreadyExists, KusciaError
from ..builders.kuscia import serving_id
from ..models.kuscia import Kind
from ..models.paddleservice import PaddleService, PaddleServiceStatus
from ..runtime.cache import Key
from ..runtime.context import Context, now_rfc3339
from ..runtime.kuscia_hub import (
    Connection,
    NoKusciaConnection,
    describe,
    is_refusal,
    refusal,
    send_serving,
)
from ..runtime.queue import RetryLater
from ..status.conditions import condition
from ..status.kuscia import UNSEEN, Problem
from ..status.kuscia_plan import plan_serving
from .common import ensure_finalizer, failure_status, owned_by, remove_finalizer, write_status

logger = logging.getLogger("paddle_kuscia")

FINALIZER = "paddle-kuscia.io/kuscia-serving"


async def reconcile_kuscia_serving(
    ctx: Context, key: Key, body: dict[str, Any], ps: PaddleService
) -> float | None:
    meta = body["metadata"]
    spec = ps.spec
    assert (
        spec.kuscia is not None
        or meta.get("deletionTimestamp")
        or FINALIZER in (meta.get("finalizers") or [])
    )
    kuscia = spec.kuscia
    sid = serving_id(meta["name"], spec)
    hub = ctx.kuscia
    previous_block = (body.get("status") or {}).get("kuscia") or {}

    try:
        conn = await hub.connection(meta["namespace"], kuscia.connection_secret if kuscia else None)
    except NoKusciaConnection as err:
        await _problem(ctx, body, Problem("False", "KusciaNotConfigured", str(err)))
        raise RetryLater(str(err)) from None

    if meta.get("deletionTimestamp"):
        remote_id = previous_block.get("servingId") or sid
        try:
            await conn.client.delete_serving(remote_id, missing_ok=True)
        except KusciaError as err:
            await _problem(ctx, body, describe(err))
            raise RetryLater(f"deleting Kuscia serving {remote_id} failed: {err}") from None
        logger.info("Deleted Kuscia serving serving_id=%s namespace=%s name=%s", remote_id, *key)
        hub.untrack(Kind.PADDLESERVICE, key)
        await remove_finalizer(ctx, PADDLESERVICES, ctx.paddleservices, body, FINALIZER)
        return None

    if kuscia is None:  # backend switched away from kuscia: clean up the remote serving first
        return await _switch_away(ctx, key, body, conn, previous_block.get("servingId") or sid)

    kind = Kind.PADDLESERVICE
    plan = plan_serving(
        name=meta["name"],
        spec=spec,
        generation=meta.get("generation", 1),
        annotations=meta.get("annotations"),
        previous=body.get("status"),
        remote=hub.remote(kind, conn, sid) or UNSEEN,
        sent_by_this_process=hub.applied(conn, sid),
        first_look=hub.first_look(conn, sid),
        other_owners=["/".join(k) for k in hub.other_owners(kind, conn, sid, key)],
        refused=hub.refused(kind, conn, sid),
        problem=conn.problem_for(kind),
        now=now_rfc3339(),
    )
    if plan.refusal is not None:
        await _refuse(ctx, body, plan.refusal.reason, plan.refusal.message)
        return None

    hub.track(kind, conn, sid, key)  # right after the check, with no await between: first come, first served
    body = await ensure_finalizer(ctx, PADDLESERVICES, ctx.paddleservices, body, FINALIZER)
    await _drop_knative_service(ctx, key, meta["uid"])
    if plan.still_refused is not None:
        await _problem(ctx, body, plan.still_refused)
        return None
    if plan.drift_checked:
        hub.looked(conn, sid)

    failed = _FailureReporter(ctx, body, conn, sid, plan.attempt)
    try:
        if plan.appimage is not None:
            try:
                await conn.client.create_appimage(plan.appimage)
                logger.info(
                    "Registered Kuscia AppImage name=%s namespace=%s ps=%s", plan.appimage["name"], *key
                )
            except KusciaAlreadyExists:
                pass
        for old_id in plan.delete:  # spec.kuscia.servingId changed: the serving under the old id goes
            await conn.client.delete_serving(old_id, missing_ok=True)
            hub.set_applied(conn, old_id, None)
            logger.info(
                "Deleted Kuscia serving after an id change serving_id=%s namespace=%s name=%s", old_id, *key
            )
        if plan.send is not None:
            done = await send_serving(conn.client, plan.send)
            logger.info("%s Kuscia serving serving_id=%s namespace=%s name=%s", done, sid, *key)
    except KusciaError as err:
        await failed(err)
        return None
    hub.set_refused(kind, conn, sid, None)
    if plan.send is not None:
        hub.set_applied(conn, sid, plan.applied_hash)
        hub.forget_remote(kind, conn, sid)
    assert plan.status is not None
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, plan.status)
    return None


async def _refuse(ctx: Context, body: dict[str, Any], reason: str, message: str) -> None:
    """Nothing is sent to Kuscia: Ready and KusciaServingReady say why."""
    await _problem(ctx, body, Problem("False", reason, message))


async def _drop_knative_service(ctx: Context, key: Key, uid: str) -> None:
    """A PaddleService moved from Knative to Kuscia: its Knative Service goes."""
    live = ctx.knative_services.get(key)
    if live is not None and owned_by(live, uid):
        try:
            await ctx.kube.delete(KNATIVE_SERVICES, key[0], key[1])
        except KubeError as err:
            raise RetryLater(f"deleting the Knative Service failed: {err}") from err
        ctx.knative_services.forget(key)
        logger.info("Deleted Knative Service after the backend moved to Kuscia namespace=%s name=%s", *key)


async def _switch_away(
    ctx: Context, key: Key, body: dict[str, Any], conn: Connection, remote_id: str
) -> float | None:
    try:
        await conn.client.delete_serving(remote_id, missing_ok=True)
    except KusciaError as err:
        await _problem(ctx, body, describe(err))
        raise RetryLater(str(err)) from None
    ctx.kuscia.untrack(Kind.PADDLESERVICE, key)
    await remove_finalizer(ctx, PADDLESERVICES, ctx.paddleservices, body, FINALIZER)
    ctx.queues[Kind.PADDLESERVICE].add(key)  # now reconcile it on its new backend
    return None


class _FailureReporter:
    """Say in the status why Kuscia did not do what we asked. A refusal is remembered and not sent again
    until the object changes (no loop of identical requests); anything else is retried with backoff."""

    def __init__(self, ctx: Context, body: dict[str, Any], conn: Connection, sid: str, attempt: str) -> None:
        self.ctx, self.body, self.conn, self.sid, self.attempt = ctx, body, conn, sid, attempt

    async def __call__(self, err: KusciaError) -> None:
        if is_refusal(err):
            problem = refusal(err)
            # Remembered before the status write, which may conflict and retry: the retry must not
            # send the refused request again.
            self.ctx.kuscia.set_refused(Kind.PADDLESERVICE, self.conn, self.sid, self.attempt, problem)
            await _problem(self.ctx, self.body, problem)
            return None
        await _problem(self.ctx, self.body, describe(err))
        raise RetryLater(str(err))


async def _problem(ctx: Context, body: dict[str, Any], problem: Problem) -> None:
    """`Ready` and `KusciaServingReady` say what went wrong; the rest of the status stays as it was."""
    status = failure_status(
        body,
        reason=problem.reason,
        message=problem.message,
        ready=problem.status,
        model=PaddleServiceStatus,
        extra=[
            condition(
                "KusciaServingReady", problem.status, problem.reason, problem.message, now=now_rfc3339()
            )
        ],
    )
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, status)
