"""The polygon provider against a local Polygon server that speaks the real protocol.

The server (tests/servers/polygon_market.py) sends minute (AM) or second (A)
aggregates from a simulated clock, leaves out quiet minutes as a real ticker
does, and misbehaves on cue. Whatever it does, the stream must deliver exactly
the session bars the server's aggregates make, each once, in order; a bad key
ends the run with a clear error that never shows the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import ROOT, SMA_WASM
from prometheus_client import generate_latest
from servers import Fault, running
from servers.polygon_market import PolygonMarket

from kubetrade.runner import events as ev
from kubetrade.runner.app.session_file import LoadedSession
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import Bar, interval_ms
from kubetrade.runner.engine import Engine
from kubetrade.runner.marketdata import polygon
from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.connection import FeedTimeouts
from kubetrade.runner.marketdata.feed import LiveFeed
from kubetrade.runner.telemetry.metrics import SessionMetrics

SYMBOLS = ("AAPL", "MSFT")
MINUTE = 60_000
KEY = "pk-test-5ecret-7f3a9"
# Short enough that a stalled server is noticed quickly; nothing here is asserted on time.
FAST = FeedTimeouts(open=5, request=5, ping_interval=0.2, ping_timeout=0.5, close=0.5)
KUBETRADE = Path(sys.executable).parent / "kubetrade"
DISCONNECTS = [
    [Fault("drop", 3)],
    [Fault("malformed", 1), Fault("close", 4)],
    [Fault("reorder", 1), Fault("duplicate", 3), Fault("drop", 5)],
    [Fault("stall", 2)],
    [Fault("drop", 4)],
    [Fault("malformed", 0), Fault("close", 2)],
]


def now_ms() -> int:
    return int(time.time() * 1000)


def spec(market: PolygonMarket, *, interval: str = "1m", symbols: tuple[str, ...] = SYMBOLS) -> str:
    settings = {
        "wsUrl": market.ws_url,
        "restUrl": market.http_url,
        "maxRetries": 5,
        "initialBackoff": 0.01,
        "maxBackoff": 0.05,
    }
    return f"""
    symbols: {json.dumps(list(symbols))}
    interval: {interval}
    strategy:
      path: {SMA_WASM}
      config: {{fastPeriod: 5, slowPeriod: 20, quantity: 1}}
    marketData:
      provider: polygon
      config: {json.dumps(settings)}
    trading:
      provider: paper
    engine:
      warmupBars: 20
    """


@pytest.fixture
def provider(make_session: Callable[..., LoadedSession]) -> Callable[..., LiveFeed]:
    """A polygon provider for a session pointed at `market`, with short timeouts."""

    def make(market: PolygonMarket, *, key: str = KEY, **kw: str) -> LiveFeed:
        loaded = make_session(spec(market, **kw))  # type: ignore[arg-type]
        credentials = Credentials("polygon", {"api_key": key})
        return polygon.create(loaded.session.spec, credentials=credentials, timeouts=FAST)

    return make


def expected_bars(bars: list[Bar], interval: int) -> list[Bar]:
    """The server's aggregates merged into epoch-aligned session bars (written out plainly)."""
    merged: dict[int, list[Bar]] = {}
    for bar in bars:
        merged.setdefault(bar.time - bar.time % interval, []).append(bar)
    out = []
    for start, parts in sorted(merged.items()):
        high = max(p.high for p in parts)
        low = min(p.low for p in parts)
        volume = sum(p.volume for p in parts)
        out.append(Bar(parts[0].symbol, start, parts[0].open, high, low, parts[-1].close, volume))
    return out


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


# -- the done-when runs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "base", "quiet_every"),
    [
        ("1m", "minute", 5),  # AM as it comes, with quiet minutes
        ("5m", "minute", 4),  # AM built up to 5 minutes
        ("1s", "second", None),  # A as it comes
    ],
)
async def test_every_bar_once_in_order_across_many_disconnects(
    provider: Callable[..., LiveFeed], interval: str, base: str, quiet_every: int | None
) -> None:
    step = 0.002 if base == "second" else 0.003
    market = PolygonMarket(
        symbols=SYMBOLS,
        base=base,  # type: ignore[arg-type]
        keys=[KEY],
        quiet_every=quiet_every,
        faults=DISCONNECTS,
        period=step,
        history=600,
    )
    async with running(market):
        feed = provider(market, interval=interval)
        history = {s: await feed.history(s, end=now_ms(), count=20) for s in SYMBOLS}
        got = await take(feed, per_symbol=40, reconnects=len(DISCONNECTS))
        await feed.close()

    size = interval_ms(interval)
    for symbol in SYMBOLS:
        every = expected_bars(market.bars[symbol], size)
        newest = history[symbol][-1].time
        assert history[symbol] == [b for b in every if b.time <= newest][-20:]
        bars = got[symbol]
        assert bars == [b for b in every if b.time > newest][: len(bars)]
    health = feed.health
    assert health.reconnects >= 6
    assert len(market.connections) == health.reconnects + 1
    assert health.malformed_frames >= 6  # 3 frames, twice
    assert health.backfilled_bars > 0


