"""A rate-limited work queue in the style of client-go's: one key is never reconciled twice at once,
a burst of events for one key collapses into one reconcile, and failures back off per key.

Keys carry a priority, as in controller-runtime's priority queue: a change to the object itself (a new
spec, a deletion) is served before a refresh because something it depends on changed (a Knative step, a
Kuscia status). Under a burst of new objects the refreshes wait, and while they wait further steps of the
same child fold into the one queued refresh, so each object gets fewer, later status writes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from enum import IntEnum

from . import metrics

logger = logging.getLogger(__name__)


class Priority(IntEnum):
    CHANGE = 0  # the object itself changed: spec, deletion, finalizers, first sight
    REFRESH = 1  # a dependency changed: recompute status, repair drift


class Requeue(Exception):
    """Raised by a reconcile to be called again after `delay` seconds without counting as a failure."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"requeue after {delay}s")
        self.delay = delay


class RetryLater(Exception):
    """A failure worth retrying with the key's exponential backoff."""


class WorkQueue:
    def __init__(
        self,
        name: str,
        reconcile: Callable[[Hashable], Awaitable[float | None]],
        *,
        workers: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        on_result: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self._base = base_delay
        self._max = max_delay
        self._on_result = on_result
        # A heap of (priority, sequence, key); an entry is live while _queued[key] is its priority
        # (raising a queued key's priority pushes a second entry and leaves the first one stale).
        self._heap: list[tuple[int, int, Hashable]] = []
        self._seq = itertools.count()
        self._available = asyncio.Semaphore(0)
        self._queued: dict[Hashable, Priority] = {}
        self._running: set[Hashable] = set()
        self._dirty: dict[Hashable, Priority] = {}
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, tuple[asyncio.TimerHandle, Priority]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.attempts: dict[Hashable, int] = {}

    def add(self, key: Hashable, priority: Priority = Priority.CHANGE) -> None:
        """Reconcile `key` soon (an immediate add supersedes a pending delayed one)."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[0].cancel()
            priority = min(priority, pending[1])
        if key in self._running:
            self._dirty[key] = min(priority, self._dirty.get(key, priority))
            return
        queued = self._queued.get(key)
        if queued is not None and queued <= priority:
            return
        self._queued[key] = priority
        heapq.heappush(self._heap, (priority, next(self._seq), key))
        if queued is None:
            self._available.release()

    def add_after(self, key: Hashable, delay: float, priority: Priority = Priority.REFRESH) -> None:
        if key in self._queued:
            return
        old = self._timers.get(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if old is not None:
            if old[0].when() <= when:
                return
            old[0].cancel()
            priority = min(priority, old[1])
        self._timers[key] = (loop.call_at(when, self._fire, key), priority)

    def _fire(self, key: Hashable) -> None:
        pending = self._timers.pop(key, None)
        self.add(key, pending[1] if pending else Priority.REFRESH)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[0].cancel()

    def backoff(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self._max, self._base * 2.0**n)
        return delay * (0.9 + random.random() * 0.2)

    def start(self) -> None:
        metrics.watch_queue(self, self.name, lambda: len(self._queued))
        for i in range(self._workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}"))

    async def stop(self) -> None:
        metrics.unwatch_queue(self)
        for timer, _ in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def __len__(self) -> int:
        return len(self._queued) + len(self._timers)

    async def _next(self) -> tuple[Hashable, Priority]:
        await self._available.acquire()
        while True:
            priority, _, key = heapq.heappop(self._heap)
            if self._queued.get(key) == priority:
                del self._queued[key]
                return key, Priority(priority)

    async def _worker(self) -> None:
        while True:
            key, priority = await self._next()
            self._running.add(key)
            started = time.monotonic()
            outcome = "ok"
            self.attempts[key] = self.attempts.get(key, 0) + 1
            try:
                after = await self._reconcile(key)
                self._failures.pop(key, None)
                if after is not None:
                    self.add_after(key, after)
            except Requeue as req:
                self.add_after(key, req.delay)
            except asyncio.CancelledError:
                raise
            except RetryLater as err:
                outcome = "retry"
                delay = self.backoff(key)
                logger.info(
                    "Reconcile will be retried queue=%s key=%s delay=%.1fs reason=%s",
                    self.name,
                    key,
                    delay,
                    err,
                )
                self.add_after(key, delay, priority)
            except Exception:
                outcome = "error"
                delay = self.backoff(key)
                logger.exception("Reconcile failed queue=%s key=%s retry_in=%.1fs", self.name, key, delay)
                self.add_after(key, delay, priority)
            finally:
                self._running.discard(key)
                if self._on_result:
                    self._on_result(self.name, outcome, time.monotonic() - started)
                again = self._dirty.pop(key, None)
                if again is not None:
                    self.add(key, again)
