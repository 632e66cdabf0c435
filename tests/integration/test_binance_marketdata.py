"""The binance provider against a local Binance server that speaks the real protocol.

The server (tests/servers/binance_market.py) closes a kline per symbol every few
milliseconds of a simulated clock and misbehaves on cue: it drops connections,
closes them, stalls, announces shutdowns, sends malformed, repeated and
reordered frames. Whatever it does, the stream must deliver exactly the bars
the server produced, each once, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import ROOT, SMA_WASM
from servers import Fault, running
from servers.binance_market import BinanceMarket

from kubetrade.runner import events as ev
from kubetrade.runner.app.session_file import LoadedSession
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import Bar
from kubetrade.runner.engine import Engine
from kubetrade.runner.marketdata import binance
from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.connection import FeedTimeouts
from kubetrade.runner.marketdata.feed import LiveFeed

SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTE = 60_000
# Short enough that a stalled server is noticed quickly; nothing here is asserted on time.
FAST = FeedTimeouts(open=5, request=5, ping_interval=0.2, ping_timeout=0.5, close=0.5, idle=0.4)
KUBETRADE = Path(sys.executable).parent / "kubetrade"


def now_ms() -> int:
    return int(time.time() * 1000)


def config(market: BinanceMarket, **extra: object) -> str:
    settings = {
        "wsUrl": market.ws_url,
        "restUrl": market.http_url,
        "maxRetries": 5,
        "initialBackoff": 0.01,
        "maxBackoff": 0.05,
        **extra,
    }
    return json.dumps(settings)


def spec(market: BinanceMarket, *, symbols: tuple[str, ...] = SYMBOLS, **extra: object) -> str:
    return f"""
    symbols: {json.dumps(list(symbols))}
    interval: 1m
    strategy:
      path: {SMA_WASM}
      config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}
    marketData:
      provider: binance
      config: {config(market, **extra)}
    trading:
      provider: paper
    engine:
      warmupBars: 20
    """


@pytest.fixture
def provider(make_session: Callable[..., LoadedSession]) -> Callable[..., LiveFeed]:
    """A binance provider for a session pointed at `market`, with short timeouts."""

    def make(market: BinanceMarket, **kw: object) -> LiveFeed:
        loaded = make_session(spec(market, **kw))  # type: ignore[arg-type]
        return binance.create(
            loaded.session.spec, credentials=Credentials("binance", {}), timeouts=FAST
        )

    return make


async def take(feed: LiveFeed, per_symbol: int, *, reconnects: int = 0) -> dict[str, list[Bar]]:
    """Read the stream until every symbol has `per_symbol` bars and the feed has
    reconnected `reconnects` times."""
    got: dict[str, list[Bar]] = {s: [] for s in feed.symbols}
    async with asyncio.timeout(60):  # a hang guard only
        async for bar in feed.stream():
            got[bar.symbol].append(bar)
            if min(map(len, got.values())) >= per_symbol and feed.health.reconnects >= reconnects:
                break
    return got


async def warm(feed: LiveFeed, count: int = 20) -> dict[str, list[Bar]]:
    return {s: await feed.history(s, end=now_ms(), count=count) for s in feed.symbols}


def following(market: BinanceMarket, symbol: str, after: int, count: int) -> list[Bar]:
    return [bar for bar in market.bars[symbol] if bar.time > after][:count]


# -- the done-when runs -----------------------------------------------------------------


async def test_every_bar_once_in_order_across_many_disconnects(
    provider: Callable[..., LiveFeed],
) -> None:
    faults = [
        [Fault("drop", 3)],
        [Fault("malformed", 1), Fault("close", 4)],  # the periodic-disconnect pattern
        [Fault("reorder", 1), Fault("duplicate", 3), Fault("drop", 5)],
        [Fault("stall", 2)],
        [Fault("shutdown", 3)],
        [Fault("malformed", 0), Fault("drop", 2)],
    ]
    async with running(BinanceMarket(symbols=SYMBOLS, faults=faults)) as market:
        feed = provider(market)
        history = await warm(feed)
        got = await take(feed, per_symbol=100, reconnects=len(faults))
        await feed.close()

    for symbol in SYMBOLS:
        newest = history[symbol][-1].time
        assert history[symbol] == [b for b in market.bars[symbol] if b.time <= newest][-20:]
        bars = got[symbol]
        assert bars == following(market, symbol, history[symbol][-1].time, len(bars))
    health = feed.health
    assert health.reconnects >= 6
    assert len(market.connections) == health.reconnects + 1
    assert health.malformed_frames >= 6  # 3 frames, twice
    assert health.duplicates_dropped >= 2  # the repeated step, and the late reordered one
    assert health.backfilled_bars > 0
    assert health.last_bar_close_ms == max(b.time for bs in got.values() for b in bs) + MINUTE
    # One combined connection carried every symbol, every time.
    assert all(market.subscribed(c.number) == list(SYMBOLS) for c in market.connections)


async def test_only_closed_klines_reach_the_stream(provider: Callable[..., LiveFeed]) -> None:
    async with running(BinanceMarket(symbols=SYMBOLS, period=None)) as market:
        feed = provider(market)
        queue: asyncio.Queue[Bar] = asyncio.Queue()

        async def read() -> None:
            async for bar in feed.stream():
                await queue.put(bar)

        reader = asyncio.create_task(read())
        async with asyncio.timeout(30):
            # The klines in progress arrive first: they make no bar.
            await market.wait_until(lambda: bool(market.connections))
            for _ in range(5):
                await market.step()
                step = market.produced[-1]
                assert [await queue.get() for _ in SYMBOLS] == [step[s] for s in SYMBOLS]
                assert queue.empty()
                assert feed.health.last_bar_close_ms == step[SYMBOLS[0]].time + MINUTE
                assert feed.health.connected
        # Lag is against the wall clock: the simulated market lives in 2024.
        assert feed.health.snapshot(now_ms())["lag_ms"] > 0
        reader.cancel()
        await feed.close()
    assert feed.health.reconnects == 0


async def test_every_bar_once_when_backfill_requests_fail_for_a_while(
    provider: Callable[..., LiveFeed],
) -> None:
    faults = [[Fault("drop", 3)], [Fault("drop", 3)]]
    async with running(BinanceMarket(symbols=SYMBOLS, faults=faults)) as market:
        feed = provider(market)
        history = await warm(feed)
        market.fail_requests(3)  # the first backfill after the drop meets HTTP 503
        got = await take(feed, per_symbol=60)
        await feed.close()
    for symbol in SYMBOLS:
        assert got[symbol] == following(market, symbol, history[symbol][-1].time, len(got[symbol]))
    assert feed.health.reconnects >= 2


async def test_a_rate_limited_backfill_waits_as_long_as_retry_after_says(
    provider: Callable[..., LiveFeed],
) -> None:
    # Binance answers 429 with Retry-After and bans clients that come back sooner (418).
    # The test's backoff is a few milliseconds: only the header can make the feed wait.
    faults = [[Fault("drop", 3)]]
    async with running(BinanceMarket(symbols=SYMBOLS, faults=faults)) as market:
        feed = provider(market)
        history = await warm(feed)
        market.fail_requests(1, status=429, retry_after=1)
        before = len(market.request_times)
        got = await take(feed, per_symbol=20)
        await feed.close()
    refused, retried = market.request_times[before : before + 2]
    assert retried - refused >= 0.95
    assert "HTTP 429 (Retry-After 1s)" in (feed.health.last_error or "")
    for symbol in SYMBOLS:
        assert got[symbol] == following(market, symbol, history[symbol][-1].time, len(got[symbol]))


async def test_pings_are_answered(provider: Callable[..., LiveFeed]) -> None:
    # The server pings every 0.4 s and drops a client whose pong is late; our own
    # keepalive and idle watchdog are off, so only the answers keep the line up.
    async with running(BinanceMarket(symbols=SYMBOLS, heartbeat=0.4)) as market:
        loaded_feed = provider(market)
        feed = LiveFeed(
            venue=loaded_feed.venue,
            symbols=SYMBOLS,
            policy=loaded_feed.policy,
            timeouts=FeedTimeouts(ping_interval=None, idle=None),
        )
        started = market.steps
        async with asyncio.timeout(60):
            async for _bar in feed.stream():
                if market.steps - started > 250:  # > 1 s of server time at 5 ms a step
                    break
        await feed.close()
    assert len(market.connections) == 1
    assert feed.health.reconnects == 0


async def test_warm_up_fills_the_cache_before_the_first_live_bar(
    make_engine: Callable[..., Engine],
) -> None:
    async with running(BinanceMarket(symbols=("BTCUSDT",))) as market:
        engine = make_engine(spec(market, symbols=("BTCUSDT",)), max_bars=30)
        window_at_first_bar: list[Bar] | None = None
        live: list[Bar] = []
        async with asyncio.timeout(60):
            async for event in engine.run():
                if isinstance(event, ev.MarketData):
                    if window_at_first_bar is None:
                        window_at_first_bar = engine.state.window.bars("BTCUSDT")
                    live.append(event.bar)
                assert not isinstance(event, ev.EngineError), event
    assert window_at_first_bar is not None
    warmup, first = window_at_first_bar[:-1], window_at_first_bar[-1]
    assert len(warmup) == 20
    assert first == live[0]
    times = [bar.time for bar in window_at_first_bar]
    assert times == list(range(times[0], times[0] + 21 * MINUTE, MINUTE))  # seamless
    assert warmup == [b for b in market.bars["BTCUSDT"] if b.time < first.time][-20:]
    assert len(live) == 30


# -- permanent failures -----------------------------------------------------------------


async def test_an_unknown_symbol_stops_the_stream_with_a_clear_error(
    provider: Callable[..., LiveFeed],
) -> None:
    async with running(BinanceMarket(symbols=SYMBOLS)) as market:
        feed = provider(market, symbols=("BTCUSDT", "NOPEUSDT"))
        with pytest.raises(MarketDataError, match=r"unknown symbol 'NOPEUSDT'.*-1121"):
            await take(feed, per_symbol=1)
        await feed.close()
    assert market.connections == []  # refused before connecting, not retried


async def test_gives_up_after_max_retries(provider: Callable[..., LiveFeed]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with running(BinanceMarket(symbols=SYMBOLS)) as market:
        feed = provider(market, maxRetries=3, wsUrl=f"ws://127.0.0.1:{port}")
        with pytest.raises(MarketDataError, match=r"gave up after 3 failed reconnection"):
            await take(feed, per_symbol=1)
        await feed.close()
    assert "cannot connect" in feed.health.last_error


# -- shutting down ----------------------------------------------------------------------


async def test_close_ends_a_waiting_stream(provider: Callable[..., LiveFeed]) -> None:
    async with running(BinanceMarket(symbols=SYMBOLS, period=None)) as market:
        feed = provider(market)
        reader = asyncio.create_task(take(feed, per_symbol=10**6))
        async with asyncio.timeout(30):
            await market.wait_until(lambda: bool(market.connections))
            await feed.close()
            got = await reader  # the stream ended without an error
            await market.wait_until(lambda: market.connections[0].ws.closed)
    assert got == {s: [] for s in SYMBOLS}
    assert not feed.health.connected


async def test_cancelling_the_reader_closes_the_socket(provider: Callable[..., LiveFeed]) -> None:
    async with running(BinanceMarket(symbols=SYMBOLS)) as market:
        feed = provider(market)
        reader = asyncio.create_task(take(feed, per_symbol=10**6))
        async with asyncio.timeout(30):
            await market.wait_until(lambda: bool(market.connections) and market.steps > 20)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            await market.wait_until(lambda: market.connections[0].ws.closed)
        await feed.close()
    assert len(market.connections) == 1


# -- endpoints --------------------------------------------------------------------------


def test_endpoints_follow_use_testnet_unless_overridden(
    make_session: Callable[..., LoadedSession],
) -> None:
    def venue(extra: str) -> binance.BinanceVenue:
        loaded = make_session(
            f"""
            symbols: [BTCUSDT]
            strategy: {{path: {SMA_WASM}}}
            marketData: {{provider: binance, config: {{{extra}}}}}
            trading: {{provider: paper}}
            """
        )
        feed = binance.create(loaded.session.spec, credentials=Credentials("binance", {}))
        assert isinstance(feed.venue, binance.BinanceVenue)
        return feed.venue

    mainnet, testnet = venue(""), venue("useTestnet: true")
    assert (mainnet.ws_url, mainnet.rest_url) == binance.MAINNET
    assert (testnet.ws_url, testnet.rest_url) == binance.TESTNET
    proxied = venue("useTestnet: true, wsUrl: 'ws://proxy:1/', restUrl: 'http://proxy:2'")
    assert (proxied.ws_url, proxied.rest_url) == ("ws://proxy:1", "http://proxy:2")


# -- a whole session --------------------------------------------------------------------


@pytest.fixture
async def lifetime_market() -> AsyncIterator[BinanceMarket]:
    # Every connection lives 40 steps: the session crosses several reconnects.
    async with running(BinanceMarket(symbols=("BTCUSDT",), period=0.002, lifetime=40)) as market:
        yield market


async def test_kubetrade_run_with_binance_market_data(
    tmp_path: Path, lifetime_market: BinanceMarket
) -> None:
    market = lifetime_market
    session = tmp_path / "session.yaml"
    session.write_text(
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata: {name: binance-e2e}\nspec:" + spec(market, symbols=("BTCUSDT",))
    )
    out = tmp_path / "summary.json"
    process = await asyncio.create_subprocess_exec(
        str(KUBETRADE), "run", "--no-http", "--quiet", "--max-bars", "200",
        "--summary-json", str(out), str(session),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONSAFEPATH": "1"}, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(120):  # a hang guard only
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    summary = json.loads(out.read_text())
    assert summary["bars"] == 200
    assert summary["strategy_errors"] == 0
    assert len(market.connections) >= 2  # it lived through the server's disconnects
