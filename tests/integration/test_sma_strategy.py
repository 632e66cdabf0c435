"""The compiled Go SMA strategy, run by the engine with the paper broker.

The first test's figures are worked out by hand; the second compares a full
replay of the sample data with an independent Python model of the strategy and
of the paper broker.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from helpers import MINUTE, SAMPLE_CSV, SMA_WASM, T0, flat_rows, write_bars

from kubetrade.runner import events as ev
from kubetrade.runner.domain import Side, datetime_to_ms
from kubetrade.runner.engine import Engine

EngineFactory = Callable[..., Engine]


async def collect(engine: Engine) -> list[ev.Event]:
    return [event async for event in engine.run()]


def sma_spec(data: Path, *, fee_bps: float = 0, slippage_bps: float = 0, warmup: int = 0) -> str:
    return f"""
    symbols: [ACME]
    interval: 1m
    strategy:
      path: {SMA_WASM}
      config: {{fastPeriod: 2, slowPeriod: 3, quantity: 10}}
    marketData:
      provider: replay
      config: {{path: {data}}}
    trading:
      provider: paper
      config: {{initialCash: 1000, feeBps: {fee_bps}, slippageBps: {slippage_bps}}}
    engine:
      warmupBars: {warmup}
    """


async def test_hand_computed_crossovers(tmp_path: Path, make_engine: EngineFactory) -> None:
    # fast = SMA(2), slow = SMA(3). Crossings: up at 13 (bar 4), down at 8 (bar 7),
    # up at 15 (bar 9). Fees 10 bps of notional.
    closes = [10, 10, 10, 10, 13, 16, 12, 8, 9, 15, 15]
    data = write_bars(tmp_path / "bars.csv", "ACME", flat_rows(closes))
    engine = make_engine(sma_spec(data, fee_bps=10))
    events = await collect(engine)

    fills = [e.fill for e in events if isinstance(e, ev.OrderFilled)]
    assert [(f.side, f.quantity, f.price) for f in fills] == [
        (Side.BUY, 10, 13),
        (Side.SELL, 10, 8),
        (Side.BUY, 10, 15),
    ]
    assert [f.fee for f in fills] == pytest.approx([0.13, 0.08, 0.15])
    assert [(f.time - T0) // MINUTE for f in fills] == [4, 7, 9]
    book = engine.state.book
    assert book.ledger.cash == pytest.approx(1000 - 130.13 + 79.92 - 150.15)
    position = book.ledger.position("ACME")
    assert (position.quantity, position.average_cost) == (10, 15)
    assert book.ledger.realized_pnl == pytest.approx(-50)
    assert book.ledger.total_fees == pytest.approx(0.36)
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped) and stopped.error is None
    s = stopped.summary
    assert (s.bars, s.orders, s.fills, s.rejected, s.strategy_errors) == (11, 3, 3, 0, 0)
    assert s.equity == pytest.approx(1000 - 130.13 + 79.92 - 150.15 + 150)


def reference_sma(
    closes: list[tuple[int, float]],
    *,
    warmup: int,
    fast: int,
    slow: int,
    quantity: float,
    cash: float,
    fee_bps: float,
    slip_bps: float,
) -> tuple[list[tuple[int, Side, float, float]], float, float]:
    """An independent model: the strategy's rules and the paper broker's prices."""

    def mean(values: list[float], n: int, back: int) -> float:
        total = 0.0
        for i in range(n):  # newest first, as the strategy sums
            total += values[-1 - back - i]
        return total / n

    held = 0.0
    fills: list[tuple[int, Side, float, float]] = []
    seen: list[float] = [c for _, c in closes[:warmup]]
    for time, close in closes[warmup:]:
        seen.append(close)
        if len(seen) < slow + 1:
            continue
        f, s = mean(seen, fast, 0), mean(seen, slow, 0)
        pf, ps = mean(seen, fast, 1), mean(seen, slow, 1)
        if pf <= ps and f > s and held == 0:
            price = close * (1 + slip_bps / 10_000)
            cash -= quantity * price * (1 + fee_bps / 10_000)
            held = quantity
            fills.append((time, Side.BUY, quantity, price))
        elif pf >= ps and f < s and held > 0:
            price = close * (1 - slip_bps / 10_000)
            cash += held * price * (1 - fee_bps / 10_000)
            fills.append((time, Side.SELL, held, price))
            held = 0
    return fills, cash, held


def read_closes(path: Path) -> list[tuple[int, float]]:
    out = []
    for line in path.read_text().splitlines()[1:]:
        t, _sym, _o, _h, _l, c, _v = line.split(",")
        out.append((datetime_to_ms(datetime.fromisoformat(t.replace("Z", "+00:00"))), float(c)))
    return out


async def test_sample_replay_matches_an_independent_model(make_engine: EngineFactory) -> None:
    spec = f"""
    symbols: [BTCUSDT]
    interval: 1m
    strategy:
      path: {SMA_WASM}
      config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}
    marketData:
      provider: replay
      config: {{path: {SAMPLE_CSV}}}
    trading:
      provider: paper
      config: {{initialCash: 10000, feeBps: 1, slippageBps: 0.5}}
    engine:
      warmupBars: 20
    """
    engine = make_engine(spec)
    events = await collect(engine)
    fills = [e.fill for e in events if isinstance(e, ev.OrderFilled)]
    expected, cash, held = reference_sma(
        read_closes(SAMPLE_CSV),
        warmup=20,
        fast=5,
        slow=20,
        quantity=0.05,
        cash=10_000,
        fee_bps=1,
        slip_bps=0.5,
    )
    assert len(fills) == len(expected) > 100
    assert [(f.time, f.side, f.quantity) for f in fills] == [(t, s, q) for t, s, q, _ in expected]
    assert [f.price for f in fills] == pytest.approx([p for *_, p in expected], rel=1e-12)
    assert engine.state.book.ledger.cash == pytest.approx(cash, rel=1e-9)
    assert engine.state.book.ledger.quantity("BTCUSDT") == held


async def test_same_input_gives_same_orders(tmp_path: Path, make_engine: EngineFactory) -> None:
    closes = [10 + (i * 7919 % 13) for i in range(300)]
    data = write_bars(tmp_path / "bars.csv", "ACME", flat_rows(closes))

    async def orders() -> list[tuple[str, int, str, float, float]]:
        events = await collect(make_engine(sma_spec(data, fee_bps=3, slippage_bps=2)))
        return [
            (e.order.client_order_id, e.fill.time, e.fill.side, e.fill.quantity, e.fill.price)
            for e in events
            if isinstance(e, ev.OrderFilled)
        ]

    first = await orders()
    assert len(first) > 10
    assert await orders() == first


async def test_startup_objects_are_frozen_only_while_bars_run(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    # Long-lived objects are kept out of the collector's full passes (which would stall a
    # bar for milliseconds) while bars run; afterwards nothing stays frozen, so a process
    # that runs session after session still collects what each one left behind.
    data = write_bars(tmp_path / "bars.csv", "ACME", flat_rows([10.0] * 20))
    engine = make_engine(sma_spec(data))
    frozen_while_running = [
        gc.get_freeze_count() async for e in engine.run() if isinstance(e, ev.MarketData)
    ]
    assert len(frozen_while_running) == 20
    assert min(frozen_while_running) > 0
    assert gc.get_freeze_count() == 0


async def test_warm_up_lets_the_first_live_bar_trade(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    # The crossing happens on the first streamed bar; without the three warm-up
    # bars the strategy would have too little history to see it.
    data = write_bars(tmp_path / "bars.csv", "ACME", flat_rows([10, 10, 10, 13, 14]))
    warm = await collect(make_engine(sma_spec(data, warmup=3)))
    warm_fills = [e.fill for e in warm if isinstance(e, ev.OrderFilled)]
    assert [(f.side, f.price) for f in warm_fills] == [(Side.BUY, 13)]
    market = [e for e in warm if isinstance(e, ev.MarketData)]
    assert len(market) == 2  # warm-up bars are not fed to the strategy as live bars
    live_only = write_bars(tmp_path / "live.csv", "ACME", flat_rows([13, 14]))
    cold = await collect(make_engine(sma_spec(live_only, warmup=0)))
    assert not [e for e in cold if isinstance(e, ev.OrderFilled)]
