"""A venue's websocket turned into the engine's stream of closed bars, whatever the network does.

`LiveFeed` is the MarketDataProvider of every network venue. A venue adapter
(binance.py, polygon.py) knows the wire: how to connect, authenticate and
subscribe, how to read a frame, how to fetch bars over REST. The feed owns the
rest, the same for every venue:

- one connection for all symbols, reopened after every loss with exponential
  backoff and jitter (reconnect.py) until `maxRetries` consecutive failures;
  a permanent failure (MarketDataError: bad key, unknown symbol) ends the
  stream at once;
- after every (re)connect, before anything is delivered, every symbol is
  backfilled from REST up to the last interval closed by the venue's clock,
  so a symbol that trades thinly, or a stream that stays silent after a cut,
  still gets its bars; and whenever the stream proves that bars were skipped,
  the missing closed bars come from REST too (backfill.py);
- bars are delivered in (time, session symbol order) across symbols, as a
  replay of the same bars delivers them (sequencer.py);
- a bar (or event) for an interval already delivered is dropped and counted;
- an unreadable frame is counted and skipped;
- `close()` ends the stream promptly, and cancelling the task that reads the
  stream closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.protocol import State

from kubetrade.runner.domain import EARLIEST_TIME_MS, LATEST_TIME_MS, MAX_PRICE, MAX_VOLUME, Bar
from kubetrade.runner.marketdata.backfill import Cursors
from kubetrade.runner.marketdata.base import MarketDataError, MarketDataProvider
from kubetrade.runner.marketdata.connection import FeedTimeouts, close_quietly, describe
from kubetrade.runner.marketdata.health import FeedHealth
from kubetrade.runner.marketdata.reconnect import (
    Backoff,
    BackoffPolicy,
    CredentialsRefused,
    TransientError,
)
from kubetrade.runner.marketdata.sequencer import Sequencer

__all__ = [
    "Closed",
    "Decoder",
    "LiveFeed",
    "MalformedFrame",
    "Observation",
    "Progress",
    "Stale",
    "Venue",
    "checked_bar",
]

log = logging.getLogger("kubetrade.marketdata")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Closed:
    """A closed bar at the session's interval, read from the stream."""

    bar: Bar


@dataclass(frozen=True, slots=True)
class Progress:
    """Every bar of `symbol` with a time before `time` has closed at the venue."""

    symbol: str
    time: int


@dataclass(frozen=True, slots=True)
class Stale:
    """An event of `symbol` for an interval already handled (a repeat, or one that came
    after its bar was built or fetched); the decoder dropped it, the feed counts it."""

    symbol: str


Observation = Closed | Progress | Stale


class MalformedFrame(Exception):
    """A frame that is not a message of the venue's protocol; it is counted and skipped."""


def checked_bar(symbol: str, time: int, *ohlcv: object) -> Bar:
    """A Bar from wire values (numbers or decimal strings); MalformedFrame for nonsense."""
    try:
        o, h, l, c, v = (float(x) for x in ohlcv)  # type: ignore[arg-type]  # noqa: E741
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond floats
        raise MalformedFrame from None
    # NaN fails every comparison, so it is refused here as well; the bounds are the
    # replay files' (no product of a price and a quantity can overflow, any time prints).
    if not (
        0 < l <= min(o, c)
        and max(o, c) <= h <= MAX_PRICE
        and 0 <= v <= MAX_VOLUME
        and EARLIEST_TIME_MS <= time < LATEST_TIME_MS
    ):
        raise MalformedFrame
    return Bar(symbol, time, o, h, l, c, v)


class Decoder(Protocol):
    """Reads one connection's frames; may keep state for that connection."""

    def __call__(self, frame: str | bytes) -> Iterable[Observation]: ...


class Venue(Protocol):
    """What a feed needs to know about one venue's protocol."""

    name: str
    interval_ms: int
    # Whether the venue has a bar for every interval, so a skipped bar time on the
    # stream means a missed bar (Binance); Polygon has no bar for a quiet minute.
    contiguous: bool

    async def check(self) -> None:
        """Raise MarketDataError for what no retry can fix (unknown symbols, a bad key)."""

    async def clock(self) -> int | None:
        """The venue's time (ms), from REST; None when this venue has no clock to read."""
        ...

    async def connect(self) -> tuple[ClientConnection, Decoder]:
        """A websocket open, authenticated and subscribed to every symbol, and its decoder."""
        ...

    async def bars(self, symbol: str, *, start: int, end: int) -> list[Bar]:
        """Closed bars of `symbol` with start <= time < end, oldest first, from REST."""
        ...

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        """Up to `count` bars of `symbol` closed at the venue with time < end, oldest first."""
        ...

    async def close(self) -> None: ...


class _Closing(Exception):
    """close() was called while the feed waited for the network."""


