"""The operator's HTTP port: /metrics from its registry, /healthz relayed to kopf's probe."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp import web

from kubetrade.operator.endpoint import OperatorEndpoint, loopback_probe_url
from kubetrade.operator.metrics import OperatorMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_liveness_is_kopfs_answer_and_metrics_are_ours() -> None:
    metrics = OperatorMetrics()
    metrics.phase("trading", "a", "Running")
    metrics.phase("trading", "b", "Running")
    metrics.phase("trading", "c", "Suspended")
    metrics.rollbacks.inc()
    probe = loopback_probe_url("/healthz")
    port = _free_port()
    endpoint = OperatorEndpoint(f"http://127.0.0.1:{port}/healthz", probe, metrics)
    await endpoint.start()
    kopf_like = None
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            async with http.get(f"{base}/healthz") as reply:  # kopf not up yet
                assert reply.status == 503

            # kopf's probe comes up (the real one answers JSON of its probe handlers).
            async def kopf_probe(_: web.Request) -> web.Response:
                return web.json_response({"now": 1})

            app = web.Application()
            app.router.add_get("/healthz", kopf_probe)
            kopf_like = web.AppRunner(app)
            await kopf_like.setup()
            probe_port = int(probe.rsplit(":", 1)[1].split("/")[0])
            await web.TCPSite(kopf_like, "127.0.0.1", probe_port).start()
            async with http.get(f"{base}/healthz") as reply:
                assert reply.status == 200
                assert await reply.json() == {"now": 1}
            async with http.get(f"{base}/metrics") as reply:
                text = await reply.text()
    finally:
        await endpoint.stop()
        if kopf_like is not None:
            await kopf_like.cleanup()
    assert 'kubetrade_operator_sessions{phase="Running"} 2.0' in text
    assert 'kubetrade_operator_sessions{phase="Suspended"} 1.0' in text
    assert 'kubetrade_operator_sessions{phase="Failed"} 0.0' in text
    assert "kubetrade_operator_rollbacks_total 1.0" in text
    assert 'kubetrade_operator_reconciliations_total{result="error"} 0.0' in text
    assert "kubetrade_operator_queue_depth 0.0" in text
    assert 'kubetrade_build_info{abi="1",component="operator"' in text
