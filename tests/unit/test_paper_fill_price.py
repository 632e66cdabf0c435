"""The paper venue's fill price model (spec.trading.config.fillPrice): close, midpoint, nextOpen.

The expected prices are worked out by hand from each bar; slippage moves each
of them against the order; `close` stays the default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import SMA_WASM, T0, DurableVenue, write_bars

from kubetrade.runner import events as ev
from kubetrade.runner.brokers.base import OrderUpdate
from kubetrade.runner.brokers.paper import FeeModel, PaperBroker
from kubetrade.runner.domain import Bar, Fill, Order, OrderStatus, OrderType, Side
from kubetrade.runner.engine import Engine
from kubetrade.runner.spec import PaperConfig

MIN = 60_000


def bar(t: int, o: float, h: float, lo: float, c: float) -> Bar:
    return Bar("BTC", T0 + t * MIN, o, h, lo, c, 10.0)


def order(
    cid: str, side: Side, qty: float, otype: OrderType = OrderType.MARKET, price: float = 0.0
) -> Order:
    return Order(cid, "BTC", side, otype, qty, price, T0)


@pytest.mark.parametrize(
    ("model", "buy", "sell"),
    [
        ("close", 104.0 * 1.01, 104.0 * 0.99),
        ("midpoint", 101.0 * 1.01, 101.0 * 0.99),  # (110 + 92) / 2
    ],
)
async def test_a_market_order_fills_on_its_bar_at_the_models_price(
    model: str, buy: float, sell: float
) -> None:
    broker = PaperBroker(initial_cash=10_000, slippage_bps=100, fill_price=model)  # type: ignore[arg-type]
    await broker.on_bar(bar(0, 95, 110, 92, 104))
    [bought] = await broker.submit(order("a", Side.BUY, 2))
    [sold] = await broker.submit(order("b", Side.SELL, 1))
    assert isinstance(bought, Fill) and isinstance(sold, Fill)
    assert bought.price == pytest.approx(buy)
    assert sold.price == pytest.approx(sell)
    assert bought.time == sold.time == T0


async def test_midpoint_decides_whether_a_limit_order_is_marketable() -> None:
    broker = PaperBroker(initial_cash=10_000, fill_price="midpoint")
    await broker.on_bar(bar(0, 95, 110, 92, 104))
    [filled] = await broker.submit(order("a", Side.BUY, 1, OrderType.LIMIT, 102))  # mid 101
    assert isinstance(filled, Fill) and filled.price == 101
    assert await broker.submit(order("b", Side.BUY, 1, OrderType.LIMIT, 100.5)) == []  # rests


async def test_next_open_waits_for_the_next_bar_and_fills_at_its_open() -> None:
    broker = PaperBroker(initial_cash=10_000, fees=FeeModel(bps=10), fill_price="nextOpen")
    await broker.on_bar(bar(0, 95, 110, 92, 104))
    assert await broker.submit(order("a", Side.BUY, 2)) == []  # nothing fills on its own bar
    pending = broker.known["a"]
    assert pending.status is OrderStatus.PENDING
    assert broker.account().buying_power == pytest.approx(10_000 - 2 * 104 * 1.001)  # reserved
    [fill] = await broker.on_bar(bar(1, 107, 109, 99, 100))
    assert isinstance(fill, Fill)
    assert (fill.price, fill.time) == (107, T0 + MIN)
    assert broker.ledger.cash == pytest.approx(10_000 - 214 - 0.214)
    assert broker.known["a"].status is OrderStatus.FILLED


async def test_next_open_fails_a_buy_the_open_made_too_dear() -> None:
    broker = PaperBroker(initial_cash=1_000, fill_price="nextOpen")
    await broker.on_bar(bar(0, 95, 101, 92, 99))
    assert await broker.submit(order("a", Side.BUY, 10)) == []  # 990 at the close: covered
    [update] = await broker.on_bar(bar(1, 120, 121, 118, 119))  # 1,200 at the open: not
    assert isinstance(update, OrderUpdate)
    assert (update.status, update.reason) == (OrderStatus.FAILED, "insufficient_buying_power")
    assert broker.ledger.cash == 1_000 and not broker.resting


async def test_next_open_limit_orders_wait_too(tmp_path: Path) -> None:
    # Marketable at the close, but under nextOpen it is matched against the next bar:
    # that bar opened below the limit, so it fills at the open. Durable across a restart.
    first = DurableVenue(tmp_path / "journal.db", initial_cash=10_000, fill_price="nextOpen")
    broker = first.broker
    await broker.on_bar(bar(0, 95, 110, 92, 104))
    assert await broker.submit(order("a", Side.BUY, 1, OrderType.LIMIT, 105)) == []
    first.close()
    second = DurableVenue(tmp_path / "journal.db", initial_cash=10_000, fill_price="nextOpen")
    [fill] = await second.broker.on_bar(bar(1, 103, 106, 101, 105))
    assert isinstance(fill, Fill) and fill.price == 103
    second.close()


def test_the_default_is_close() -> None:
    assert PaperConfig().fill_price == "close"
    assert PaperBroker().fill_price == "close"


def test_the_setting_is_checked() -> None:
    assert PaperConfig.model_validate({"fillPrice": "nextOpen"}).fill_price == "nextOpen"
    with pytest.raises(ValueError, match="fillPrice"):
        PaperConfig.model_validate({"fillPrice": "vwap"})


def test_the_session_setting_reaches_the_venue(
    make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    # The SMA strategy buys on the crossing bar; with nextOpen it is filled at the next
    # bar's open, with midpoint at the crossing bar's middle.
    closes = [10.0] * 8 + [9.0, 12.0, 13.0, 14.0]
    rows = [(i, c + 0.5, c + 3, c - 1, c) for i, c in enumerate(closes)]  # middle: c + 1
    data = write_bars(tmp_path / "bars.csv", "BTC", rows)
    fills: dict[str, list[Fill]] = {}
    for model in ("close", "midpoint", "nextOpen"):
        engine = make_engine(
            f"""
            symbols: [BTC]
            interval: 1m
            strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 2, slowPeriod: 4}}}}
            marketData: {{provider: replay, config: {{path: {data}}}}}
            trading: {{provider: paper, config: {{fillPrice: {model}}}}}
            """,
            name=f"fill-{model.lower()}",
        )
        fills[model] = [e.fill for e in _run(engine) if isinstance(e, ev.OrderFilled)]
    [at_close], [at_mid], [at_open] = fills["close"], fills["midpoint"], fills["nextOpen"]
    crossing = next(i for i, r in enumerate(rows) if T0 + r[0] * MIN == at_close.time)
    assert (at_close.price, at_mid.price) == (closes[crossing], closes[crossing] + 1)
    assert at_mid.time == at_close.time
    assert (at_open.price, at_open.time) == (rows[crossing + 1][1], at_close.time + MIN)


def _run(engine: Engine) -> list[ev.Event]:
    async def collect() -> list[ev.Event]:
        return [e async for e in engine.run()]

    return asyncio.run(collect())
