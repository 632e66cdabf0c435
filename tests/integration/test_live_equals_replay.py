"""A live session behaves exactly like a replay of the bars it saw, whatever the network did.

For each websocket provider, a session of two symbols runs the example SMA
strategy with the paper broker against the local venue server, which cuts the
websocket six times (drops, clean closes, reordered, repeated and malformed
frames on the way). The same server's series is then written to a file and
replayed through the same session: the bars must reach the strategy in the
same order (time, then the session's symbol order), the orders and fills must
be the same, and so must the report built from each run's journal. The Polygon
server's second ticker trades one minute in three, as a thin stock does.

Feed-level checks: when the data ends right after a cut, nothing more comes on
the new connection, yet every symbol's missing bars are delivered, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import SMA_WASM
from servers import Fault, SimMarket, running
from servers.binance_market import BinanceMarket
from servers.polygon_market import PolygonMarket

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.report import Report, build_report
from kubetrade.runner.app.session_file import LoadedSession, load_session
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import Bar, Fill, Order
from kubetrade.runner.marketdata import binance, polygon
from kubetrade.runner.marketdata.connection import FeedTimeouts
from kubetrade.runner.marketdata.feed import LiveFeed
from kubetrade.runner.session import JOURNAL_FILE, JournalReader

KEY = "pk-replay-test-4c1d"
MINUTE = 60_000
BARS = 600  # processed by each run, over both symbols
CUTS = [
    [Fault("drop", 20)],
    [Fault("malformed", 3), Fault("close", 25)],
    [Fault("reorder", 10), Fault("duplicate", 15), Fault("drop", 30)],
    [Fault("drop", 20)],
    [Fault("close", 20)],
    [Fault("malformed", 0), Fault("drop", 25)],
]
FAST = FeedTimeouts(open=5, request=5, ping_interval=0.2, ping_timeout=0.5, close=0.5, quiet=0.2)


@dataclasses.dataclass(frozen=True)
class Venue:
    provider: str
    symbols: tuple[str, str]

    def market(self, **kw: Any) -> SimMarket:
        if self.provider == "binance":
            return BinanceMarket(symbols=self.symbols, **kw)
        # The second ticker trades one minute in three: a thin stock.
        return PolygonMarket(symbols=self.symbols, keys=[KEY], thin={self.symbols[1]: 3}, **kw)


VENUES = [Venue("binance", ("BTCUSDT", "ETHUSDT")), Venue("polygon", ("AAPL", "MSFT"))]


@dataclasses.dataclass(frozen=True)
class Run:
    bars: list[Bar]
    orders: list[Order]
    fills: list[Fill]
    summary: ev.Summary
    report: Report
    first: dict[str, int]  # each symbol's first bar in the window: where warm-up began


def session_yaml(venue: Venue, market_data: str) -> str:
    return (
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata: {name: live-or-replay}\n"
        "spec:\n"
        f"  symbols: {json.dumps(list(venue.symbols))}\n"
        "  interval: 1m\n"
        f"  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 3, slowPeriod: 8}}}}\n"
        f"  marketData: {market_data}\n"
        "  trading: {provider: paper, config: {initialCash: 100000, feeBps: 10}}\n"
        "  engine: {warmupBars: 20}\n"
    )


def run(path: Path, state_dir: Path, symbols: tuple[str, ...]) -> Run:
    engine = build_engine(load_session(path), RunOptions(state_dir=state_dir, max_bars=BARS))

    async def collect() -> list[ev.Event]:
        async with asyncio.timeout(120):  # a hang guard only
            return [event async for event in engine.run()]

    events = asyncio.run(collect())
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped) and stopped.error is None, stopped
    first = {s: engine.state.window.bars(s)[0].time for s in symbols}
    journal = JournalReader.open(state_dir / JOURNAL_FILE)
    try:
        report = build_report(journal)
    finally:
        journal.close()
    return Run(
        bars=[e.bar for e in events if isinstance(e, ev.MarketData)],
        orders=[e.order for e in events if isinstance(e, ev.OrderPlaced)],
        fills=[e.fill for e in events if isinstance(e, ev.OrderFilled)],
        summary=stopped.summary,
        report=report,
        first=first,
    )


def write_series(path: Path, market: SimMarket, first: dict[str, int]) -> Path:
    """The server's bars of every symbol from the live session's first warm-up bar on."""
    rows = ["time,symbol,open,high,low,close,volume"]
    for symbol, start in first.items():
        rows += [
            f"{b.time},{b.symbol},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume!r}"
            for b in market.bars[symbol]
            if b.time >= start
        ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("venue", VENUES, ids=[v.provider for v in VENUES])
def test_a_faulted_live_session_equals_the_replay_of_its_series(
    venue: Venue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADE_POLYGON_API_KEY", KEY)
    market = venue.market(faults=CUTS, period=0.003, history=200)

    async def serve_and_run() -> Run:
        async with running(market):
            config = {
                "wsUrl": market.ws_url,
                "restUrl": market.http_url,
                "maxRetries": 10,
                "initialBackoff": 0.01,
                "maxBackoff": 0.05,
            }
            path = tmp_path / "live.yaml"
            market_data = f"{{provider: {venue.provider}, config: {json.dumps(config)}}}"
            path.write_text(session_yaml(venue, market_data))
            # The engine runs its own event loop: give it a thread, keep the server here.
            return await asyncio.to_thread(run, path, tmp_path / "live", venue.symbols)

    live = asyncio.run(serve_and_run())
    assert len(market.connections) >= len(CUTS) + 1  # every cut happened during the run

    data = write_series(tmp_path / "series.csv", market, live.first)
    replay_path = tmp_path / "replay.yaml"
    replay_path.write_text(session_yaml(venue, f"{{provider: replay, config: {{path: {data}}}}}"))
    replay = run(replay_path, tmp_path / "replay", venue.symbols)

    rank = {s: i for i, s in enumerate(venue.symbols)}
    assert live.bars == sorted(live.bars, key=lambda b: (b.time, rank[b.symbol]))
    assert live.bars == replay.bars
    assert {b.symbol for b in live.bars} == set(venue.symbols)
    assert live.orders == replay.orders and len(live.orders) > 10
    assert live.fills == replay.fills
    assert live.report == replay.report
    assert dataclasses.replace(live.summary, duration_s=0) == dataclasses.replace(
        replay.summary, duration_s=0
    )


# -- the data ends right after a cut ---------------------------------------------------------


def feed_for(
    venue: Venue, market: SimMarket, make_session: Callable[..., LoadedSession]
) -> LiveFeed:
    config = {
        "wsUrl": market.ws_url,
        "restUrl": market.http_url,
        "maxRetries": 5,
        "initialBackoff": 0.01,
        "maxBackoff": 0.05,
    }
    loaded = make_session(
        f"""
        symbols: {json.dumps(list(venue.symbols))}
        interval: 1m
        strategy: {{path: {SMA_WASM}}}
        marketData: {{provider: {venue.provider}, config: {json.dumps(config)}}}
        trading: {{provider: paper}}
        """
    )
    spec = loaded.session.spec
    if venue.provider == "binance":
        return binance.create(spec, credentials=Credentials("binance", {}), timeouts=FAST)
    credentials = Credentials("polygon", {"api_key": KEY})
    return polygon.create(spec, credentials=credentials, timeouts=FAST)


@pytest.mark.parametrize("venue", VENUES, ids=[v.provider for v in VENUES])
async def test_bars_missed_in_a_cut_come_in_order_though_nothing_follows(
    venue: Venue, make_session: Callable[..., LoadedSession]
) -> None:
    # The fourth step cuts the connection before it is sent; two more steps close while
    # the feed reconnects, and then the market falls silent.
    market = venue.market(faults=[[Fault("drop", 3)]], period=None)
    async with running(market):
        feed = feed_for(venue, market, make_session)
        for symbol in venue.symbols:
            await feed.history(symbol, end=int(time.time() * 1000), count=5)
        queue: asyncio.Queue[Bar] = asyncio.Queue()

        async def read() -> None:
            async for bar in feed.stream():
                await queue.put(bar)

        reader = asyncio.create_task(read())
        got: list[Bar] = []
        async with asyncio.timeout(20):
            await market.wait_until(lambda: bool(market.connections))
            for _ in range(3):
                await market.step()
                got += [await queue.get() for _ in market.produced[-1]]
            await market.step(3)
            while len(got) < sum(len(step) for step in market.produced):
                got.append(await queue.get())
        reader.cancel()
        await feed.close()
    assert len(market.connections) == 2
    rank = {s: i for i, s in enumerate(venue.symbols)}
    every = [bar for step in market.produced for bar in step.values()]
    assert got == sorted(every, key=lambda b: (b.time, rank[b.symbol]))


async def test_a_quiet_symbol_is_confirmed_over_rest_and_holds_no_one_back(
    make_session: Callable[..., LoadedSession],
) -> None:
    # AAPL comes first in the session and trades every other minute; after a minute
    # it sat out, the market falls silent. MSFT's bar of that minute must not wait for
    # AAPL's next trade: the feed asks the venue's clock and confirms AAPL's quiet
    # minute over REST.
    venue = Venue("polygon", ("AAPL", "MSFT"))
    market = PolygonMarket(symbols=venue.symbols, keys=[KEY], thin={"AAPL": 2}, period=None)
    async with running(market):
        feed = feed_for(venue, market, make_session)
        queue: asyncio.Queue[Bar] = asyncio.Queue()

        async def read() -> None:
            async for bar in feed.stream():
                await queue.put(bar)

        reader = asyncio.create_task(read())
        got: list[Bar] = []
        async with asyncio.timeout(20):
            while market.paths.count("/v1/marketstatus/now") < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await market.step(2)
            assert [set(step) for step in market.produced] == [{"AAPL", "MSFT"}, {"MSFT"}]
            got = [await queue.get() for _ in range(3)]
        reader.cancel()
        await feed.close()
    first, second = market.produced
    assert got == [first["AAPL"], first["MSFT"], second["MSFT"]]
    quiet = second["MSFT"].time
    assert any(p.startswith(f"/v2/aggs/ticker/AAPL/range/1/minute/{quiet}/") for p in market.paths)
