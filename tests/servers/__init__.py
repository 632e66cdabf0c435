"""Local servers that speak the venues' real protocols, for tests and benchmarks.

Each module of this package is one server. This module holds what the market
data servers share: a simulated market and its fault scripts.

`binance_market.BinanceMarket` and `polygon_market.PolygonMarket` each serve a
websocket stream and the REST endpoints a market data provider uses, on one
loopback port, from a simulated market whose clock the caller controls: bars
close one "step" at a time, either on a fast schedule (`period` seconds per
step), unthrottled (`period=0`: a little ahead of the fastest reader, for
benchmarks), or only when a test calls `step()` (`period=None`). The simulated
clock starts at a fixed time in the past (2024-01-02), so warm-up history asked
"up to now" exists.

Faults are scripted per connection, in the order connections arrive: the
`faults` argument holds one list of `Fault`s per connection (later connections
run clean). Each fault strikes once that connection has been sent `after` steps:

    drop         cut the TCP connection without a closing handshake
    close        close cleanly (1001), like the venue's periodic disconnect
    shutdown     announce a server shutdown (Binance), then close
    stall        stop sending and stop reading (pings go unanswered)
    malformed    send frames that are not valid messages, then carry on
    duplicate    send the step's frames twice
    reorder      send the step's frames after the next step's
    reject_auth  refuse the API key at the handshake (Polygon)

`lifetime` closes every connection after that many steps, the pattern of a
venue that limits connection age. `fail_requests(n)` makes the next n REST
requests answer 503 (or another status, with a Retry-After header if asked).

Run one as a process (prints its URLs as one JSON line, serves until SIGTERM):

    PYTHONPATH=tests PYTHONSAFEPATH=1 .venv/bin/python -m servers.binance_market --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import WSMsgType, web

from kubetrade.runner.domain import Bar

__all__ = ["Fault", "SimMarket", "parse_faults", "running", "serve_forever"]

T0 = 1_704_153_600_000  # 2024-01-02T00:00:00Z, a Tuesday
_BURST = 64  # steps produced at once by an unthrottled clock
FaultKind = Literal[
    "drop", "close", "shutdown", "stall", "malformed", "duplicate", "reorder", "reject_auth"
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "drop",
    "close",
    "shutdown",
    "stall",
    "malformed",
    "duplicate",
    "reorder",
    "reject_auth",
)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    after: int = 0  # steps sent on the connection before the fault strikes


def parse_faults(text: str) -> list[list[Fault]]:
    """'drop@3,malformed@1;close@5' -> one list per connection (';'), faults by ','."""
    script: list[list[Fault]] = []
    for connection in text.split(";"):
        faults = []
        for item in filter(None, (part.strip() for part in connection.split(","))):
            kind, _, after = item.partition("@")
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
            faults.append(Fault(kind, int(after or 0)))
        script.append(faults)
    return script


@dataclass(slots=True)
class _Walk:
    """One symbol's deterministic prices: a random walk rounded to cents."""

    rng: random.Random
    close: float

    def bar(self, symbol: str, time: int, volume_scale: float) -> Bar:
        open_ = self.close
        close = round(open_ * (1 + self.rng.gauss(0, 0.002)), 2)
        high = round(max(open_, close) * (1 + self.rng.random() * 0.001), 2)
        low = round(min(open_, close) * (1 - self.rng.random() * 0.001), 2)
        volume = float(1 + int(self.rng.random() * 100 * volume_scale))
        self.close = close
        return Bar(symbol, time, open_, high, low, close, volume)


@dataclass(slots=True)
class Connection:
    """One websocket client of a simulated server, with its fault script."""

    number: int  # 0 for the first connection the server accepted
    ws: web.WebSocketResponse
    request: web.Request
    faults: list[Fault]
    sent_steps: int = 0
    position: int = 0  # the next step to send
    held: list[str] = field(default_factory=list)  # frames kept back by a reorder fault

    def due(self, kind: FaultKind) -> bool:
        return any(f.kind == kind and f.after == self.sent_steps for f in self.faults)


