"""Mirror KusciaDeployment and KusciaJob objects from this cluster onto a Kuscia instance.

Thin executors: `status/kuscia_plan.plan_deployment` and `plan_job` decide; this module deletes, carries
the plan out and writes its status.

Opt-in per object (annotation `paddle-kuscia.io/mirror: "true"`) or for all (`--mirror-kuscia-resources`),
so the operator never fights Kuscia's own controllers inside a Kuscia cluster.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from pydantic import ValidationError

from ..adapters.kube import KUSCIA_DEPLOYMENTS, KUSCIA_JOBS, Resource
from ..adapters.kuscia import KusciaAlreadyExists, KusciaError, KusciaNotFound
from ..models.base import KUSCIA_ID
from ..models.kuscia import Kind, KusciaDeployment, KusciaDeploymentStatus, KusciaJob, KusciaJobStatus
from ..runtime.cache import Key, ObjectCache
from ..runtime.context import Context, now_rfc3339
from ..runtime.kuscia_hub import Connection, NoKusciaConnection, describe, is_refusal, refusal, send_serving
from ..runtime.queue import RetryLater
from ..status.kuscia import JOB_TERMINAL, UNSEEN, Problem
from ..status.kuscia_plan import MirrorInputs, plan_deployment, plan_job
from .common import ensure_finalizer, failure_status, remove_finalizer, write_status

logger = logging.getLogger("paddle_kuscia")

MIRROR_ANNOTATION = "paddle-kuscia.io/mirror"
CONNECTION_ANNOTATION = "paddle-kuscia.io/connection-secret"
PROTOCOL_ANNOTATION = "paddle-kuscia.io/protocol"
FINALIZER = "paddle-kuscia.io/kuscia-mirror"


def _mirrored(ctx: Context, body: dict[str, Any]) -> bool:
    return (
        ctx.config.mirror_all or (body["metadata"].get("annotations") or {}).get(MIRROR_ANNOTATION) == "true"
    )


@dataclass(frozen=True)
class _Mirror:
    """What differs between the mirrored kinds: the model, how the remote object goes, how the plan is made
    and carried out (`apply`, given the object with its finalizer, parsed, and its Kuscia connection)."""

    kind: Kind
    resource: Resource
    model: type[KusciaDeployment] | type[KusciaJob]
    delete: Callable[[Connection, dict[str, Any]], Awaitable[None]]
    deleted: str  # logged once the remote object is deleted, with namespace and name
    apply: Callable[[Context, Key, ObjectCache, dict[str, Any], Any, Connection], Awaitable[None]]


async def _reconcile(ctx: Context, mirror: _Mirror, cache: ObjectCache, key: Key) -> None:
    """The steps both kinds share: mirror opt-out, validation, connection, deletion, finalizer; then the
    kind's own `apply`."""
    kind, resource = mirror.kind, mirror.resource
    body = cache.get(key)
    if body is None:
        return
    meta = body["metadata"]
    if not _mirrored(ctx, body):
        # Mirroring switched off: let go of the object; the remote serving or job stays as it is.
        ctx.kuscia.untrack(kind, key)
        await remove_finalizer(ctx, resource, cache, body, FINALIZER)
        return
    if not re.match(KUSCIA_ID, meta["name"]):
        await _fail(
            ctx,
            resource,
            cache,
            body,
            "InvalidName",
            f"{meta['name']!r} is not a valid Kuscia id ({KUSCIA_ID}).",
        )
        return
    try:
        parsed = mirror.model.model_validate(body)
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
        await _fail(ctx, resource, cache, body, "InvalidSpec", f"The spec is invalid: {where}")
        return
    secret = (meta.get("annotations") or {}).get(CONNECTION_ANNOTATION)
    try:
        conn = await ctx.kuscia.connection(meta["namespace"], secret)
    except NoKusciaConnection as err:
        await _fail(ctx, resource, cache, body, "KusciaNotConfigured", str(err))
        raise RetryLater(str(err)) from None
    if meta.get("deletionTimestamp"):
        # Whatever the error, the deletion must finish: it is retried with the key's backoff.
        try:
            await mirror.delete(conn, body)
        except KusciaError as err:
            await _report(ctx, resource, cache, body, err)
        logger.info(mirror.deleted, *key)
        ctx.kuscia.untrack(kind, key)
        await remove_finalizer(ctx, resource, cache, body, FINALIZER)
        return
    body = await ensure_finalizer(ctx, resource, cache, body, FINALIZER)
    await mirror.apply(ctx, key, cache, body, parsed, conn)


