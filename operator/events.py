"""Kubernetes Events posted beside the reconciler, never in its way.

An Event tells a person what happened; it is not part of the session's state (the
status is). Posting one inside a pass held that pass, and with it the next session's
runner pod, for a round trip to the API server: at a thousand sessions applied at once
there are three Events per new session, a third of the operator's writes. So a pass
only queues its Events here and goes on; `POSTERS` tasks post them in order, at most
that many at once, so the writes that start runners keep the API server's attention.

As with client-go's event broadcaster, the queue is bounded: when the API server falls
so far behind that `CAPACITY` Events wait, a new one is dropped and counted (a warning
says how many), rather than the operator's memory growing without end. A stopping
operator posts what is queued for up to `FLUSH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

log = logging.getLogger("kubetrade.operator.events")

Obj = dict[str, Any]
Post = Callable[[str, Obj], Awaitable[None]]

CAPACITY: Final = 10_000
POSTERS: Final = 2
FLUSH_SECONDS: Final = 5.0


class EventSink:
    """Queued Events and the tasks that post them; `post(path, body)` sends one and
    handles its own failures (an Event is best effort)."""

    def __init__(self, post: Post, *, capacity: int = CAPACITY, posters: int = POSTERS) -> None:
        self._post = post
        self._queue: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue(maxsize=capacity)
        self._posters = posters
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.dropped = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._posters)]

    def put(self, path: str, body: Obj) -> None:
        if self._closed:
            self.dropped += 1  # the operator is stopping: nobody would post it
            return
        try:
            self._queue.put_nowait((path, body))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning(
                    "%d Kubernetes Events dropped: the API server is %d Events behind",
                    self.dropped,
                    self._queue.qsize(),
                )

    async def _run(self) -> None:
        while True:
            path, body = await self._queue.get()
            try:
                await self._post(path, body)
            except Exception:  # an Event is best effort; the poster must live on
                log.exception("posting an Event failed")
            finally:
                self._queue.task_done()

    async def close(self, within: float = FLUSH_SECONDS) -> None:
        """Post what is queued (for `within` seconds at most), then stop the posters.
        Events put after this are dropped."""
        self._closed = True
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), within)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
