"""List-then-watch into an ObjectCache, as client-go's informers do, for every kind the operator watches.

For every event kopf builds causes, handler state, a logger and a worker per object; at scale that was a third
of the operator's CPU for PaddleServices alone, and as much again for Knative Services and Revisions, for events
whose whole use is to refresh a cache and queue a key. An informer hands each event to the handler directly.
Its start-up list fills the caches before the first reconcile.

The handler gets `{"type": ..., "object": ...}`, the shape of kopf's raw events. After the watch's
resourceVersion has expired (410 Gone) the informer lists again and tells the handler what changed meanwhile,
including a DELETED event for each cached object the new list no longer holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..adapters.kube import KubeClient, KubeError, Resource
from .cache import Key, ObjectCache, key_of
from .context import Config

logger = logging.getLogger("paddle_kuscia")

LIST_CHUNK = 500  # objects per page, so a large cluster never sits in memory as one parsed list
BACKOFF = (1.0, 2.0, 5.0, 10.0, 20.0)  # seconds before the next try after a failed list or watch

Handler = Callable[[dict[str, Any]], None]
NAMESPACES = Resource("", "v1", "namespaces", "Namespace")


def _version(resource_version: str | None) -> int:
    try:
        return int(resource_version or 0)
    except ValueError:
        return 0


def _terminating(namespace: dict[str, Any]) -> bool:
    return bool(
        namespace["metadata"].get("deletionTimestamp")
        or (namespace.get("status") or {}).get("phase") == "Terminating"
    )


def _everything(_obj: dict[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Watched:
    """A kind the operator watches: where its objects are kept and who hears of their events.

    `admit` says which objects the start-up list keeps (later events go to the handler, which decides).
    `finalized` kinds may carry the operator's finalizer: in a namespace being deleted they stay watched until
    the namespace is gone, so that their deletions can finish."""

    resource: Resource
    cache: ObjectCache
    handler: Handler
    admit: Callable[[dict[str, Any]], bool] = _everything
    finalized: bool = False


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class Informer:
    """One resource, in one namespace or across all (`namespace=None`, filtered by `keep`)."""

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        namespace: str | None,
        cache: ObjectCache,
        handler: Handler,
        *,
        keep: Callable[[str], bool] = lambda _namespace: True,
        admit: Callable[[dict[str, Any]], bool] = _everything,
        watch_timeout: int = 300,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.cache = cache
        self.handler = handler
        self.keep = keep
        self.admit = admit
        self.watch_timeout = watch_timeout
        self.resource_version: str | None = None

    @property
    def scope(self) -> str:
        return f"{self.resource.plural} in {self.namespace or 'all namespaces'}"

    def _mine(self, key: Key) -> bool:
        namespace = key[0]
        return (self.namespace is None or namespace == self.namespace) and self.keep(namespace)

    async def list(self, *, notify: bool) -> None:
        """List the whole scope into the cache. With `notify`, the handler hears of every difference from
        what the cache held (a relist); without, the cache is only filled (start-up, before any reconcile)."""
        params = {"limit": str(LIST_CHUNK)}
        seen: set[Key] = set()
        while True:
            page = await self.kube.request("GET", self.resource.path(self.namespace), params=params)
            for item in page.get("items") or []:
                if not self.keep(item["metadata"].get("namespace", "")):
                    continue
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind)
                seen.add(key_of(item))
                if notify:
                    self.handler({"type": "MODIFIED", "object": item})  # unchanged ones: no news to the cache
                elif self.admit(item):
                    self.cache.store(item)
            meta = page.get("metadata") or {}
            params["continue"] = meta.get("continue") or ""
            if not params["continue"]:
                self.resource_version = meta.get("resourceVersion")
                break
        if notify:
            listed_at = _version(self.resource_version)
            for key in self.cache:
                if key in seen or not self._mine(key) or (obj := self.cache.get(key)) is None:
                    continue
                if _version(obj["metadata"].get("resourceVersion")) > listed_at:
                    continue  # written after the list was taken (the response of our own apply): not gone
                self.handler({"type": "DELETED", "object": obj})

    async def _watch(self) -> None:
        """Follow the watch from the last resourceVersion until the server ends the stream."""
        assert self.resource_version is not None
        stream = self.kube.watch(
            self.resource, self.namespace, self.resource_version, timeout=self.watch_timeout
        )
        async for event in stream:
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message", ""))
                raise KubeError(int(obj.get("code") or 0), obj.get("message", "watch error"))
            self.resource_version = (obj.get("metadata") or {}).get(
                "resourceVersion"
            ) or self.resource_version
            if kind == "BOOKMARK" or not self.keep((obj.get("metadata") or {}).get("namespace", "")):
                continue
            self.handler({"type": kind, "object": obj})

    async def run(self) -> None:
        """Watch for as long as the operator runs: resume from the last resourceVersion after a stream ends or
        breaks, list again when it has expired, and back off while the API server cannot answer."""
        failures = 0
        while True:
            try:
                if self.resource_version is None:
                    await self.list(notify=True)
                await self._watch()
                failures = 0
                continue
            except (Gone, KubeError) as err:
                if isinstance(err, Gone) or err.status == 410:
                    logger.info("Listing %s again: the watch expired", self.scope)
                    self.resource_version = None
                    continue
                problem: Exception = err
            except Exception as err:  # a stale cache is worse than a retry: the task never ends
                self.resource_version = None  # it may have broken off mid-event: list afresh
                problem = err
            delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            logger.log(level, "Watching %s failed; retrying in %.0fs: %s", self.scope, delay, problem)
            await asyncio.sleep(delay)


class InformerSet:
    """Informers for some kinds over the namespaces the operator serves: per kind, one across all namespaces
    (no `--namespace`), one per named namespace, or, for globs, one per matching namespace, following
    namespaces as they are created and deleted. So a shard defined by globs is sent only its own namespaces'
    events.

    A namespace being deleted keeps only its `finalized` kinds' informers: their objects' deletions must be
    seen to release the finalizers, or the namespace would never go. The others stop: what goes there now must
    not be put back (a deleted Knative Service would queue its PaddleService, to be re-created in vain). Once
    the namespace is gone, the handlers hear a DELETED event for whatever the caches still hold of it."""

    def __init__(self, kube: KubeClient, kinds: list[Watched], config: Config) -> None:
        self.kube = kube
        self.kinds = kinds
        self.finalized = {kind.resource for kind in kinds if kind.finalized}
        self.config = config
        self.informers: dict[str | None, list[Informer]] = {}  # by namespace (None: all)
        self.tasks: dict[Informer, asyncio.Task[None]] = {}
        self.namespaces: Informer | None = None  # namespaces themselves, when following globs
        self.following: asyncio.Task[None] | None = None

    def _add(self, namespace: str | None, *, terminating: bool = False) -> list[Informer]:
        made = [
            Informer(
                self.kube,
                kind.resource,
                namespace,
                kind.cache,
                kind.handler,
                keep=self.config.watches,
                admit=kind.admit,
            )
            for kind in self.kinds
            if kind.finalized or not terminating
        ]
        self.informers[namespace] = made
        return made

    async def prime(self) -> None:
        """List everything once into the caches, without events: done before the first reconcile, so that after
        a restart "not seen yet" is never taken for "absent". A list that fails is retried by `start`'s tasks."""
        listed = self.config.listed_namespaces
        if not self.config.namespaces:
            self._add(None)
        elif listed is not None:
            for namespace in listed:
                self._add(namespace)
        else:
            self.namespaces = Informer(self.kube, NAMESPACES, None, ObjectCache(), self._on_namespace)
            await self._list(self.namespaces)
            for key in self.namespaces.cache:
                found = self.namespaces.cache.get(key)
                if self.config.watches(key[1]) and found is not None:
                    self._add(key[1], terminating=_terminating(found))
        for informers in self.informers.values():
            for informer in informers:
                await self._list(informer)

    @staticmethod
    async def _list(informer: Informer) -> None:
        try:
            await informer.list(notify=False)
        except KubeError as err:
            logger.warning("Could not list %s before start: %s", informer.scope, err)

    def start(self) -> None:
        if self.namespaces is not None:
            self.following = asyncio.create_task(self.namespaces.run(), name="watch namespaces")
        for informers in self.informers.values():
            self._start(informers)

    def _start(self, informers: list[Informer]) -> None:
        for informer in informers:
            self.tasks[informer] = asyncio.create_task(informer.run(), name=f"watch {informer.scope}")

    def _stop(self, namespace: str, *, keep_finalized: bool) -> int:
        """Stop the namespace's informers (but those of finalized kinds, with `keep_finalized`); how many."""
        kept, stopped = [], 0
        for informer in self.informers.pop(namespace, []):
            if keep_finalized and informer.resource in self.finalized:
                kept.append(informer)
            elif (task := self.tasks.pop(informer, None)) is not None:
                task.cancel()
                stopped += 1
        if kept:
            self.informers[namespace] = kept
        return stopped

    def _on_namespace(self, event: dict[str, Any]) -> None:
        assert self.namespaces is not None
        obj = event["object"]
        name = obj["metadata"]["name"]
        if event["type"] == "DELETED":
            self.namespaces.cache.forget(key_of(obj))
            if self._stop(name, keep_finalized=False):
                logger.info("Stopped watching a deleted namespace namespace=%s", name)
            for kind in self.kinds:  # events the stopped informers can no longer bring
                for key in [key for key in kind.cache if key[0] == name]:
                    if (left := kind.cache.get(key)) is not None:
                        kind.handler({"type": "DELETED", "object": left})
            return
        self.namespaces.cache.store(obj)
        if not self.config.watches(name):
            return
        if _terminating(obj):
            if self._stop(name, keep_finalized=True):
                logger.info(
                    "Stopped watching a terminating namespace but for finalized kinds namespace=%s", name
                )
        elif name not in self.informers:
            logger.info("Watching a new namespace namespace=%s", name)
            self._start(self._add(name))  # their first list tells the handlers what is there

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        if self.following is not None:
            tasks.append(self.following)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