async def _fail(
    ctx: Context,
    resource: Resource,
    cache: ObjectCache,
    body: dict[str, Any],
    reason: str,
    message: str,
    ready: Literal["False", "Unknown"] = "False",
) -> None:
    """`Ready` says what went wrong; the rest of the status stays as it was."""
    model = KusciaDeploymentStatus if resource.kind == Kind.DEPLOYMENT else KusciaJobStatus
    status = failure_status(body, reason=reason, message=message, ready=ready, model=model)
    await write_status(ctx, resource, cache, body, status)


async def _report(
    ctx: Context, resource: Resource, cache: ObjectCache, body: dict[str, Any], err: KusciaError
) -> NoReturn:
    """Say why in the status, then retry with the key's backoff (deletions must finish, whatever the error)."""
    problem = describe(err)
    await _fail(ctx, resource, cache, body, problem.reason, problem.message, ready=problem.status)
    raise RetryLater(str(err))


async def _report_send(
    ctx: Context,
    resource: Resource,
    cache: ObjectCache,
    body: dict[str, Any],
    err: KusciaError,
    remember: tuple[Kind, Any, str, str],
) -> None:
    """A failed create or update: a refusal is remembered (kind, connection, id, attempt) and not sent
    again until the object changes; anything else is retried with backoff."""
    if not is_refusal(err):
        await _report(ctx, resource, cache, body, err)
    problem = refusal(err)
    # Remembered before the status write, which may conflict and retry: the retry must not send the
    # refused request again.
    ctx.kuscia.set_refused(*remember, problem)
    await _fail(ctx, resource, cache, body, problem.reason, problem.message, ready=problem.status)


async def _still_refused(
    ctx: Context, resource: Resource, cache: ObjectCache, body: dict[str, Any], problem: Problem
) -> None:
    await _fail(ctx, resource, cache, body, problem.reason, problem.message, ready=problem.status)


def _inputs(ctx: Context, kind: Kind, conn: Connection, body: dict[str, Any]) -> MirrorInputs:
    """What the plan reads besides the spec: the object, its status, and what Kuscia and this process know."""
    meta = body["metadata"]
    name = meta["name"]
    return MirrorInputs(
        name=name,
        generation=meta.get("generation", 1),
        annotations=meta.get("annotations"),
        previous=body.get("status"),
        remote=ctx.kuscia.remote(kind, conn, name) or UNSEEN,
        connection_url=conn.url,
        refused=ctx.kuscia.refused(kind, conn, name),
        problem=conn.problem_for(kind),
        now=now_rfc3339(),
    )


async def _delete_serving(conn: Connection, body: dict[str, Any]) -> None:
    await conn.client.delete_serving(body["metadata"]["name"], missing_ok=True)


async def _stop_and_delete_job(conn: Connection, body: dict[str, Any]) -> None:
    name, status = body["metadata"]["name"], body.get("status") or {}
    if (status.get("mirror") or {}).get("specHash") and status.get("phase") not in JOB_TERMINAL:
        with contextlib.suppress(KusciaNotFound):
            await conn.client.stop_job(name, reason="KusciaJob deleted in Kubernetes")
    await conn.client.delete_job(name, missing_ok=True)


