"""The runner's HTTP endpoints: /healthz, /readyz, /metrics, /status.

/healthz answers while the event loop is alive (the kubelet restarts a runner
that stops answering). /readyz answers 200 once the strategy is initialized
and the market data stream is open. /status is a small JSON summary that the
operator copies into the session's status at a low rate.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kubetrade.runner.engine import Engine


@dataclass(slots=True)
class RunnerServer:
    engine: Engine
    host: str = "0.0.0.0"
    port: int = 9102
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        return app

    async def start(self) -> int:
        """Start serving; return the bound port (useful when port is 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        return int(addresses[0][1]) if addresses else self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.engine.live:
            return web.Response(text="ready\n")
        if self.engine.ready:
            return web.Response(status=503, text="market data disconnected\n")
        return web.Response(status=503, text="not ready\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.engine.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        summary = dataclasses.asdict(self.engine.summary())
        summary["ready"] = self.engine.live
        summary["real_money"] = self.engine.broker.is_live
        summary["last_bar_time"] = self._last_bar_time()
        health = self.engine.feed_health
        if health is not None:
            summary["market_data"] = health.snapshot(now_ms=int(time.time() * 1000))
        return web.json_response(summary)

    def _last_bar_time(self) -> int | None:
        times = [s.times[-1] for s in self.engine.state.window.series.values() if s.times]
        return max(times) if times else None
