"""A network feed's health reaches /readyz, /status, /metrics and the event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
from helpers import SMA_WASM
from servers import running
from servers.binance_market import BinanceMarket

from kubetrade.runner import events as ev
from kubetrade.runner.app.server import RunnerServer
from kubetrade.runner.engine import Engine


def spec(market: BinanceMarket) -> str:
    config = {
        "wsUrl": market.ws_url,
        "restUrl": market.http_url,
        "maxRetries": 50,
        "initialBackoff": 0.5,
        "maxBackoff": 0.5,
    }
    return f"""
    symbols: [BTCUSDT]
    interval: 1m
    strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}}}
    marketData: {{provider: binance, config: {json.dumps(config)}}}
    trading: {{provider: paper}}
    """


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_readiness_and_metrics_follow_the_connection(
    make_engine: Callable[..., Engine],
) -> None:
    market = BinanceMarket(symbols=["BTCUSDT"], period=None)
    async with running(market):
        engine = make_engine(spec(market))
        server = RunnerServer(engine, host="127.0.0.1", port=0)
        port = await server.start()
        base = f"http://127.0.0.1:{port}"
        statuses: list[ev.ProviderStatus] = []
        bars: list[ev.MarketData] = []

        async def consume() -> None:
            async for event in engine.run():
                if isinstance(event, ev.ProviderStatus):
                    statuses.append(event)
                elif isinstance(event, ev.MarketData):
                    bars.append(event)

        task = asyncio.create_task(consume())
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            await market.wait_until(lambda: bool(market.connections))
            while not bars:
                await market.step()
                await asyncio.sleep(0.05)
            assert await get(http, f"{base}/readyz") == (200, "ready\n")
            metrics = (await get(http, f"{base}/metrics"))[1]
            assert (
                'kubetrade_marketdata_connected{provider="binance",session="test-session"} 1.0'
                in (metrics)
            )
            status = json.loads((await get(http, f"{base}/status"))[1])
            assert status["market_data"]["connected"] is True
            assert status["market_data"]["lag_ms"] > 0  # the simulated market lives in 2024

            await market.stop()  # the venue goes away: the feed retries every 0.5 s
            # The feed has no "disconnected" notification to wait on: poll its health.
            while engine.feed_health is not None and engine.feed_health.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            code, text = await get(http, f"{base}/readyz")
            assert (code, text) == (503, "market data disconnected\n")
            metrics = (await get(http, f"{base}/metrics"))[1]
            assert (
                'kubetrade_marketdata_connected{provider="binance",session="test-session"} 0.0'
                in (metrics)
            )
        engine.request_stop()
        await asyncio.wait_for(task, 30)
        await server.stop()
    assert statuses and statuses[0].connected and statuses[0].provider == "binance"
