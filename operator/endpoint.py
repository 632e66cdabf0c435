"""The operator's HTTP port: /metrics, and /healthz answered by kopf's liveness probe.

kopf serves its liveness probe on an endpoint of its own and nothing else. So kopf's probe
listens on a loopback port only this process knows, and the operator's port (the chart's
`metrics.port`, given as --liveness URL) is served here: /metrics from the operator's
registry, and the liveness path relayed to kopf, answer for answer. Until kopf's probe is
up (the operator is still starting) the liveness path answers 503, as kopf's own would
not answer at all: the startup probe waits either way. A leader-election standby runs no
kopf: it is alive as long as it answers, and says it is a standby.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kubetrade.operator.metrics import OperatorMetrics

_PROBE_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)


def loopback_probe_url(path: str) -> str:
    """A URL for kopf's own probe on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return f"http://127.0.0.1:{port}{path}"


@dataclass(slots=True)
class OperatorEndpoint:
    url: str  # where to serve, e.g. http://0.0.0.0:8080/healthz (the liveness path)
    kopf_probe: str  # kopf's own liveness endpoint
    metrics: OperatorMetrics
    standby: bool = False  # waiting for the leader lease: no kopf to ask
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        where = urlsplit(self.url)
        app = web.Application()
        app.router.add_get(where.path or "/healthz", self._liveness)
        app.router.add_get("/metrics", self._metrics)
        self._client = aiohttp.ClientSession(timeout=_PROBE_TIMEOUT)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, where.hostname or "0.0.0.0", where.port or 80).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _liveness(self, request: web.Request) -> web.Response:
        assert self._client is not None
        if self.standby:
            return web.Response(text="standby: waiting for the leader lease\n")
        try:
            async with self._client.get(self.kopf_probe) as answer:
                return web.Response(
                    status=answer.status,
                    body=await answer.read(),
                    content_type=answer.content_type,
                )
        except (aiohttp.ClientError, TimeoutError):
            return web.Response(status=503, text="the operator is not running yet\n")