class LiveFeed(MarketDataProvider):
    """Closed bars of every session symbol from one venue, in order, each once."""

    health: FeedHealth  # a network feed always has one

    def __init__(
        self,
        *,
        venue: Venue,
        symbols: Sequence[str],
        policy: BackoffPolicy,
        timeouts: FeedTimeouts | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.venue = venue
        self.symbols = tuple(symbols)
        self.policy = policy
        self.timeouts = timeouts or FeedTimeouts()
        self.health = FeedHealth(provider=venue.name)
        self._rng = rng or random.Random()
        self._cursors = Cursors(venue.interval_ms)
        self._sequencer = Sequencer(self.symbols, self._cursors.due)
        self._closing = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._last_frame = 0.0  # loop time of the newest frame, for the idle watchdog
        self._stalled = False

    # -- MarketDataProvider ------------------------------------------------------------

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        """Warm-up bars; the stream then carries on right after the newest of them."""
        if count <= 0:
            return []
        backoff = Backoff(self.policy, self._rng)
        try:
            while True:
                try:
                    work = self.venue.history(symbol, end=end, count=count)
                    bars = await self._unless_closing(work)
                    break
                except TransientError as exc:
                    await self._pause(backoff, str(exc), at_least=exc.retry_after)
        except _Closing:
            return []
        if bars:
            self._cursors.resume_after(symbol, bars[-1].time)
        return bars

    async def stream(self) -> AsyncIterator[Bar]:
        try:
            async for bar in self._run():
                yield bar
        except _Closing:
            return

    async def close(self) -> None:
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await close_quietly(ws)
        await self.venue.close()

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> AsyncIterator[Bar]:
        backoff = Backoff(self.policy, self._rng)
        while True:
            try:
                await self._unless_closing(self.venue.check())
                await self._start()
                break
            except TransientError as exc:
                await self._pause(backoff, str(exc), at_least=exc.retry_after)
        opened = 0
        while not self._closing.is_set():
            try:
                ws, decode = await self._unless_closing(self.venue.connect())
            except TransientError as exc:
                self._count(exc)
                await self._pause(backoff, str(exc), at_least=exc.retry_after)
                continue
            if opened:
                self.health.reconnects += 1
            opened += 1
            self._ws, self._stalled = ws, False
            self.health.connected = True
            watchdog = self._watch(ws)
            reason = "the server closed the connection"
            retry_after: float | None = None
            try:
                # Subscribed first, then caught up: nothing closes unseen in between
                # (frames wait in the socket meanwhile).
                await self._catch_up()
                for bar in self._release():
                    yield bar
                async for bar in self._read(ws, decode, backoff):
                    yield bar
            except ConnectionClosed as exc:
                reason = describe(exc)
            except TransientError as exc:
                self._count(exc)
                reason, retry_after = str(exc), exc.retry_after
            finally:
                self.health.connected = False
                self._ws = None
                if watchdog is not None:
                    watchdog.cancel()
                await close_quietly(ws)
            if self._closing.is_set():
                return
            if self._stalled:
                reason = f"stalled: no data for {self.timeouts.idle:g}s"
            await self._pause(backoff, reason, at_least=retry_after)

    async def _start(self) -> None:
        """A symbol without warm-up history owes the bars from the venue's moment of the
        stream's start on: the bucket in progress then is its first."""
        now = await self._unless_closing(self.venue.clock())
        if now is None:
            return  # no clock: the stream's first report of each symbol says where it starts
        for symbol in self.symbols:
            if self._cursors.due(symbol) is None:
                self._cursors.covered(symbol, now - now % self.venue.interval_ms)

    async def _catch_up(self) -> None:
        """Every symbol's bars up to the last interval the venue's clock shows as closed:
        after every (re)connect, and when bars wait for a symbol that stays quiet.

        Not only the symbols the stream speaks of next: a thinly traded one, or a
        stream that stays silent after the reconnect, would otherwise never get
        the bars it missed, and the others' bars would wait for them.
        """
        now = await self._unless_closing(self.venue.clock())
        if now is None:
            return  # no clock: the stream's own progress reports drive the backfill
        cutoff = now - now % self.venue.interval_ms
        cursors = self._cursors
        for symbol in self.symbols:
            due = cursors.due(symbol)
            if due is not None and due < cutoff:
                self._hold_backfill(await self._backfill(symbol, due, cutoff))
                cursors.covered(symbol, cutoff)

    async def _read(
        self, ws: ClientConnection, decode: Decoder, backoff: Backoff
    ) -> AsyncIterator[Bar]:
        loop = asyncio.get_running_loop()
        cursors, health, contiguous = self._cursors, self.health, self.venue.contiguous
        heard = False
        while True:
            try:
                frame = await self._receive(ws)
            except ConnectionClosedOK:
                break  # a clean close (a periodic disconnect): reconnect below
            if frame is None:  # quiet, with bars waiting for their turn
                await self._catch_up()
                for bar in self._release():
                    yield bar
                continue
            self._last_frame = loop.time()
            try:
                observations = decode(frame)
            except MalformedFrame:
                health.malformed_frames += 1
                continue
            for seen in observations:
                if not heard:  # the venue talks: a later loss starts a fresh backoff
                    heard = True
                    backoff.succeeded()
                if isinstance(seen, Stale):
                    health.duplicates_dropped += 1
                    continue
                if isinstance(seen, Closed):
                    symbol, time = seen.bar.symbol, seen.bar.time
                else:
                    symbol, time = seen.symbol, seen.time
                if contiguous or isinstance(seen, Progress):
                    gap = cursors.gap(symbol, time)
                    if gap is not None:
                        self._hold_backfill(await self._backfill(symbol, *gap))
                        cursors.covered(symbol, time)
                if isinstance(seen, Closed):
                    if cursors.admit(seen.bar):
                        self._sequencer.hold(seen.bar)
                    else:
                        health.duplicates_dropped += 1
            for bar in self._release():
                yield bar
        if self._closing.is_set():
            raise _Closing
        # The iteration ends quietly when the server closed cleanly (a periodic disconnect).
        reason = f": {ws.close_reason[:80]}" if ws.close_reason else ""
        raise TransientError(f"the server closed the connection (code {ws.close_code}{reason})")

    async def _receive(self, ws: ClientConnection) -> str | bytes | None:
        """The next frame; None when bars wait for a quiet symbol and `timeouts.quiet`
        passed without one (a stock that does not trade sends nothing to say so)."""
        quiet = self.timeouts.quiet
        if quiet is None or not len(self._sequencer):
            return await ws.recv()
        try:
            return await asyncio.wait_for(ws.recv(), quiet)  # recv is safe to cancel
        except TimeoutError:
            return None

    def _hold_backfill(self, bars: list[Bar]) -> None:
        for bar in bars:
            if self._cursors.admit(bar):
                self.health.backfilled_bars += 1
                self._sequencer.hold(bar)

    def _release(self) -> Iterator[Bar]:
        """The bars whose turn has come (sequencer.py), each noted in the health figures
        as it is handed on."""
        interval = self.venue.interval_ms
        for bar in self._sequencer.release():
            self.health.saw_bar(bar.time + interval)
            yield bar

    def _count(self, exc: TransientError) -> None:
        if isinstance(exc, CredentialsRefused):
            self.health.auth_refusals += 1

    async def _backfill(self, symbol: str, start: int, end: int) -> list[Bar]:
        bars = await self._unless_closing(self.venue.bars(symbol, start=start, end=end))
        if bars:
            log.info("%s: backfilled %d bar(s) of %s from REST", self.venue.name, len(bars), symbol)
        return bars

    # -- waiting, interruptible by close() ---------------------------------------------

    async def _pause(self, backoff: Backoff, reason: str, *, at_least: float | None = None) -> None:
        """Wait before the next attempt, or give up with a MarketDataError. ``at_least``:
        the venue's own Retry-After, which the wait never undercuts."""
        self.health.last_error = reason
        delay = backoff.failed()
        if delay is None:
            raise MarketDataError(
                f"{self.venue.name} market data: gave up after {backoff.failures - 1} failed"
                f" reconnection attempt(s) (spec.marketData.config.maxRetries ="
                f" {self.policy.max_retries}); last error: {reason}"
            )
        if at_least is not None and at_least > delay:
            delay = at_least
        log.warning(
            "%s market data: %s; retrying in %.2fs (attempt %d of %d)",
            self.venue.name,
            reason,
            delay,
            backoff.failures,
            self.policy.max_retries,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)
        if self._closing.is_set():
            raise _Closing

    async def _unless_closing(self, work: Awaitable[_T]) -> _T:
        """Await `work`, abandoning it as soon as close() is called."""
        if self._closing.is_set():
            if asyncio.iscoroutine(work):
                work.close()
            raise _Closing
        task = asyncio.ensure_future(work)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((task, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not task.done():  # close() was called, or our own caller was cancelled
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.cancelled():
            raise _Closing
        return task.result()

    def _watch(self, ws: ClientConnection) -> asyncio.Task[None] | None:
        """Cut a connection that stays silent for `timeouts.idle` seconds."""
        idle = self.timeouts.idle
        if idle is None:
            return None
        loop = asyncio.get_running_loop()
        self._last_frame = loop.time()

        async def watch() -> None:
            while ws.state is not State.CLOSED:
                await asyncio.sleep(idle / 4)
                if loop.time() - self._last_frame > idle:
                    self._stalled = True
                    # The peer is unresponsive: a closing handshake would only wait.
                    ws.transport.abort()
                    return

        return asyncio.create_task(watch(), name=f"{self.venue.name}-idle-watchdog")
