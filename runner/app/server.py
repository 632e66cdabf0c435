"""The runner's HTTP endpoints: /healthz, /readyz, /metrics, /status.

They are served from a thread of their own, with its own event loop: a
strategy call runs synchronously on the engine's loop (for up to
spec.engine.strategyCallTimeoutSeconds), and the kubelet's probes must be
answered meanwhile. /healthz reports whether the engine is stuck: its loop
beats every second when it gets control, and the bar count moves when bars
are processed (a replay at full speed gives the loop control only every few
dozen bars); /healthz answers 503 once neither has happened for longer than
any bar may take (twice the strategy call timeout, plus a margin), so the
kubelet restarts a runner whose loop is stuck for good. /readyz answers
200 once the strategy is initialized and the market data stream is open.
/status is a small JSON summary that the operator copies into the session's
status at a low rate.

The handlers read the engine's figures while the engine's thread may be
changing them; a read that meets a dict changing size is tried again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kubetrade.runner.engine import Engine

T = TypeVar("T")

BEAT_S: Final = 1.0  # how often the engine's loop shows it is alive
STALL_MARGIN_S: Final = 30.0  # on top of two strategy call timeouts (a bar, a restart)
_READ_TRIES: Final = 5


@dataclass(slots=True)
class RunnerServer:
    engine: Engine
    host: str = "0.0.0.0"
    port: int = 9102
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _beat: asyncio.TimerHandle | None = None
    _beat_at: float = field(default_factory=time.monotonic)
    _progress: tuple[int, int] = (-1, -1)  # bars and strategy errors at the last look

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        return app

    async def start(self) -> int:
        """Start serving on a thread of its own; return the bound port (useful when port
        is 0). Raises OSError when the port cannot be bound."""
        self._beating(asyncio.get_running_loop())
        bound: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(bound,), name="kubetrade-http", daemon=True
        )
        self._thread.start()
        try:
            return await asyncio.wrap_future(bound)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)  # _serve cleans up once the loop stops
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)

    # -- the engine's loop ---------------------------------------------------------

    def _beating(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat_at = time.monotonic()
        self._beat = loop.call_later(BEAT_S, self._beating, loop)

    def stall_limit_s(self) -> float:
        """How long the engine's loop may miss its beat before /healthz says it is stuck."""
        limits = getattr(self.engine.strategy, "limits", None)
        timeout = float(getattr(limits, "call_timeout_s", 0.0))
        return 2 * timeout + STALL_MARGIN_S

    # -- the server's thread ---------------------------------------------------------

    def _serve(self, bound: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        try:
            port = loop.run_until_complete(self._open())
        except BaseException as exc:
            bound.set_exception(exc)
            loop.run_until_complete(self._close())
            loop.close()
            return
        self._loop = loop
        bound.set_result(port)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _open(self) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        return int(addresses[0][1]) if addresses else self.port

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers (on the server's thread) -----------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        progress = (self.engine.bars, self.engine.strategy_errors)
        if progress != self._progress:  # bars went through since the last probe
            self._progress, self._beat_at = progress, now
        silent = now - self._beat_at
        if silent > self.stall_limit_s():
            return web.Response(
                status=503, text=f"the engine's event loop has been stuck for {silent:.0f}s\n"
            )
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.engine.live:
            return web.Response(text="ready\n")
        if self.engine.ready:
            return web.Response(status=503, text="market data disconnected\n")
        return web.Response(status=503, text="not ready\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = _read(self.engine.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(_read(self._summary))

    def _summary(self) -> dict[str, Any]:
        summary = dataclasses.asdict(self.engine.summary())
        summary["ready"] = self.engine.live
        summary["real_money"] = self.engine.broker.is_live
        summary["last_bar_time"] = self._last_bar_time()
        health = self.engine.feed_health
        if health is not None:
            summary["market_data"] = health.snapshot(now_ms=int(time.time() * 1000))
        return summary

    def _last_bar_time(self) -> int | None:
        times = [s.times[-1] for s in list(self.engine.state.window.series.values()) if s.times]
        return max(times) if times else None


def _read(compute: Callable[[], T]) -> T:
    """Compute figures from state the engine's thread may be changing: a dict that changes
    size while it is iterated raises RuntimeError, and the next try usually finds it still."""
    for _ in range(_READ_TRIES - 1):
        try:
            return compute()
        except RuntimeError:
            time.sleep(0.001)
    return compute()
