"""Mirror KusciaDeployment and KusciaJob objects from this cluster onto a Kuscia instance.

Opt-in per object (annotation `paddle-kuscia.io/mirror: "true"`) or for all (`--mirror-kuscia-resources`),
so the operator never fights Kuscia's own controllers inside a Kuscia cluster.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, NoReturn

from pydantic import ValidationError

from ..adapters.kube import KUSCIA_DEPLOYMENTS, KUSCIA_JOBS, Resource
from ..adapters.kuscia import KusciaAlreadyExists, KusciaError, KusciaNotFound
from ..builders.compare import digest
from ..builders.kuscia import (
    InvalidKusciaJob,
    bfia_create_request,
    deployment_create_request,
    job_create_request,
    update_request,
)
from ..models.base import KUSCIA_ID
from ..models.kuscia import KusciaDeployment, KusciaJob
from ..runtime.cache import Key, ObjectCache
from ..runtime.context import Context, now_rfc3339
from ..runtime.kuscia_hub import NoKusciaConnection, attempt_key, describe, is_refusal, refusal
from ..runtime.queue import RetryLater
from ..status.kuscia import JOB_TERMINAL, MISSING, UNSEEN, Problem, deployment_status, job_status
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


async def _prelude(
    ctx: Context, kind: str, resource: Resource, cache: ObjectCache, key: Key, model: Any
) -> tuple[dict[str, Any], Any, Any] | None:
    """Common steps: mirror opt-out, validation, connection. Returns (body, parsed, connection) or None."""
    body = cache.get(key)
    if body is None:
        return None
    meta = body["metadata"]
    if not _mirrored(ctx, body):
        # Mirroring switched off: let go of the object; the remote serving or job stays as it is.
        ctx.kuscia.untrack(kind, key)
        await remove_finalizer(ctx, resource, cache, body, FINALIZER)
        return None
    if not re.match(KUSCIA_ID, meta["name"]):
        await _fail(
            ctx,
            resource,
            cache,
            body,
            "InvalidName",
            f"{meta['name']!r} is not a valid Kuscia id ({KUSCIA_ID}).",
        )
        return None
    try:
        parsed = model.model_validate(body)
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
        await _fail(ctx, resource, cache, body, "InvalidSpec", f"The spec is invalid: {where}")
        return None
    secret = (meta.get("annotations") or {}).get(CONNECTION_ANNOTATION)
    try:
        conn = await ctx.kuscia.connection(meta["namespace"], secret)
    except NoKusciaConnection as err:
        await _fail(ctx, resource, cache, body, "KusciaNotConfigured", str(err))
        raise RetryLater(str(err)) from None
    return body, parsed, conn


async def _fail(
    ctx: Context,
    resource: Resource,
    cache: ObjectCache,
    body: dict[str, Any],
    reason: str,
    message: str,
    ready: str = "False",
) -> None:
    await write_status(
        ctx, resource, cache, body, failure_status(body, reason=reason, message=message, ready=ready)
    )


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
    remember: tuple[str, Any, str, str],
) -> None:
    """A failed create or update: a refusal is remembered (kind, connection, id, attempt) and not sent
    again until the object changes; anything else is retried with backoff."""
    if not is_refusal(err):
        await _report(ctx, resource, cache, body, err)
    problem = refusal(err)
    await _fail(ctx, resource, cache, body, problem.reason, problem.message, ready=problem.status)
    ctx.kuscia.set_refused(*remember, problem)


async def _still_refused(
    ctx: Context, resource: Resource, cache: ObjectCache, body: dict[str, Any], problem: Problem
) -> None:
    await _fail(ctx, resource, cache, body, problem.reason, problem.message, ready=problem.status)


async def reconcile_kuscia_deployment(ctx: Context, key: Key) -> float | None:
    cache, resource = ctx.kuscia_deployments, KUSCIA_DEPLOYMENTS
    found = await _prelude(ctx, "kd", resource, cache, key, KusciaDeployment)
    if found is None:
        return None
    body, kd, conn = found
    meta = body["metadata"]
    name = meta["name"]
    if meta.get("deletionTimestamp"):
        try:
            await conn.client.delete_serving(name, missing_ok=True)
        except KusciaError as err:
            await _report(ctx, resource, cache, body, err)
        logger.info("Deleted Kuscia serving of KusciaDeployment namespace=%s name=%s", *key)
        ctx.kuscia.untrack("kd", key)
        await remove_finalizer(ctx, resource, cache, body, FINALIZER)
        return None
    body = await ensure_finalizer(ctx, resource, cache, body, FINALIZER)
    ctx.kuscia.track("kd", conn, name, key)
    request = deployment_create_request(name, kd.spec)
    wanted = digest(request)
    attempt = attempt_key(body, wanted)
    refused = ctx.kuscia.refused("kd", conn, name, attempt)
    if refused is not None:  # Kuscia refused exactly this: say so (or what is wrong now), send nothing
        await _still_refused(ctx, resource, cache, body, conn.problem_for("kd") or refused)
        return None
    mirror = dict((body.get("status") or {}).get("mirror") or {})
    remote = ctx.kuscia.remote("kd", conn, name)
    sent = False
    try:
        if not mirror.get("specHash") or remote == MISSING:
            try:
                await conn.client.create_serving(request)
                logger.info("Created Kuscia serving for KusciaDeployment namespace=%s name=%s", *key)
            except KusciaAlreadyExists:
                await conn.client.update_serving(update_request(request))
                logger.info("Adopted existing Kuscia serving for KusciaDeployment namespace=%s name=%s", *key)
            sent = True
        elif mirror["specHash"] != wanted:
            try:
                await conn.client.update_serving(update_request(request))
                logger.info("Updated Kuscia serving for KusciaDeployment namespace=%s name=%s", *key)
            except KusciaNotFound:
                await conn.client.create_serving(request)
                logger.info("Re-created Kuscia serving for KusciaDeployment namespace=%s name=%s", *key)
            sent = True
    except KusciaError as err:
        await _report_send(ctx, resource, cache, body, err, ("kd", conn, name, attempt))
        return None
    ctx.kuscia.set_refused("kd", conn, name, None)
    if sent:
        ctx.kuscia.set_remote("kd", conn, name, None)
        remote = None
        mirror = {
            "remoteId": name,
            "specHash": wanted,
            "submittedGeneration": meta.get("generation", 1),
            "connection": conn.url,
        }
    elif remote is None:
        remote = UNSEEN
    status = deployment_status(
        name=name,
        generation=meta.get("generation", 1),
        previous=body.get("status"),
        detail=remote,
        problem=conn.problem_for("kd"),
        mirror=mirror,
        spec_changed_after_submit=False,
        now=now_rfc3339(),
    )
    await write_status(ctx, resource, cache, body, status)
    return None


async def reconcile_kuscia_job(ctx: Context, key: Key) -> float | None:
    cache, resource = ctx.kuscia_jobs, KUSCIA_JOBS
    found = await _prelude(ctx, "job", resource, cache, key, KusciaJob)
    if found is None:
        return None
    body, kj, conn = found
    meta = body["metadata"]
    name = meta["name"]
    status_now = body.get("status") or {}
    mirror = dict(status_now.get("mirror") or {})
    remote = ctx.kuscia.remote("job", conn, name)
    if meta.get("deletionTimestamp"):
        try:
            if mirror.get("specHash") and status_now.get("phase") not in JOB_TERMINAL:
                with contextlib.suppress(KusciaNotFound):
                    await conn.client.stop_job(name, reason="KusciaJob deleted in Kubernetes")
            await conn.client.delete_job(name, missing_ok=True)
        except KusciaError as err:
            await _report(ctx, resource, cache, body, err)
        logger.info("Stopped and deleted Kuscia job namespace=%s name=%s", *key)
        ctx.kuscia.untrack("job", key)
        await remove_finalizer(ctx, resource, cache, body, FINALIZER)
        return None

    body = await ensure_finalizer(ctx, resource, cache, body, FINALIZER)
    bfia = (meta.get("annotations") or {}).get(PROTOCOL_ANNOTATION) == "bfia"
    try:
        request = bfia_create_request(name, kj.spec) if bfia else job_create_request(name, kj.spec)
    except InvalidKusciaJob as err:
        # Refused before anything is sent; a spec change brings the job back here.
        await _fail(ctx, resource, cache, body, "InvalidSpec", str(err))
        return None
    wanted = digest(request)
    attempt = attempt_key(body, wanted)
    sent = False
    if not mirror.get("specHash"):
        refused = ctx.kuscia.refused("job", conn, name, attempt)
        if refused is not None:  # Kuscia refused exactly this: say so, send nothing
            await _still_refused(ctx, resource, cache, body, refused)
            return None
        try:
            if bfia:
                await ctx.kuscia.bfia().create_job(request)
            else:
                await conn.client.create_job(request)
            logger.info(
                "Submitted Kuscia job namespace=%s name=%s protocol=%s", *key, "bfia" if bfia else "kuscia"
            )
        except KusciaAlreadyExists:
            logger.info("Adopted existing Kuscia job namespace=%s name=%s", *key)
        except NoKusciaConnection as err:
            await _fail(ctx, resource, cache, body, "KusciaNotConfigured", str(err))
            return None
        except KusciaError as err:
            await _report_send(ctx, resource, cache, body, err, ("job", conn, name, attempt))
            return None
        ctx.kuscia.set_refused("job", conn, name, None)
        mirror = {
            "remoteId": name,
            "specHash": wanted,
            "submittedGeneration": meta.get("generation", 1),
            "connection": conn.url,
        }
        sent = True
    polled = True
    if sent:
        ctx.kuscia.track("job", conn, name, key)
        ctx.kuscia.set_remote("job", conn, name, None)
        remote = None
    elif remote is None and status_now.get("phase") in JOB_TERMINAL:
        # Finished before this operator started: Kuscia has nothing new to say, so it is not polled.
        ctx.kuscia.untrack("job", key)
        remote, polled = UNSEEN, False
    else:
        ctx.kuscia.track("job", conn, name, key)
        remote = UNSEEN if remote is None else remote
    status = job_status(
        generation=meta.get("generation", 1),
        previous=body.get("status"),
        detail=remote,
        problem=conn.problem_for("job") if polled else None,
        mirror=mirror,
        spec_changed_after_submit=mirror.get("specHash") != wanted,
        now=now_rfc3339(),
    )
    await write_status(ctx, resource, cache, body, status)
    return None
