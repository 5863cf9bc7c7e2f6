"""Kuscia connections and status polling shared by all Kuscia-backed objects.

One pooled client per distinct connection (operator default or a per-object Secret). Status is polled with
one batchQuery per poll interval per Kuscia kind (servings, jobs) and connection, in chunks of at most 100
ids, never one call per object; objects whose remote status changed are queued for reconcile. A connection
whose polls fail is polled less and less often (up to the operator's backoff limit) until it answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..adapters.kube import KubeError
from ..adapters.kuscia import (
    BfiaClient,
    KusciaAlreadyExists,
    KusciaAuthError,
    KusciaClient,
    KusciaCredentials,
    KusciaCredentialsError,
    KusciaError,
    KusciaNotFound,
    KusciaTLSError,
    KusciaUnavailable,
)
from ..models.kuscia import Kind
from ..status.kuscia import JOB_TERMINAL, MISSING, Missing, Problem, Remote, Reported
from ..status.kuscia_plan import Send, ServingSend
from . import metrics
from .cache import Key
from .queue import Priority

logger = logging.getLogger("paddle_kuscia")

# The Kuscia status API each kind is polled through: PaddleServices and KusciaDeployments are both servings.
ROUTES = {"serving": (Kind.PADDLESERVICE, Kind.DEPLOYMENT), "job": (Kind.JOB,)}
ROUTE_OF = {kind: route for route, kinds in ROUTES.items() for kind in kinds}
SECRET_TTL = 30.0


def _normalized(detail: Any) -> Any:
    """Kuscia lists party statuses and endpoints in Go map order: sort them so an unchanged serving
    compares equal from one poll to the next."""
    if not isinstance(detail, dict) or not detail.get("party_statuses"):
        return detail
    parties = []
    for party in detail["party_statuses"]:
        party = dict(party)
        if party.get("endpoints"):
            party["endpoints"] = sorted(party["endpoints"], key=lambda e: json.dumps(e, sort_keys=True))
        parties.append(party)
    parties.sort(key=lambda p: (str(p.get("domain_id", "")), str(p.get("role", ""))))
    return {**detail, "party_statuses": parties}


class NoKusciaConnection(Exception):
    """No usable Kuscia credentials for an object (not configured, Secret missing or malformed)."""


@dataclass
class Connection:
    id: str
    url: str
    client: KusciaClient
    # status route -> why its last poll failed (None: it answered)
    problems: dict[str, Problem | None] = field(default_factory=dict)
    # kind -> remote id -> keys of the objects mirrored onto it
    tracked: dict[Kind, dict[str, set[Key]]] = field(default_factory=lambda: {k: {} for k in Kind})
    # kind -> remote id -> what the last poll found
    remote: dict[Kind, dict[str, Reported | Missing]] = field(default_factory=lambda: {k: {} for k in Kind})
    # status route -> consecutive failed polls, and the loop time before which it is not polled again
    failures: dict[str, int] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)

    def problem_for(self, kind: Kind) -> Problem | None:
        """What is wrong with polling the status of `kind` on this connection, if anything."""
        return self.problems.get(ROUTE_OF[kind])


def describe(err: Exception) -> Problem:
    """The condition (status, reason, message) that tells a user why Kuscia could not do what we asked."""
    if isinstance(err, KusciaAuthError):
        return Problem("False", "KusciaAuthFailed", f"Kuscia refused our credentials: {err}")
    if isinstance(err, KusciaTLSError):
        return Problem("False", "KusciaTLSFailed", f"TLS with the Kuscia API failed: {err}")
    if isinstance(err, KusciaUnavailable):
        return Problem("Unknown", "KusciaUnavailable", f"Kuscia API unreachable or failing: {err}")
    if isinstance(err, KusciaError):
        return Problem("False", "KusciaRequestRejected", str(err))
    return Problem("Unknown", "KusciaUnavailable", f"{type(err).__name__}: {err}")


def is_refusal(err: Exception) -> bool:
    """Kuscia answered and said no: sending the same request again would get the same answer.

    Transport failures, 5xx, 11101/11103 (Kuscia failing) and refused credentials are not refusals:
    they are retried with backoff and recover by themselves once Kuscia or the credentials are fixed.
    """
    return isinstance(err, KusciaError) and not err.retryable and not isinstance(err, KusciaAuthError)


def refusal(err: KusciaError) -> Problem:
    problem = describe(err)
    return Problem(
        problem.status,
        problem.reason,
        f"{problem.message} (not sent again until the object's spec or annotations change)",
    )


def _unfinished(kind: Kind, seen: Remote | None) -> bool:
    """Whether polling can still tell us something: finished or vanished jobs never change again."""
    if kind != Kind.JOB:
        return True
    return not isinstance(seen, Missing) and not (
        isinstance(seen, Reported) and seen.detail.get("state") in JOB_TERMINAL
    )


class KusciaHub:
    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._connections: dict[str, Connection] = {}
        self._secrets: dict[tuple[str, str], tuple[float, KusciaCredentials]] = {}
        self._default: KusciaCredentials | None = None
        self._task: asyncio.Task[None] | None = None
        self._bfia: BfiaClient | None = None
        self._by_key: dict[tuple[str, Key], tuple[str, str]] = {}  # (kind, key) -> (connection id, remote id)
        self._timeout = ctx.config.kuscia_timeout
        self.polls = 0
        self._applied: dict[tuple[str, str], str] = {}
        # (kind, connection, remote id) -> the attempt Kuscia refused and what it said
        self._refused: dict[tuple[Kind, str, str], tuple[str, Problem]] = {}
        self._verified: set[tuple[str, str]] = set()

    # ---- connections ------------------------------------------------------------------------------

    def _default_credentials(self) -> KusciaCredentials:
        cfg = self._ctx.config
        if self._default is None:
            if not cfg.kuscia_credentials_dir:
                raise NoKusciaConnection(
                    "No Kuscia connection: start the operator with --kuscia-credentials-dir (and --kuscia-url), "
                    "or name a connection Secret on the object."
                )
            try:
                self._default = KusciaCredentials.from_dir(cfg.kuscia_credentials_dir, url=cfg.kuscia_url)
            except (KusciaCredentialsError, OSError) as err:
                raise NoKusciaConnection(f"The operator's Kuscia credentials are unusable: {err}") from None
        return self._default

    async def _secret_credentials(self, namespace: str, name: str) -> KusciaCredentials:
        cached = self._secrets.get((namespace, name))
        if cached and time.monotonic() - cached[0] < SECRET_TTL:
            return cached[1]
        try:
            data = await self._ctx.kube.read_secret(namespace, name)
        except KubeError as err:
            raise NoKusciaConnection(
                f"Cannot read the Kuscia connection Secret {namespace}/{name}: HTTP {err.status}"
            ) from None
        try:
            creds = KusciaCredentials.from_mapping(data, default_url=self._ctx.config.kuscia_url)
        except KusciaCredentialsError as err:
            raise NoKusciaConnection(
                f"The Kuscia connection Secret {namespace}/{name} is unusable: {err}"
            ) from None
        self._secrets[(namespace, name)] = (time.monotonic(), creds)
        return creds

    async def connection(self, namespace: str, secret: str | None) -> Connection:
        creds = await self._secret_credentials(namespace, secret) if secret else self._default_credentials()
        conn_id = creds.fingerprint()[:16]
        conn = self._connections.get(conn_id)
        if conn is None:
            client = KusciaClient(creds, timeout=self._timeout, on_call=metrics.on_kuscia_call)
            conn = self._connections[conn_id] = Connection(conn_id, creds.url, client)
        return conn

    def bfia(self) -> BfiaClient:
        url = self._ctx.config.bfia_url
        if not url:
            raise NoKusciaConnection("BFIA jobs need the operator flag --bfia-url.")
        if self._bfia is None:
            creds = self._default_credentials() if url.startswith("https://") else None
            self._bfia = BfiaClient(
                url, credentials=creds, timeout=self._timeout, on_call=metrics.on_kuscia_call
            )
        return self._bfia

    # ---- tracking ----------------------------------------------------------------------------------

    def track(self, kind: Kind, conn: Connection, remote_id: str, key: Key) -> None:
        old = self._by_key.get((kind, key))
        if old == (conn.id, remote_id):
            return
        if old is not None:
            self._untrack(kind, key)
        conn.tracked[kind].setdefault(remote_id, set()).add(key)
        self._by_key[(kind, key)] = (conn.id, remote_id)

    def _untrack(self, kind: Kind, key: Key) -> None:
        where = self._by_key.pop((kind, key), None)
        if where is None:
            return
        conn = self._connections.get(where[0])
        if conn is None:
            return
        keys = conn.tracked[kind].get(where[1])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del conn.tracked[kind][where[1]]
                conn.remote[kind].pop(where[1], None)

    def forget_paddleservice(self, key: Key) -> None:
        self._untrack(Kind.PADDLESERVICE, key)

    def forget_deployment(self, key: Key) -> None:
        self._untrack(Kind.DEPLOYMENT, key)

    def forget_job(self, key: Key) -> None:
        self._untrack(Kind.JOB, key)

    def untrack(self, kind: Kind, key: Key) -> None:
        self._untrack(kind, key)

    def other_owners(self, kind: Kind, conn: Connection, remote_id: str, key: Key) -> set[Key]:
        """Objects other than `key` already mirrored onto `remote_id` through the same connection."""
        return set(conn.tracked[kind].get(remote_id, ())) - {key}

    def applied(self, conn: Connection, remote_id: str) -> str | None:
        """Digest of the last request Kuscia accepted for `remote_id` in this process's lifetime."""
        return self._applied.get((conn.id, remote_id))

    def set_applied(self, conn: Connection, remote_id: str, digest: str | None) -> None:
        if digest is None:
            self._applied.pop((conn.id, remote_id), None)
        else:
            self._applied[(conn.id, remote_id)] = digest

    def refused(self, kind: Kind, conn: Connection, remote_id: str) -> tuple[str, Problem] | None:
        """The attempt (see `kuscia_plan.attempt_key`) Kuscia last refused for `remote_id` in this
        process's lifetime, and why."""
        return self._refused.get((kind, conn.id, remote_id))

    def set_refused(
        self,
        kind: Kind,
        conn: Connection,
        remote_id: str,
        attempt: str | None,
        problem: Problem | None = None,
    ) -> None:
        if attempt is None or problem is None:
            self._refused.pop((kind, conn.id, remote_id), None)
        else:
            self._refused[(kind, conn.id, remote_id)] = (attempt, problem)

    def first_look(self, conn: Connection, remote_id: str) -> bool:
        """True until the serving's polled state has been checked for drift once in this process."""
        return (conn.id, remote_id) not in self._verified

    def looked(self, conn: Connection, remote_id: str) -> None:
        self._verified.add((conn.id, remote_id))

    def remote(self, kind: Kind, conn: Connection, remote_id: str) -> Reported | Missing | None:
        """What the last poll found; None when not polled since the operator started or since we sent."""
        return conn.remote[kind].get(remote_id)

    def forget_remote(self, kind: Kind, conn: Connection, remote_id: str) -> None:
        """We have just sent something: what was polled before no longer says anything about it."""
        conn.remote[kind].pop(remote_id, None)

    # ---- polling ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll_forever(), name="kuscia-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for conn in self._connections.values():
            await conn.client.aclose()
        if self._bfia is not None:
            await self._bfia.aclose()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ctx.config.kuscia_poll_interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Kuscia status poll failed")

    async def poll_once(self) -> None:
        """One status round: every connection and status route at once, so a slow Kuscia delays only itself."""
        self.polls += 1
        await asyncio.gather(
            *(self._poll(conn, route) for conn in list(self._connections.values()) for route in ROUTES)
        )

    async def _poll(self, conn: Connection, route: str) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < conn.retry_at.get(route, 0.0):
            return
        due = {
            kind: sorted(rid for rid in conn.tracked[kind] if _unfinished(kind, conn.remote[kind].get(rid)))
            for kind in ROUTES[route]
        }
        ids = sorted({rid for kind_ids in due.values() for rid in kind_ids})
        if not ids:
            metrics.on_kuscia_poll_idle(conn.url, route)
            return
        try:
            if route == "job":
                found: dict[str, Any] = await conn.client.batch_query_job_status(ids)
            else:
                found = await conn.client.batch_query_serving_status(ids)
        except KusciaError as err:
            self._poll_failed(conn, route, err, loop.time())
            return
        conn.failures.pop(route, None)
        conn.retry_at.pop(route, None)
        metrics.on_kuscia_poll(conn.url, route, None)
        if conn.problems.get(route) is not None:
            conn.problems[route] = None
            logger.info("Kuscia status poll succeeded again url=%s route=%s", conn.url, route)
            self._enqueue_route(conn, route)
        for kind, kind_ids in due.items():
            for rid in kind_ids:
                seen: Reported | Missing = MISSING
                if rid in found:
                    # No party status yet: Kuscia has the serving, it is pending.
                    seen = Reported(_normalized(found[rid] or {"state": "Pending"}))
                if conn.remote[kind].get(rid) != seen:
                    conn.remote[kind][rid] = seen
                    self._enqueue(kind, conn.tracked[kind].get(rid, ()))

    def _poll_failed(self, conn: Connection, route: str, err: KusciaError, now: float) -> None:
        failures = conn.failures[route] = conn.failures.get(route, 0) + 1
        cfg = self._ctx.config
        delay = min(cfg.backoff_max, cfg.kuscia_poll_interval * 2 ** (failures - 1))
        conn.retry_at[route] = now + delay
        problem = describe(err)
        metrics.on_kuscia_poll(conn.url, route, problem.reason)
        before = conn.problems.get(route)
        conn.problems[route] = problem
        if before is None or (before.status, before.reason) != (problem.status, problem.reason):
            logger.warning(
                "Kuscia status poll failed url=%s route=%s reason=%s next_poll_in=%.1fs",
                conn.url,
                route,
                problem.reason,
                delay,
            )
            self._enqueue_route(conn, route)

    def _enqueue(self, kind: Kind, keys: Any) -> None:
        queue = self._ctx.queues.get(kind)
        for key in list(keys):
            if queue is not None:
                queue.add(key, Priority.REFRESH)

    def _enqueue_route(self, conn: Connection, route: str) -> None:
        for kind in ROUTES[route]:
            for keys in conn.tracked[kind].values():
                self._enqueue(kind, keys)


async def send_serving(client: KusciaClient, send: ServingSend) -> str:
    """The one create/update protocol for every serving (PaddleService or KusciaDeployment).

    CREATE creates, and on "already exists" adopts the serving by updating it (the id is ours: a lost
    answer to our own create, or a serving left by a predecessor). UPDATE updates, and on "not found"
    creates it again (someone removed it behind our back). Returns what happened, for the log.
    """

    async def create() -> None:
        await client.create_serving(send.create)

    async def update() -> None:
        await client.update_serving(send.update)

    if send.mode == Send.CREATE:
        return "Adopted existing" if await _fall_back(create, KusciaAlreadyExists, update) else "Created"
    return "Re-created" if await _fall_back(update, KusciaNotFound, create) else "Updated"


async def _fall_back(
    first: Callable[[], Awaitable[None]], answer: type[KusciaError], then: Callable[[], Awaitable[None]]
) -> bool:
    """Run `first`; when Kuscia answers it with `answer`, run `then`. True when `then` ran."""
    try:
        await first()
    except answer:
        await then()
        return True
    return False
