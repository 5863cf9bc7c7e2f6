"""The work queue: one reconcile per key at a time, bursts collapse, failures back off per key."""

from __future__ import annotations

import asyncio

from paddle_kuscia.runtime.queue import Requeue, RetryLater, WorkQueue


async def test_a_burst_for_one_key_runs_at_most_twice_and_never_concurrently() -> None:
    running: set[str] = set()
    calls: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: object) -> None:
        assert key not in running, "two reconciles of one key ran at once"
        running.add(key)  # type: ignore[arg-type]
        calls.append(key)  # type: ignore[arg-type]
        await release.wait()
        running.discard(key)  # type: ignore[arg-type]

    q = WorkQueue("t", reconcile, workers=4)
    q.start()
    q.add("a")
    await asyncio.sleep(0)  # let a worker pick it up
    for _ in range(50):
        q.add("a")  # while it runs: marked dirty once
    release.set()
    for _ in range(100):
        if len(calls) >= 2 and not running:
            break
        await asyncio.sleep(0.01)
    await q.stop()
    assert calls == ["a", "a"]


async def test_failures_back_off_exponentially_per_key() -> None:
    q = WorkQueue("t", lambda key: asyncio.sleep(0), base_delay=1.0, max_delay=8.0)
    delays = [q.backoff("k") for _ in range(6)]
    assert all(0.9 * b <= d <= 1.1 * b for d, b in zip(delays, [1, 2, 4, 8, 8, 8], strict=True))
    assert 0.9 <= q.backoff("other") <= 1.1  # per key


async def test_retry_later_and_requeue_schedule_the_key_again() -> None:
    seen: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: object) -> None:
        seen.append(loop.time())
        if len(seen) == 1:
            raise RetryLater("transient")
        if len(seen) == 2:
            raise Requeue(0.05)

    q = WorkQueue("t", reconcile, workers=1, base_delay=0.05)
    q.start()
    q.add("k")
    for _ in range(200):
        if len(seen) >= 3:
            break
        await asyncio.sleep(0.01)
    await q.stop()
    assert len(seen) == 3
    assert seen[1] - seen[0] >= 0.04 and seen[2] - seen[1] >= 0.04
    assert q.attempts["k"] == 3
