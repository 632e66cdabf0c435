"""Events are posted beside the reconciler: queued at once, posted in order, bounded,
flushed when the operator stops, and a failed post never stops the posters."""

from __future__ import annotations

import asyncio

from kubetrade.operator.events import EventSink


def test_a_queued_event_does_not_wait_for_the_api_server_and_is_posted_by_close() -> None:
    posted: list[str] = []
    release = asyncio.Event()

    async def post(path: str, body: dict[str, object]) -> None:
        await release.wait()  # an API server that is slow to answer
        posted.append(str(body["reason"]))

    async def scenario() -> None:
        sink = EventSink(post, posters=1)
        sink.start()
        for reason in ("CreatingRunner", "RunnerStarted", "SpecStable"):
            sink.put("/api/v1/namespaces/t/events", {"reason": reason})  # returns at once
        await asyncio.sleep(0.01)
        assert posted == []
        release.set()
        await sink.close(within=5)

    asyncio.run(scenario())
    assert posted == ["CreatingRunner", "RunnerStarted", "SpecStable"]


def test_a_full_queue_drops_and_counts_instead_of_growing() -> None:
    async def never(path: str, body: dict[str, object]) -> None:
        await asyncio.Event().wait()

    async def scenario() -> int:
        sink = EventSink(never, capacity=3, posters=1)
        sink.start()
        sink.put("/p", {"reason": "first"})
        await asyncio.sleep(0.01)  # the poster took it and is stuck posting it
        for number in range(9):
            sink.put("/p", {"reason": str(number)})
        await sink.close(within=0.05)  # the stuck post is given up, not waited for
        return sink.dropped

    # One is being posted, three wait: the other six are dropped.
    assert asyncio.run(scenario()) == 6


def test_a_post_that_raises_leaves_the_posters_running() -> None:
    posted: list[str] = []

    async def flaky(path: str, body: dict[str, object]) -> None:
        if body["reason"] == "bad":
            raise RuntimeError("boom")
        posted.append(str(body["reason"]))

    async def scenario() -> None:
        sink = EventSink(flaky, posters=1)
        sink.start()
        for reason in ("bad", "good"):
            sink.put("/p", {"reason": reason})
        await sink.close(within=5)

    asyncio.run(scenario())
    assert posted == ["good"]
