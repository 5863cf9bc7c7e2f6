"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Only the leader reconciles; a standby keeps its caches warm from the watch streams and takes over when the
leader's lease expires. A leader that cannot renew in time exits, so two instances never act at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from typing import Any

from ..adapters import kubeconfig
from ..adapters.kube import Conflict, KubeClient, KubeError, NotFound, Resource

logger = logging.getLogger("paddle_kuscia")

LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        name: str = "paddle-kuscia-operator",
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        identity: str | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.leading = asyncio.Event()
        self._last_renew: dt.datetime | None = None

    def _spec(self, acquire: str | None, transitions: int) -> dict[str, Any]:
        now = _fmt(_now())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": acquire or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.kube.request("GET", path)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, 0),
            }
            try:
                await self.kube.request("POST", LEASES.path(self.namespace), body=body)
            except Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        expired = renewed is None or renewed + dt.timedelta(seconds=duration) < _now()
        if holder not in (None, "", self.identity) and not expired:
            return False
        mine = holder == self.identity
        lease["spec"] = self._spec(
            spec.get("acquireTime") if mine else None,
            (spec.get("leaseTransitions") or 0) + (0 if mine else 1),
        )
        try:
            await self.kube.request("PUT", path, body=lease)
        except (Conflict, NotFound):
            return False
        return True

    async def run(self) -> None:
        """Acquire, then renew until cancelled; exit the process if the lease cannot be renewed in time."""
        while not self.leading.is_set():
            try:
                if await self.try_acquire():
                    self._last_renew = _now()
                    self.leading.set()
                    logger.info(
                        "Became the leader lease=%s/%s identity=%s", self.namespace, self.name, self.identity
                    )
                    break
            except KubeError as err:
                logger.warning("Leader election attempt failed: %s", err)
            await asyncio.sleep(self.renew_seconds)
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                if await self.try_acquire():
                    self._last_renew = _now()
                    continue
                logger.error("Lost the leader lease to another instance; exiting so that only one acts")
            except KubeError as err:
                assert self._last_renew is not None
                if _now() - self._last_renew < dt.timedelta(seconds=self.lease_seconds - self.renew_seconds):
                    logger.warning("Could not renew the leader lease yet: %s", err)
                    continue
                logger.error(
                    "Could not renew the leader lease in time; exiting so that only one acts: %s", err
                )
            kubeconfig.remove_private_files()  # os._exit skips atexit
            os._exit(75)
