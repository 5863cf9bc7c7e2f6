"""Reconcile a PaddleService with `spec.backend: kuscia` onto a Kuscia serving."""

from __future__ import annotations

import logging
from typing import Any

from ..adapters.kube import KNATIVE_SERVICES, PADDLESERVICES, KubeError
from ..adapters.kuscia import KusciaAlreadyExists, KusciaError, KusciaNotFound
from ..builders.compare import digest
from ..builders.knative import InvalidSpec, container_resources
from ..builders.kuscia import (
    appimage_name,
    build_appimage,
    paddleservice_create_request,
    serving_id,
    unsupported_on_kuscia,
    update_request,
)
from ..models.paddleservice import PaddleService
from ..runtime.cache import Key
from ..runtime.context import Context, now_rfc3339
from ..runtime.kuscia_hub import (
    Connection,
    NoKusciaConnection,
    attempt_key,
    describe,
    is_refusal,
    refusal,
)
from ..runtime.queue import RetryLater
from ..status.conditions import Cond
from ..status.kuscia import MISSING, UNSEEN, Problem, paddleservice_kuscia_status
from .common import ensure_finalizer, failure_status, remove_finalizer, write_status

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
        hub.untrack("ps", key)
        await remove_finalizer(ctx, PADDLESERVICES, ctx.paddleservices, body, FINALIZER)
        return None

    if kuscia is None:  # backend switched away from kuscia: clean up the remote serving first
        return await _switch_away(ctx, key, body, conn, previous_block.get("servingId") or sid)

    problems = unsupported_on_kuscia(spec)
    if problems:
        await _refuse(
            ctx, body, "UnsupportedOnKuscia", "Not supported on the Kuscia backend: " + "; ".join(problems)
        )
        return None

    try:
        container_resources(spec)  # the same request/limit rules as on Knative
    except InvalidSpec as err:
        await _refuse(ctx, body, "InvalidSpec", str(err))
        return None
    others = hub.other_owners("ps", conn, sid, key)
    if others:
        owner = "/".join(sorted(others)[0])
        await _refuse(
            ctx,
            body,
            "ServingIdConflict",
            f"Kuscia serving {sid!r} is already run for PaddleService {owner}; set spec.kuscia.servingId "
            "to a distinct id.",
        )
        return None

    hub.track("ps", conn, sid, key)  # right after the check, with no await between: first come, first served
    body = await ensure_finalizer(ctx, PADDLESERVICES, ctx.paddleservices, body, FINALIZER)
    await _drop_knative_service(ctx, key, meta["uid"])

    app_image = None
    if any(p.app_image is None for p in kuscia.parties):
        app_image = appimage_name(meta["name"], spec)
    request = paddleservice_create_request(meta["name"], spec, app_image)
    wanted_hash = digest(request)
    attempt = attempt_key(body, wanted_hash)
    refused = hub.refused("ps", conn, sid, attempt)
    if refused is not None:  # Kuscia refused exactly this: say so (or what is wrong now), send nothing
        await _problem(ctx, body, conn.problem_for("ps") or refused)
        return None
    failed = _FailureReporter(ctx, body, conn, sid, attempt)

    if app_image is not None and previous_block.get("appImage") != app_image:
        try:
            await conn.client.create_appimage(build_appimage(meta["name"], spec))
            logger.info("Registered Kuscia AppImage name=%s namespace=%s ps=%s", app_image, *key)
        except KusciaAlreadyExists:
            pass
        except KusciaError as err:
            return await failed(err)
    # What this process last sent wins over the status: a status write may have failed after a send.
    applied_hash = hub.applied(conn, sid) or previous_block.get("appliedHash")
    old_id = previous_block.get("servingId")
    if old_id and old_id != sid:  # spec.kuscia.servingId changed: the serving under the old id goes
        try:
            await conn.client.delete_serving(old_id, missing_ok=True)
        except KusciaError as err:
            return await failed(err)
        logger.info(
            "Deleted Kuscia serving after an id change serving_id=%s namespace=%s name=%s", old_id, *key
        )
        hub.set_applied(conn, old_id, None)
        applied_hash = None
    remote = hub.remote("ps", conn, sid)
    if (
        applied_hash == wanted_hash
        and hub.applied(conn, sid) is None
        and isinstance(remote, dict)
        and hub.first_look(conn, sid)
        and _replicas_drifted(request, remote)
    ):
        # The recorded digest may predate an update a crashed predecessor sent (its status write lost):
        # Kuscia runs other replicas than the spec asks for, so send the spec once more.
        logger.info(
            "Kuscia serving differs from the recorded spec serving_id=%s namespace=%s name=%s", sid, *key
        )
        applied_hash = None if remote == MISSING else "drifted"
    sent = False
    try:
        if applied_hash is None or remote == MISSING:
            try:
                await conn.client.create_serving(request)
                logger.info("Created Kuscia serving serving_id=%s namespace=%s name=%s", sid, *key)
            except KusciaAlreadyExists:
                await conn.client.update_serving(update_request(request))
                logger.info("Adopted existing Kuscia serving serving_id=%s namespace=%s name=%s", sid, *key)
            sent = True
        elif applied_hash != wanted_hash:
            try:
                await conn.client.update_serving(update_request(request))
                logger.info("Updated Kuscia serving serving_id=%s namespace=%s name=%s", sid, *key)
            except KusciaNotFound:
                await conn.client.create_serving(request)
                logger.info("Re-created Kuscia serving serving_id=%s namespace=%s name=%s", sid, *key)
            sent = True
    except KusciaError as err:
        return await failed(err)
    hub.set_refused("ps", conn, sid, None)
    if sent:
        hub.set_applied(conn, sid, wanted_hash)
        hub.set_remote("ps", conn, sid, None)
        remote = None
    elif remote is None:
        remote = UNSEEN  # not polled since the operator started: the status written before still holds

    status = paddleservice_kuscia_status(
        generation=meta.get("generation", 1),
        previous=body.get("status"),
        serving_id=sid,
        initiator=kuscia.initiator,
        detail=remote,
        problem=conn.problem_for("ps"),
        applied_hash=wanted_hash,
        app_image=app_image,
        now=now_rfc3339(),
    )
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, status)
    return None


