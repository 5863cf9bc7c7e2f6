"""Event wiring only: watch events feed the caches and queue keys; reconcilers do the work.

Every kind the operator watches (PaddleServices, Knative Services and Revisions, the Kuscia mirrors) arrives
through informers of our own (`runtime.informer`), which hand each event straight to a handler here. kopf runs
the process around them: log-in, start-up, clean-up, the liveness endpoint. It watches nothing, so it keeps no
state on our objects (no progress or diff-base annotations): the operator writes status, its own finalizer and
nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, cast

import kopf

from ..adapters import kubeconfig
from ..adapters.kube import (
    KNATIVE_REVISIONS,
    KNATIVE_SERVICES,
    KUSCIA_DEPLOYMENTS,
    KUSCIA_JOBS,
    PADDLESERVICES,
    KubeClient,
)
from ..models import kuscia as kuscia_models
from ..models import paddleservice as ps_models
from ..reconcile.kuscia_mirrors import (
    MIRROR_ANNOTATION,
    reconcile_kuscia_deployment,
    reconcile_kuscia_job,
)
from ..reconcile.paddleservice import reconcile_paddleservice
from ..runtime import metrics
from ..runtime.cache import Key, ObjectCache, key_of
from ..runtime.context import Config, Context, slim_object
from ..runtime.informer import InformerSet, Watched
from ..runtime.kuscia_hub import KusciaHub
from ..runtime.leader import LeaderElector
from ..runtime.queue import Priority, WorkQueue

logger = logging.getLogger("paddle_kuscia")

Reconcile = Callable[[Context, Key], Awaitable[float | None]]


def _significant(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a change can alter what we do: spec (generation), deletion, finalizers, labels, annotations.

    `old` comes from a cache, which keeps slimmed copies: compare like with like."""
    if old is None:
        return True
    a, b = old.get("metadata", {}), slim_object(new).get("metadata", {})
    return any(
        a.get(k) != b.get(k)
        for k in ("generation", "deletionTimestamp", "finalizers", "labels", "annotations", "uid")
    )


