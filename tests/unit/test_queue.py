"""The work queue: one reconcile per key at a time, bursts collapse, failures back off per key."""

from __future__ import annotations

import asyncio

from paddle_kuscia.runtime.queue import Priority, Requeue, RetryLater, WorkQueue


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


async def _drain(q: WorkQueue, calls: list[object], expected: int) -> None:
    for _ in range(200):
        if len(calls) >= expected and not len(q):
            break
        await asyncio.sleep(0.01)


async def test_changes_are_served_before_refreshes_queued_earlier() -> None:
    calls: list[object] = []

    async def reconcile(key: object) -> None:
        calls.append(key)

    q = WorkQueue("t", reconcile, workers=1)
    for i in range(3):
        q.add(f"refresh-{i}", Priority.REFRESH)
    for i in range(3):
        q.add(f"change-{i}")
    q.start()
    await _drain(q, calls, 6)
    await q.stop()
    assert calls == ["change-0", "change-1", "change-2", "refresh-0", "refresh-1", "refresh-2"]


async def test_a_refresh_raised_to_a_change_runs_once_in_change_order() -> None:
    calls: list[object] = []

    async def reconcile(key: object) -> None:
        calls.append(key)

    q = WorkQueue("t", reconcile, workers=1)
    q.add("a", Priority.REFRESH)
    q.add("b", Priority.REFRESH)
    q.add("c")
    q.add("b")  # b's own spec changed while its refresh waited
    q.add("b", Priority.REFRESH)  # and a lower priority never lowers it again
    assert len(q) == 3
    q.start()
    await _drain(q, calls, 3)
    await asyncio.sleep(0.05)  # nothing further may run: stale heap entries are skipped
    await q.stop()
    assert calls == ["c", "b", "a"]


async def test_refreshes_waiting_behind_changes_fold_into_one_reconcile() -> None:
    calls: list[object] = []
    gate = asyncio.Event()

    async def reconcile(key: object) -> None:
        calls.append(key)
        if key == "busy":
            await gate.wait()

    q = WorkQueue("t", reconcile, workers=1)
    q.start()
    q.add("busy")
    await asyncio.sleep(0)
    for _ in range(20):  # twenty Knative steps of one child while the only worker is busy
        q.add("child", Priority.REFRESH)
    gate.set()
    await _drain(q, calls, 2)
    await q.stop()
    assert calls == ["busy", "child"]


async def test_a_failed_change_is_retried_as_a_change() -> None:
    calls: list[object] = []

    async def reconcile(key: object) -> None:
        calls.append(key)
        raise RetryLater("transient")

    q = WorkQueue("t", reconcile, workers=1, base_delay=5.0)
    q.start()
    q.add("a")
    q.add("b", Priority.REFRESH)
    for _ in range(200):
        if len(q._timers) == 2:
            break
        await asyncio.sleep(0.01)
    await q.stop()
    assert calls == ["a", "b"]
    assert {key: prio for key, (_, prio) in q._timers.items()} == {
        "a": Priority.CHANGE,
        "b": Priority.REFRESH,
    }
