"""Which session is reconciled when: requests coalesced, a bounded number at a time, and
each session's next look without an event.

Every trigger (a session, pod, ConfigMap or claim event; a session's due time) asks for
a pass of one session. Requests for a session whose pass has not started yet join that
pass, so a burst of events costs one reconciliation, not one each; a request that comes
while a pass runs gets one more pass after it (the pass may have read too early). At most
`concurrency` passes run at once, the rest wait their turn in arrival order, so a burst of
a thousand new sessions does not become a thousand API requests in flight at once (they
time out waiting for a connection) and the first applied are the first served. Urgent
requests (a session created or changed, a runner pod gone: a pod is likely to be made)
go before the others (a runner's status moved, figures due), which only describe.

A pass returns how many seconds until the session should be looked at again without an
event (controller-runtime's RequeueAfter): a runner's figures due, a new spec on
probation, the periodic resync; None when the session is gone. One task sleeps until the
earliest of those times. This replaces a kopf timer per session, which at a thousand
sessions woke a thousand tasks every resync interval to do, mostly, nothing.

A pass that fails is logged and tried again after `retry_seconds`, doubled for each
failure of that session in a row up to `MAX_RETRY_SECONDS`, with jitter: when the API
server is down, a thousand sessions do not all come back at once every ten seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from kubetrade.operator.fence import Fenced
from kubetrade.operator.kube import ApiError

log = logging.getLogger("kubetrade.operator")

Key = tuple[str, str]  # namespace, name
Work = Callable[[str, str], Awaitable[float | None]]

RETRY_SECONDS: Final = 10.0
MAX_RETRY_SECONDS: Final = 300.0


@dataclass(slots=True)
class _Slot:
    pending: asyncio.Future[None] | None = None  # a pass asked for and not yet started
    running: bool = False
    urgent: bool = False  # the pending pass was asked for urgently
    turn: asyncio.Future[None] | None = None  # its place in a lane, while it waits
    failures: int = 0  # passes in a row that failed


@dataclass
class _Turns:
    """`free` slots for passes; waiters in two lanes, the urgent one served first."""

    free: int
    urgent: deque[asyncio.Future[None]] = field(default_factory=deque)
    normal: deque[asyncio.Future[None]] = field(default_factory=deque)

    def wait(self, *, urgent: bool) -> asyncio.Future[None]:
        """A future done when it is this waiter's turn (at once if a slot is free)."""
        turn = asyncio.get_running_loop().create_future()
        if self.free > 0 and not (self.urgent or self.normal):
            self.free -= 1
            turn.set_result(None)
        else:
            (self.urgent if urgent else self.normal).append(turn)
        return turn

    def promote(self, turn: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self.normal.remove(turn)
            self.urgent.append(turn)

    def give_back(self) -> None:
        for lane in (self.urgent, self.normal):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    turn.set_result(None)  # the slot passes on
                    return
        self.free += 1


@dataclass
class WorkQueue:
    work: Work  # one pass of one session; seconds until its next look, None once gone
    concurrency: int = 16
    retry_seconds: float = RETRY_SECONDS
    _slots: dict[Key, _Slot] = field(default_factory=dict)
    _due: dict[Key, float] = field(default_factory=dict)  # monotonic
    _heap: list[tuple[float, Key]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _turns: _Turns | None = None
    _wake: asyncio.Event | None = None

    async def request(self, namespace: str, name: str, *, urgent: bool = False) -> None:
        """A pass of the session that starts after this call; return once it is done."""
        pending = self._kick((namespace, name), urgent=urgent)
        await asyncio.shield(pending)

    def kick(self, namespace: str, name: str, *, urgent: bool = False) -> None:
        """Ask for a pass without waiting for it."""
        self._kick((namespace, name), urgent=urgent)

    async def stop(self) -> None:
        """Cancel every pass and wait until none runs: nothing is written after this."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def depth(self) -> int:
        """Sessions with a pass asked for or running."""
        return sum(1 for slot in self._slots.values() if slot.pending or slot.running)

    async def run(self) -> None:
        """Start due passes for ever."""
        wake = self._wake = self._wake or asyncio.Event()
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                when, key = heapq.heappop(self._heap)
                if self._due.get(key) == when:  # not moved since: the session is due
                    del self._due[key]
                    self._kick(key)
            wake.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    # ----------------------------------------------------------------------------------

    def _kick(self, key: Key, *, urgent: bool = False) -> asyncio.Future[None]:
        slot = self._slots.setdefault(key, _Slot())
        if slot.pending is None:
            slot.pending = asyncio.get_running_loop().create_future()
            slot.urgent = urgent
            if not slot.running:
                self._start(key)
        elif urgent and not slot.urgent:
            slot.urgent = True
            if slot.turn is not None and self._turns is not None:
                self._turns.promote(slot.turn)  # it waits in the normal lane: move it up
        return slot.pending

    def _start(self, key: Key) -> None:
        task = asyncio.create_task(self._pass(key), name=f"reconcile {key[0]}/{key[1]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _backoff(self, slot: _Slot) -> float:
        slot.failures += 1
        doubled = self.retry_seconds * float(1 << min(slot.failures - 1, 16))
        return min(MAX_RETRY_SECONDS, doubled) * random.uniform(0.8, 1.2)

    def _at(self, key: Key, seconds: float) -> None:
        when = time.monotonic() + seconds
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        if self._wake is not None and self._heap[0] == (when, key):
            self._wake.set()  # earlier than what the timer sleeps towards

    async def _pass(self, key: Key) -> None:
        slot = self._slots[key]
        turns = self._turns = self._turns or _Turns(self.concurrency)
        turn = slot.turn = turns.wait(urgent=slot.urgent)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                turns.give_back()  # it was our turn already: pass it on
            raise
        finally:
            slot.turn = None
        try:
            done, slot.pending = slot.pending, None
            slot.running = True
            try:
                after = await self.work(*key)
                slot.failures = 0
            except Fenced:
                after = self.retry_seconds  # not the leader (any more): the leader's job
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                # The API server refused or did not answer: the next pass will see.
                after = self._backoff(slot)
                log.warning("%s/%s: reconciliation failed, retrying in %.0fs: %r", *key,
                            after, exc)  # fmt: skip
            except Exception:
                after = self._backoff(slot)
                log.exception("%s/%s: reconciliation failed, retrying in %.0fs", *key, after)
            finally:
                slot.running = False
                if done is not None and not done.done():
                    done.set_result(None)
        finally:
            turns.give_back()
        asked = self._slots[key].pending is not None  # asked for while this pass ran
        if after is None and not asked:
            self._slots.pop(key, None)  # gone: forget it
            self._due.pop(key, None)
            return
        if after is not None:
            self._at(key, after)
        if asked:
            self._start(key)