def _object(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's object as the plain JSON the caches and reconcilers work on."""
    return cast(dict[str, Any], event["object"])


def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf is given the credentials our client uses (`adapters.kubeconfig`), for the API discovery it makes
    at start. It asks again when the API server answers 401, which picks up a rotated token."""
    creds = kubeconfig.load()
    token = creds.bearer()
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_file,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=creds.cert_file,
        private_key_path=creds.key_file,
        default_namespace=creds.namespace,
    )


class Operator:
    """The kopf handlers of one operator process, bound to its `Config`; the `Context` exists once started."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx: Context | None = None
        self._watch_kube: KubeClient | None = None
        self._watching: InformerSet | None = None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            raise RuntimeError("the operator has not started")
        return self._ctx

    @property
    def started(self) -> Context | None:
        """The context while the operator runs (None before start-up and after clean-up)."""
        return self._ctx

    def register(self, registry: kopf.OperatorRegistry) -> None:
        # kopf puts its default login handlers on its global registry only; ours needs one of its own.
        kopf.on.login(registry=registry)(login)
        kopf.on.startup(registry=registry)(self.startup)
        kopf.on.cleanup(registry=registry)(self.cleanup)

    async def startup(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        config = self.config
        # kopf watches nothing (the informers do): nor namespaces and CRDs, which it would follow for
        # resources it served.
        settings.scanning.disabled = True
        kube = KubeClient(max_connections=max(8, config.workers * 2), on_request=metrics.on_kube_request)
        ctx = Context(config=config, kube=kube)
        ctx.kuscia = KusciaHub(ctx)
        informers = self._informers(ctx)
        await informers.prime()

        def queue(kind: str, reconcile: Reconcile) -> WorkQueue:
            async def run(key: Hashable) -> float | None:
                return await reconcile(ctx, cast(Key, key))

            return WorkQueue(
                kind,
                run,
                workers=config.workers,
                base_delay=config.backoff_base,
                max_delay=config.backoff_max,
                on_result=metrics.on_reconcile,
            )

        kinds = kuscia_models.Kind  # one name per kind for queues, metrics and the Kuscia hub
        ctx.queues[kinds.PADDLESERVICE] = queue(kinds.PADDLESERVICE, reconcile_paddleservice)
        ctx.queues[kinds.DEPLOYMENT] = queue(kinds.DEPLOYMENT, reconcile_kuscia_deployment)
        ctx.queues[kinds.JOB] = queue(kinds.JOB, reconcile_kuscia_job)
        # Every object is reconciled once after a start (the mirrors' caches hold only mirrored ones).
        for kind, cache in (
            (kinds.PADDLESERVICE, ctx.paddleservices),
            (kinds.DEPLOYMENT, ctx.kuscia_deployments),
            (kinds.JOB, ctx.kuscia_jobs),
        ):
            for key in cache:
                ctx.queues[kind].add(key)
        self._ctx = ctx
        informers.start()
        self._watching = informers

        def act() -> None:
            for q in ctx.queues.values():
                q.start()
            ctx.kuscia.start()
            logger.info("Started paddle-kuscia operator workers=%s", config.workers)

        if config.lease_namespace is None:
            act()
            return
        elector = LeaderElector(kube, namespace=config.lease_namespace, name=config.leader_election_name)
        ctx.tasks.append(asyncio.create_task(elector.run(), name="leader-election"))

        async def act_when_leading() -> None:
            await elector.leading.wait()
            act()

        ctx.tasks.append(asyncio.create_task(act_when_leading(), name="act-when-leading"))
        logger.info("Waiting to become the leader identity=%s", elector.identity)

    async def cleanup(self, **_: Any) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        for task in ctx.tasks:
            task.cancel()
        for q in ctx.queues.values():
            await q.stop()
        await ctx.kuscia.stop()
        await ctx.kube.aclose()
        if self._watching is not None:
            await self._watching.stop()
            self._watching = None
        if self._watch_kube is not None:
            await self._watch_kube.aclose()
            self._watch_kube = None

    def _informers(self, ctx: Context) -> InformerSet:
        """Every watched kind, listed in this order at start-up (an owner is known before what it owns), on a
        client of its own: each watch holds a connection for minutes (as many as there are kinds and
        namespaces: no limit), which must not starve the reconcilers' pool. PaddleServices and the mirrors may
        hold our finalizer, so they stay watched while their namespace is deleted."""
        self._watch_kube = KubeClient(max_connections=0, on_request=metrics.on_kube_request)
        kinds = [
            Watched(PADDLESERVICES, ctx.paddleservices, self.paddleservice_event, finalized=True),
            Watched(KNATIVE_SERVICES, ctx.knative_services, self.knative_service_event),
            Watched(KNATIVE_REVISIONS, ctx.revisions, self.revision_event),
            Watched(
                KUSCIA_DEPLOYMENTS,
                ctx.kuscia_deployments,
                self.kuscia_deployment_event,
                admit=self._mirrored,
                finalized=True,
            ),
            Watched(
                KUSCIA_JOBS, ctx.kuscia_jobs, self.kuscia_job_event, admit=self._mirrored, finalized=True
            ),
        ]
        return InformerSet(self._watch_kube, kinds, self.config)

    def _feed(
        self,
        cache: ObjectCache,
        queue_name: str,
        event: Mapping[str, Any],
        *,
        forget_extra: Callable[[Key], None] | None = None,
    ) -> None:
        ctx = self.ctx
        obj = _object(event)
        key = key_of(obj)
        if event.get("type") == "DELETED":
            cache.forget(key)
            ctx.queues[queue_name].forget(key)
            ctx.warned.pop(key, None)
            ctx.held.pop(key, None)
            if forget_extra:
                forget_extra(key)
            return
        if cache.holds(obj):  # e.g. the event of our own status write, whose response is stored already
            return
        old = cache.get(key)
        cache.store(obj)
        if _significant(old, obj):
            ctx.queues[queue_name].add(key)

    def paddleservice_event(self, event: dict[str, Any]) -> None:
        ctx = self.ctx
        self._feed(ctx.paddleservices, "PaddleService", event, forget_extra=ctx.kuscia.forget_paddleservice)

    def knative_service_event(self, event: dict[str, Any]) -> None:
        ctx = self.ctx
        obj = _object(event)
        key = key_of(obj)
        owner = _owner_key(obj) or key
        if event.get("type") == "DELETED":
            ctx.knative_services.forget(key)
        elif not ctx.knative_services.store(obj):
            return
        if owner in ctx.paddleservices:
            # A deleted Knative Service must be recreated (a change); anything else is a status step.
            deleted = event.get("type") == "DELETED"
            ctx.queues["PaddleService"].add(owner, Priority.CHANGE if deleted else Priority.REFRESH)

    def revision_event(self, event: dict[str, Any]) -> None:
        ctx = self.ctx
        obj = _object(event)
        key = key_of(obj)
        before = ctx.revisions.get(key)
        if event.get("type") == "DELETED":
            ctx.revisions.forget(key)
            after = None
        else:
            if not ctx.revisions.store(obj):
                return
            after = ctx.revisions.get(key)
        if before is not None and after is not None and before.get("status") == after.get("status"):
            return
        service = (obj.get("metadata", {}).get("labels") or {}).get("serving.knative.dev/service")
        if service and (key[0], service) in ctx.paddleservices:
            ctx.queues["PaddleService"].add((key[0], service), Priority.REFRESH)

    def _mirrored(self, obj: dict[str, Any]) -> bool:
        annotations = obj.get("metadata", {}).get("annotations") or {}
        return self.config.mirror_all or annotations.get(MIRROR_ANNOTATION) == "true"

    def kuscia_deployment_event(self, event: dict[str, Any]) -> None:
        ctx = self.ctx
        obj = _object(event)
        if self._mirrored(obj) or key_of(obj) in ctx.kuscia_deployments:
            self._feed(
                ctx.kuscia_deployments, "KusciaDeployment", event, forget_extra=ctx.kuscia.forget_deployment
            )

    def kuscia_job_event(self, event: dict[str, Any]) -> None:
        ctx = self.ctx
        obj = _object(event)
        if self._mirrored(obj) or key_of(obj) in ctx.kuscia_jobs:
            self._feed(ctx.kuscia_jobs, "KusciaJob", event, forget_extra=ctx.kuscia.forget_job)


def _owner_key(obj: dict[str, Any]) -> Key | None:
    meta = obj.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == ps_models.KIND and ref.get("apiVersion", "").startswith(ps_models.GROUP + "/"):
            return (meta.get("namespace", ""), ref["name"])
    return None