def _replicas_drifted(request: dict[str, Any], detail: dict[str, Any]) -> bool:
    for party in request.get("parties") or []:
        for seen in detail.get("party_statuses") or []:
            same = seen.get("domain_id") == party["domain_id"] and (seen.get("role") or "") == party.get(
                "role", ""
            )
            known = "replicas" in party and seen.get("replicas") is not None
            if same and known and int(seen["replicas"]) != int(party["replicas"]):
                return True
    return False


async def _refuse(ctx: Context, body: dict[str, Any], reason: str, message: str) -> None:
    """Nothing is sent to Kuscia: Ready and KusciaServingReady say why."""
    status = failure_status(
        body, reason=reason, message=message, extra=[Cond("KusciaServingReady", "False", reason, message)]
    )
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, status)


async def _drop_knative_service(ctx: Context, key: Key, uid: str) -> None:
    """A PaddleService moved from Knative to Kuscia: its Knative Service goes."""
    from .paddleservice import owned_by

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
    ctx.kuscia.untrack("ps", key)
    await remove_finalizer(ctx, PADDLESERVICES, ctx.paddleservices, body, FINALIZER)
    ctx.queues["PaddleService"].add(key)  # now reconcile it on its new backend
    return None


class _FailureReporter:
    """Say in the status why Kuscia did not do what we asked. A refusal is remembered and not sent again
    until the object changes (no loop of identical requests); anything else is retried with backoff."""

    def __init__(self, ctx: Context, body: dict[str, Any], conn: Connection, sid: str, attempt: str) -> None:
        self.ctx, self.body, self.conn, self.sid, self.attempt = ctx, body, conn, sid, attempt

    async def __call__(self, err: KusciaError) -> None:
        if is_refusal(err):
            problem = refusal(err)
            await _problem(self.ctx, self.body, problem)
            self.ctx.kuscia.set_refused("ps", self.conn, self.sid, self.attempt, problem)
            return None
        await _problem(self.ctx, self.body, describe(err))
        raise RetryLater(str(err))


async def _problem(ctx: Context, body: dict[str, Any], problem: Problem) -> None:
    status = failure_status(
        body,
        reason=problem.reason,
        message=problem.message,
        ready=problem.status,
        extra=[Cond("KusciaServingReady", problem.status, problem.reason, problem.message)],
    )
    await write_status(ctx, PADDLESERVICES, ctx.paddleservices, body, status)