async def _apply_deployment(
    ctx: Context, key: Key, cache: ObjectCache, body: dict[str, Any], kd: KusciaDeployment, conn: Connection
) -> None:
    kind, resource, name = Kind.DEPLOYMENT, KUSCIA_DEPLOYMENTS, body["metadata"]["name"]
    ctx.kuscia.track(kind, conn, name, key)
    plan = plan_deployment(kd.spec, _inputs(ctx, kind, conn, body))
    if plan.still_refused is not None:
        await _still_refused(ctx, resource, cache, body, plan.still_refused)
        return
    if plan.send is not None:
        try:
            sent = await send_serving(conn.client, plan.send)
        except KusciaError as err:
            await _report_send(ctx, resource, cache, body, err, (kind, conn, name, plan.attempt))
            return
        logger.info("%s Kuscia serving for KusciaDeployment namespace=%s name=%s", sent, *key)
        ctx.kuscia.forget_remote(kind, conn, name)
    ctx.kuscia.set_refused(kind, conn, name, None)
    assert plan.status is not None
    await write_status(ctx, resource, cache, body, plan.status)


async def _apply_job(
    ctx: Context, key: Key, cache: ObjectCache, body: dict[str, Any], kj: KusciaJob, conn: Connection
) -> None:
    kind, resource = Kind.JOB, KUSCIA_JOBS
    meta = body["metadata"]
    name = meta["name"]
    bfia = (meta.get("annotations") or {}).get(PROTOCOL_ANNOTATION) == "bfia"
    plan = plan_job(kj.spec, _inputs(ctx, kind, conn, body), bfia=bfia)
    if plan.invalid is not None:
        # Refused before anything is sent; a spec change brings the job back here.
        await _fail(ctx, resource, cache, body, "InvalidSpec", plan.invalid)
        return
    if plan.still_refused is not None:
        await _still_refused(ctx, resource, cache, body, plan.still_refused)
        return
    if plan.submit is not None:
        try:
            if bfia:
                await ctx.kuscia.bfia().create_job(plan.submit)
            else:
                await conn.client.create_job(plan.submit)
            logger.info(
                "Submitted Kuscia job namespace=%s name=%s protocol=%s", *key, "bfia" if bfia else "kuscia"
            )
        except KusciaAlreadyExists:
            logger.info("Adopted existing Kuscia job namespace=%s name=%s", *key)
        except NoKusciaConnection as err:
            await _fail(ctx, resource, cache, body, "KusciaNotConfigured", str(err))
            return
        except KusciaError as err:
            await _report_send(ctx, resource, cache, body, err, (kind, conn, name, plan.attempt))
            return
        ctx.kuscia.set_refused(kind, conn, name, None)
        ctx.kuscia.forget_remote(kind, conn, name)
    if plan.poll:
        ctx.kuscia.track(kind, conn, name, key)
    else:
        ctx.kuscia.untrack(kind, key)
    assert plan.status is not None
    await write_status(ctx, resource, cache, body, plan.status)


_DEPLOYMENT = _Mirror(
    Kind.DEPLOYMENT,
    KUSCIA_DEPLOYMENTS,
    KusciaDeployment,
    _delete_serving,
    "Deleted Kuscia serving of KusciaDeployment namespace=%s name=%s",
    _apply_deployment,
)
_JOB = _Mirror(
    Kind.JOB,
    KUSCIA_JOBS,
    KusciaJob,
    _stop_and_delete_job,
    "Stopped and deleted Kuscia job namespace=%s name=%s",
    _apply_job,
)


async def reconcile_kuscia_deployment(ctx: Context, key: Key) -> float | None:
    await _reconcile(ctx, _DEPLOYMENT, ctx.kuscia_deployments, key)
    return None


async def reconcile_kuscia_job(ctx: Context, key: Key) -> float | None:
    await _reconcile(ctx, _JOB, ctx.kuscia_jobs, key)
    return None