class SimMarket:
    """The simulated market and server plumbing shared by the venue servers.

    A venue subclass says how bars are produced (`_produce`), how a step looks
    on its wire (`_step_frames`), and serves its REST endpoints and handshake.
    """

    venue = "sim"

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        step_ms: int,
        history: int = 200,
        period: float | None = 0.005,
        faults: Sequence[Sequence[Fault]] = (),
        lifetime: int | None = None,
        heartbeat: float | None = None,
        seed: int = 7,
        start_ms: int = T0,
    ) -> None:
        self.symbols = list(symbols)
        self.step_ms = step_ms
        self.period = period
        self.faults = [list(f) for f in faults]
        self.lifetime = lifetime
        self.heartbeat = heartbeat
        self.now = start_ms  # the simulated clock: start of the window in progress
        self.steps = 0
        self.bars: dict[str, list[Bar]] = {s: [] for s in self.symbols}  # every closed bar
        self.produced: list[dict[str, Bar]] = []  # the bars each live step closed
        self.connections: list[Connection] = []
        self.requests = 0
        self.paths: list[str] = []  # the path of every REST request, in order
        self.repeated_events = 0  # events sent twice by `duplicate` faults
        self._walks = {
            s: _Walk(random.Random(f"{seed}:{s}"), 100.0 + 50 * i)
            for i, s in enumerate(self.symbols)
        }
        self._stepped = asyncio.Condition()
        self._failing: list[tuple[int, int | None]] = []  # (status, Retry-After seconds)
        self.request_times: list[float] = []  # monotonic time of every REST request
        self._runner: web.AppRunner | None = None
        self._clock: asyncio.Task[None] | None = None
        self.port = 0
        # History before the simulated start, so warm-up has something to read.
        self.now -= history * step_ms
        for _ in range(history):
            self._produce()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._count_and_fail])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.period is not None:
            self._clock = asyncio.create_task(self._tick(self.period))

    async def stop(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        for conn in self.connections:  # stalled ones would keep the server waiting
            if conn.request.transport is not None:
                conn.request.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    async def step(self, count: int = 1) -> None:
        """Close `count` more bars per symbol and tell every connection."""
        for _ in range(count):
            self.produced.append(self._produce())
            self.steps += 1
        async with self._stepped:
            self._stepped.notify_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds; it is checked whenever a step closes or a
        connection opens or ends."""
        async with self._stepped:
            await self._stepped.wait_for(condition)

    async def _changed(self) -> None:
        async with self._stepped:
            self._stepped.notify_all()

    def fail_requests(self, count: int, status: int = 503, retry_after: int | None = None) -> None:
        """Answer the next `count` REST requests with `status` (and a Retry-After header
        of `retry_after` seconds, as Binance sends with 429 and 418)."""
        self._failing.extend([(status, retry_after)] * count)

    async def _tick(self, period: float) -> None:
        if period > 0:
            while True:
                await asyncio.sleep(period)
                await self.step()
        # Unthrottled (benchmarks): stay a little ahead of the fastest reader, so the
        # simulated market does not outgrow memory while nobody reads it.
        while True:
            await self.wait_until(self._someone_keeps_up)
            await self.step(_BURST)

    def _someone_keeps_up(self) -> bool:
        return any(not c.ws.closed and self.steps - c.position < _BURST for c in self.connections)

    # -- for subclasses ----------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _produce(self) -> dict[str, Bar]:
        """Close the window in progress for every symbol and advance the clock."""
        closed = {}
        for symbol in self.symbols:
            bar = closed[symbol] = self._walks[symbol].bar(symbol, self.now, 1.0)
            self.bars[symbol].append(bar)
        self.now += self.step_ms
        return closed

    def live_bars(self, symbol: str) -> list[Bar]:
        """The bars of `symbol` closed by steps (history excluded), oldest first."""
        return [step[symbol] for step in self.produced if symbol in step]

    def _step_frames(self, conn: Connection, step: int) -> list[str]:
        """The frames one connection receives for step number `step` (0-based)."""
        raise NotImplementedError

    def _malformed_frames(self) -> list[str]:
        return ['{"stream": "x", "data": {', "[1, 2", '{"unexpected": true}']

    def _events_in(self, frame: str) -> int:
        """How many venue events one frame of `_step_frames` carries."""
        return 1

    async def _on_fault(self, conn: Connection, fault: FaultKind) -> bool:
        """Venue-specific faults; True when the connection must end."""
        return False

    # -- the stream loop ---------------------------------------------------------------

    async def open_stream(self, request: web.Request) -> tuple[web.WebSocketResponse, Connection]:
        ws = web.WebSocketResponse(heartbeat=self.heartbeat, autoping=True)
        await ws.prepare(request)
        number = len(self.connections)
        faults = self.faults[number] if number < len(self.faults) else []
        conn = Connection(number, ws, request, faults)
        self.connections.append(conn)
        await self._changed()
        return ws, conn

    async def serve(
        self,
        conn: Connection,
        *,
        first_step: int,
        on_text: Callable[[Connection, str], Awaitable[None]] | None = None,
    ) -> None:
        """Read the client (pongs, requests) while `pump` sends it the steps."""

        async def read() -> None:
            try:
                async for message in conn.ws:
                    if message.type is WSMsgType.TEXT and on_text is not None:
                        await on_text(conn, message.data)
            finally:
                await self._changed()  # the pump (and any waiter) sees the close

        reader = asyncio.create_task(read())
        try:
            await self.pump(conn, first_step=first_step)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def pump(self, conn: Connection, *, first_step: int) -> None:
        """Send every step from `first_step` on, applying the connection's faults."""
        position = conn.position = first_step
        ws = conn.ws
        while not ws.closed:
            if self.period == 0:  # caught up: an unthrottled clock may run on
                await self._changed()

            def ready(at: int = position) -> bool:
                return self.steps > at or ws.closed

            async with self._stepped:
                await self._stepped.wait_for(ready)
            while position < self.steps and not ws.closed:
                conn.position = position
                if await self._strike(conn):
                    return
                frames = self._step_frames(conn, position)
                reorder, duplicate = conn.due("reorder"), conn.due("duplicate")
                position += 1
                conn.sent_steps += 1
                if reorder:  # this step's frames go out after the next step's
                    conn.held = frames
                    continue
                frames, conn.held = frames + conn.held, []
                repeat = 2 if duplicate else 1
                if duplicate:
                    self.repeated_events += sum(self._events_in(frame) for frame in frames)
                try:
                    for _ in range(repeat):
                        for frame in frames:
                            await ws.send_str(frame)
                except (ConnectionError, RuntimeError):
                    return
            conn.position = position

    async def _strike(self, conn: Connection) -> bool:
        """Apply the faults due now; True when the connection is over."""
        ws = conn.ws
        if self.lifetime is not None and conn.sent_steps >= self.lifetime:
            await ws.close(code=1001, message=b"connection lifetime reached")
            return True
        for fault in conn.faults:
            if fault.after != conn.sent_steps:
                continue
            if fault.kind == "drop":
                if conn.request.transport is not None:
                    conn.request.transport.abort()
                return True
            if fault.kind == "close":
                await ws.close(code=1001, message=b"periodic disconnect")
                return True
            if fault.kind == "stall":
                if conn.request.transport is not None:
                    conn.request.transport.pause_reading()  # pings go unanswered too
                await asyncio.Event().wait()  # until the server stops
            if fault.kind == "malformed":
                for frame in self._malformed_frames():
                    await ws.send_str(frame)
            if await self._on_fault(conn, fault.kind):
                return True
        return False

    # -- REST plumbing -----------------------------------------------------------------

    @web.middleware
    async def _count_and_fail(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            self.requests += 1
            self.paths.append(request.path)
            self.request_times.append(time.monotonic())
            if self._failing:
                status, retry_after = self._failing.pop(0)
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                return web.json_response({"error": "injected"}, status=status, headers=headers)
        response: web.StreamResponse = await handler(request)
        return response


M = TypeVar("M", bound=SimMarket)


@contextlib.asynccontextmanager
async def running(market: M) -> AsyncIterator[M]:
    """`market`, serving on a free loopback port for the duration of the block."""
    await market.start()
    try:
        yield market
    finally:
        await market.stop()


def standalone_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--symbols", default="BTCUSDT", help="comma-separated")
    parser.add_argument(
        "--period",
        type=float,
        default=0.01,
        help="seconds per step; 0: as fast as a reader keeps up",
    )
    parser.add_argument("--history", type=int, default=200, help="bars before the start")
    parser.add_argument("--faults", default="", help="e.g. 'drop@3;close@5,malformed@1'")
    parser.add_argument("--lifetime", type=int, help="close every connection after N steps")
    parser.add_argument("--heartbeat", type=float, help="ping clients every N seconds")
    return parser


async def serve_forever(market: SimMarket, port: int) -> None:
    """Serve until SIGTERM or SIGINT, after printing the URLs as one JSON line."""
    await market.start(port=port)
    print(json.dumps({"ws_url": market.ws_url, "rest_url": market.http_url}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await market.stop()
    sys.stdout.flush()