async def test_warm_up_fills_the_cache_before_the_first_live_bar(
    make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADE_POLYGON_API_KEY", KEY)
    async with running(PolygonMarket(symbols=("AAPL",), keys=[KEY], quiet_every=3)) as market:
        engine = make_engine(spec(market, interval="3m", symbols=("AAPL",)), max_bars=10)
        window_at_first_bar: list[Bar] | None = None
        async with asyncio.timeout(60):
            async for event in engine.run():
                if isinstance(event, ev.MarketData) and window_at_first_bar is None:
                    window_at_first_bar = engine.state.window.bars("AAPL")
                assert not isinstance(event, ev.EngineError), event
    assert window_at_first_bar is not None
    every = expected_bars(market.bars["AAPL"], 180_000)
    first = window_at_first_bar[-1]
    assert window_at_first_bar[:-1] == [b for b in every if b.time < first.time][-20:]
    assert first in every


# -- credentials and permanent failures -------------------------------------------------


def shown(caplog: pytest.LogCaptureFixture, error: BaseException) -> str:
    """Everything a user could read: every log record (formatted) and the error."""
    records = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    return f"{records}\n{error}\n{error!r}\n{error.__cause__!r}\n{error.__context__!r}"


async def test_a_refused_key_ends_the_run_with_a_clear_error_that_hides_the_key(
    provider: Callable[..., LiveFeed], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(PolygonMarket(symbols=SYMBOLS, keys=[KEY])) as market:
        feed = provider(market, key="pk-wrong-5ecret-d00d")
        with pytest.raises(MarketDataError, match=r"rejected the API key.*'api_key'") as raised:
            await take(feed, per_symbol=1)
        await feed.close()
    assert "pk-wrong-5ecret-d00d" not in shown(caplog, raised.value)
    assert market.connections == []  # refused over REST already: never retried


async def test_a_key_refused_on_the_first_connection_stops_at_once(
    provider: Callable[..., LiveFeed], caplog: pytest.LogCaptureFixture
) -> None:
    # REST took the key (a plan without websockets does that); the stream refuses it.
    caplog.set_level(logging.DEBUG)
    faults = [[Fault("reject_auth", 0)]]
    async with running(PolygonMarket(symbols=SYMBOLS, keys=[KEY], faults=faults)) as market:
        feed = provider(market)
        with pytest.raises(MarketDataError, match=r"rejected the API key \(auth_failed") as raised:
            await take(feed, per_symbol=10**6)
        await feed.close()
    assert KEY not in shown(caplog, raised.value)
    assert len(market.connections) == 1  # a key never accepted: no retry
    assert feed.health.auth_refusals == 0


async def test_a_refusal_of_a_key_that_worked_is_retried_and_counted(
    provider: Callable[..., LiveFeed], caplog: pytest.LogCaptureFixture
) -> None:
    # The key worked on the first connection; the venue then refuses it twice (its own
    # incident) and accepts it again: the session carries on, every bar once, in order.
    caplog.set_level(logging.DEBUG)
    faults = [[Fault("drop", 2)], [Fault("reject_auth", 0)], [Fault("reject_auth", 0)]]
    market = PolygonMarket(symbols=SYMBOLS, keys=[KEY], faults=faults, history=100)
    async with running(market):
        feed = provider(market)
        history = {s: await feed.history(s, end=now_ms(), count=20) for s in SYMBOLS}
        got = await take(feed, per_symbol=30, reconnects=1)
        metrics = SessionMetrics(session="s")
        metrics.watch_feed(feed.health)
        exported = generate_latest(metrics.registry).decode()
        await feed.close()
    for symbol in SYMBOLS:
        every = expected_bars(market.bars[symbol], MINUTE)
        newest = history[symbol][-1].time
        assert got[symbol] == [b for b in every if b.time > newest][: len(got[symbol])]
    assert feed.health.auth_refusals == 2
    assert len(market.connections) == 4
    assert 'kubetrade_marketdata_auth_refusals_total{provider="polygon",session="s"} 2.0' in (
        exported
    )
    assert any("accepted before" in r.getMessage() for r in caplog.records)
    assert KEY not in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_refusal_that_persists_ends_the_session(
    provider: Callable[..., LiveFeed], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = [[Fault("drop", 2)], *[[Fault("reject_auth", 0)]] * 10]
    async with running(PolygonMarket(symbols=SYMBOLS, keys=[KEY], faults=faults)) as market:
        feed = provider(market)  # maxRetries: 5
        with pytest.raises(MarketDataError, match=r"gave up after 5 failed") as raised:
            await take(feed, per_symbol=10**6)
        await feed.close()
    assert "polygon refused the API key it had accepted before (auth_failed" in str(raised.value)
    assert KEY not in shown(caplog, raised.value)
    # The drop was the first failed attempt in a row, the refusals the other five.
    assert len(market.connections) == 1 + 5
    assert feed.health.auth_refusals == 5


async def test_repeated_and_late_events_are_counted_as_duplicates(
    provider: Callable[..., LiveFeed],
) -> None:
    # Steps are taken by hand once the feed has caught up, so every repeat the server
    # sends is one the feed drops; the count must be exactly that.
    faults = [[Fault("duplicate", 1), Fault("duplicate", 3), Fault("duplicate", 4)]]
    market = PolygonMarket(symbols=SYMBOLS, keys=[KEY], faults=faults, period=None)
    async with running(market):
        feed = provider(market)
        queue: asyncio.Queue[Bar] = asyncio.Queue()

        async def read() -> None:
            async for bar in feed.stream():
                await queue.put(bar)

        reader = asyncio.create_task(read())
        async with asyncio.timeout(30):
            # Caught up: the venue's clock read once at the start, once after connecting.
            while market.paths.count("/v1/marketstatus/now") < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            for _ in range(6):
                await market.step()
                assert {(await queue.get()).symbol for _ in SYMBOLS} == set(SYMBOLS)
        reader.cancel()
        await feed.close()
    assert market.repeated_events == 6  # three steps, two tickers
    assert feed.health.duplicates_dropped == market.repeated_events


async def test_an_unknown_ticker_stops_the_stream_with_a_clear_error(
    provider: Callable[..., LiveFeed],
) -> None:
    async with running(PolygonMarket(symbols=SYMBOLS, keys=[KEY])) as market:
        feed = provider(market, symbols=("AAPL", "NOPE"))
        with pytest.raises(MarketDataError, match=r"unknown ticker 'NOPE'"):
            await take(feed, per_symbol=1)
        await feed.close()
    assert market.connections == []


def test_daily_bars_are_refused(make_session: Callable[..., LoadedSession]) -> None:
    loaded = make_session(
        f"""
        symbols: [AAPL]
        interval: 1d
        strategy: {{path: {SMA_WASM}}}
        marketData: {{provider: polygon}}
        trading: {{provider: paper}}
        """
    )
    with pytest.raises(MarketDataError, match="1s, or minutes and hours up to 12h"):
        polygon.create(loaded.session.spec, credentials=Credentials("polygon", {"api_key": KEY}))


# -- a whole session --------------------------------------------------------------------


@pytest.fixture
async def lifetime_market() -> AsyncIterator[PolygonMarket]:
    # Every connection lives 40 steps: the session crosses several reconnects.
    market = PolygonMarket(symbols=("AAPL",), keys=[KEY], period=0.002, lifetime=40)
    async with running(market):
        yield market


async def test_kubetrade_run_with_polygon_market_data(
    tmp_path: Path, lifetime_market: PolygonMarket
) -> None:
    market = lifetime_market
    session = tmp_path / "session.yaml"
    session.write_text(
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata: {name: polygon-e2e}\nspec:" + spec(market, symbols=("AAPL",))
    )
    out = tmp_path / "summary.json"
    process = await asyncio.create_subprocess_exec(
        str(KUBETRADE), "run", "--no-http", "--quiet", "--max-bars", "150",
        "--summary-json", str(out), str(session),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONSAFEPATH": "1", "KUBETRADE_POLYGON_API_KEY": KEY}, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(120):  # a hang guard only
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert KEY not in stdout.decode() + stderr.decode()
    summary = json.loads(out.read_text())
    assert summary["bars"] == 150
    assert summary["strategy_errors"] == 0
    assert len(market.connections) >= 2
