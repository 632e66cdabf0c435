"""The operator's work queue: coalesced requests, a bound on passes at once, due times."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from kubetrade.operator.fence import Fence, Fenced
from kubetrade.operator.kube import ApiError
from kubetrade.operator.workqueue import WorkQueue


class Passes:
    """A pass that records what ran and can be held open."""

    def __init__(self, after: float | None = None) -> None:
        self.ran: list[tuple[str, str]] = []
        self.running = 0
        self.most = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.after = after

    async def __call__(self, namespace: str, name: str) -> float | None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
            self.ran.append((namespace, name))
        finally:
            self.running -= 1
        return self.after


async def test_requests_while_a_pass_waits_join_it_and_one_while_it_runs_gets_another() -> None:
    passes = Passes()
    queue = WorkQueue(passes, concurrency=1)
    passes.gate.clear()
    first = asyncio.create_task(queue.request("ns", "a"))
    await asyncio.sleep(0.01)  # a's pass runs, held at the gate
    more = [asyncio.create_task(queue.request("ns", "a")) for _ in range(5)]
    await asyncio.sleep(0.01)
    passes.gate.set()
    await asyncio.gather(first, *more)
    # One pass for the first request, one more for the five that came while it ran.
    assert passes.ran == [("ns", "a"), ("ns", "a")]
    assert queue.depth() == 0


async def test_at_most_concurrency_passes_run_and_first_asked_first_served() -> None:
    passes = Passes()
    queue = WorkQueue(passes, concurrency=3)
    passes.gate.clear()
    names = [f"s{i}" for i in range(10)]
    waiting = [asyncio.create_task(queue.request("ns", name)) for name in names]
    await asyncio.sleep(0.01)
    assert passes.running == 3 and queue.depth() == 10
    passes.gate.set()
    await asyncio.gather(*waiting)
    assert passes.most == 3
    assert [name for _, name in passes.ran] == names


async def test_urgent_requests_go_before_the_others_even_once_waiting() -> None:
    passes = Passes()
    queue = WorkQueue(passes, concurrency=1)
    passes.gate.clear()
    first = asyncio.create_task(queue.request("ns", "busy"))
    await asyncio.sleep(0.01)  # holds the one slot
    waiting = [asyncio.create_task(queue.request("ns", f"n{i}")) for i in range(3)]
    waiting.append(asyncio.create_task(queue.request("ns", "new", urgent=True)))
    await asyncio.sleep(0.01)
    queue.kick("ns", "n2", urgent=True)  # n2 waits in the normal lane: it moves up
    passes.gate.set()
    await asyncio.gather(first, *waiting)
    assert [name for _, name in passes.ran] == ["busy", "new", "n2", "n0", "n1"]


async def test_a_session_is_looked_at_again_when_its_pass_says_and_forgotten_once_gone() -> None:
    passes = Passes(after=0.05)
    queue = WorkQueue(passes, concurrency=2)
    timer = asyncio.create_task(queue.run())
    try:
        await queue.request("ns", "a")
        await asyncio.sleep(0.18)
        assert 3 <= len(passes.ran) <= 5  # asked once, then every 0.05 s
        passes.after = None  # the session is gone
        await asyncio.sleep(0.1)
        count = len(passes.ran)
        await asyncio.sleep(0.1)
        assert len(passes.ran) == count  # forgotten: no more passes
    finally:
        timer.cancel()
        await queue.stop()


async def test_a_failed_pass_is_tried_again_and_a_fenced_one_quietly() -> None:
    tries: list[str] = []

    async def failing(namespace: str, name: str) -> float | None:
        tries.append(name)
        if name == "refused":
            raise ApiError(500, "InternalError", "etcd is gone")
        Fence.closed().check()
        return None

    queue = WorkQueue(failing, concurrency=2, retry_seconds=0.05)
    timer = asyncio.create_task(queue.run())
    try:
        await queue.request("ns", "refused")  # never raises to the one who asked
        await queue.request("ns", "fenced")
        await asyncio.sleep(0.12)
        assert tries.count("refused") >= 2 and tries.count("fenced") >= 2
    finally:
        timer.cancel()
        await queue.stop()


def test_the_fence_is_open_standalone_and_closed_once_the_deadline_passes() -> None:
    assert Fence().is_open()
    fence = Fence.closed()
    assert not fence.is_open()
    with pytest.raises(Fenced, match="not writing"):
        fence.check()
    fence.open_until(float("inf"))
    fence.check()
    fence.open_until(0.0)  # monotonic time 0 is long past
    assert not fence.is_open()


async def test_a_session_that_keeps_failing_is_tried_less_and_less_often_until_it_passes() -> None:
    tried: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky(namespace: str, name: str) -> float | None:
        tried.append(loop.time())
        if len(tried) <= 4 or len(tried) == 6:
            raise ApiError(503, "ServiceUnavailable", "the API server is down")
        return 10.0 if len(tried) == 5 else None

    queue = WorkQueue(flaky, concurrency=1, retry_seconds=0.05)
    timer = asyncio.create_task(queue.run())
    try:
        await queue.request("ns", "s")
        for _ in range(200):
            if len(tried) >= 5:
                break
            await asyncio.sleep(0.02)
        gaps = [b - a for a, b in itertools.pairwise(tried)]
        # 0.05, 0.1, 0.2, 0.4 s (each +-20%): doubled for each failure in a row.
        assert len(gaps) == 4, gaps
        assert all(later > earlier * 1.2 for earlier, later in itertools.pairwise(gaps))
        # A pass that succeeded reset the count: the next failure waits the base time.
        await queue.request("ns", "s")
        for _ in range(100):
            if len(tried) >= 7:
                break
            await asyncio.sleep(0.01)
        assert len(tried) == 7 and tried[6] - tried[5] < 0.15, tried  # not 0.8 s
    finally:
        timer.cancel()
        await queue.stop()
