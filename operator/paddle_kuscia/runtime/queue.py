"""A rate-limited work queue in the style of client-go's: one key is never reconciled twice at once,
a burst of events for one key collapses into one reconcile, and failures back off per key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)


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
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.attempts: dict[Hashable, int] = {}

    def add(self, key: Hashable) -> None:
        """Reconcile `key` soon (an immediate add supersedes a pending delayed one)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if key in self._queued:
            return
        old = self._timers.get(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if old is not None:
            if old.when() <= when:
                return
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def backoff(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self._max, self._base * (2**n))
        return delay * (0.9 + random.random() * 0.2)

    def start(self) -> None:
        for i in range(self._workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}"))

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def __len__(self) -> int:
        return len(self._queued) + len(self._timers)

    async def _worker(self) -> None:
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
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
                self.add_after(key, delay)
            except Exception:
                outcome = "error"
                delay = self.backoff(key)
                logger.exception("Reconcile failed queue=%s key=%s retry_in=%.1fs", self.name, key, delay)
                self.add_after(key, delay)
            finally:
                self._running.discard(key)
                if self._on_result:
                    self._on_result(self.name, outcome, time.monotonic() - started)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
