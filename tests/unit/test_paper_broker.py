"""The paper broker moves cash and positions exactly, and refuses what a venue would."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DurableVenue

from kubetrade.runner.brokers.base import OrderUpdate
from kubetrade.runner.brokers.paper import FeeModel, PaperBroker
from kubetrade.runner.domain import Bar, Bracket, Fill, Order, OrderStatus, OrderType, Side

T0 = 1_700_000_000_000
MIN = 60_000


def bar(t: int, o: float, h: float, lo: float, c: float, symbol: str = "BTC") -> Bar:
    return Bar(symbol, T0 + t * MIN, o, h, lo, c, 10.0)


def order(
    cid: str,
    side: Side,
    qty: float,
    otype: OrderType = OrderType.MARKET,
    price: float = 0.0,
    symbol: str = "BTC",
) -> Order:
    return Order(cid, symbol, side, otype, qty, price, T0)


async def test_market_buy_fills_at_close_with_fee_and_slippage() -> None:
    broker = PaperBroker(initial_cash=10_000, fees=FeeModel(bps=10), slippage_bps=50)
    await broker.on_bar(bar(0, 100, 101, 99, 100))
    [fill] = await broker.submit(order("a", Side.BUY, 2))
    assert isinstance(fill, Fill)
    assert fill.price == pytest.approx(100.5)  # 50 bps against the buyer
    assert fill.fee == pytest.approx(2 * 100.5 * 0.001)
    assert broker.ledger.cash == pytest.approx(10_000 - 201 - 0.201)
    assert broker.ledger.position("BTC").quantity == 2
    assert broker.ledger.position("BTC").average_cost == pytest.approx(100.5)


async def test_round_trip_realizes_pnl_and_equity_follows_marks() -> None:
    broker = PaperBroker(initial_cash=1_000)
    await broker.on_bar(bar(0, 10, 10, 10, 10))
    await broker.submit(order("a", Side.BUY, 10))
    await broker.on_bar(bar(1, 10, 13, 10, 12))
    assert broker.account().unrealized_pnl == pytest.approx(20)
    assert broker.account().equity == pytest.approx(1_020)
    [fill] = await broker.submit(order("b", Side.SELL, 4))
    assert isinstance(fill, Fill)
    assert fill.realized_pnl == pytest.approx(8)
    acct = broker.account()
    assert acct.realized_pnl == pytest.approx(8)
    assert acct.unrealized_pnl == pytest.approx(12)
    assert acct.balance == pytest.approx(1_000 - 100 + 48)


async def test_insufficient_cash_and_holdings_are_failed_with_reasons() -> None:
    broker = PaperBroker(initial_cash=100)
    await broker.on_bar(bar(0, 50, 50, 50, 50))
    [too_big] = await broker.submit(order("a", Side.BUY, 3))
    assert isinstance(too_big, OrderUpdate)
    assert too_big.status is OrderStatus.FAILED
    assert too_big.reason == "insufficient_buying_power"
    [oversell] = await broker.submit(order("b", Side.SELL, 1))
    assert isinstance(oversell, OrderUpdate)
    assert oversell.reason == "insufficient_selling_power"
    assert broker.ledger.cash == 100  # nothing moved


@pytest.mark.parametrize(
    ("qty", "otype", "price", "reason"),
    [
        (0.0, OrderType.MARKET, 0.0, "invalid_quantity"),
        (-1.0, OrderType.MARKET, 0.0, "invalid_quantity"),
        (float("nan"), OrderType.MARKET, 0.0, "invalid_quantity"),
        (1.0, OrderType.LIMIT, 0.0, "invalid_price"),
        (1.0, OrderType.LIMIT, float("inf"), "invalid_price"),
    ],
)
async def test_bad_quantity_or_price_is_failed(
    qty: float, otype: OrderType, price: float, reason: str
) -> None:
    broker = PaperBroker()
    await broker.on_bar(bar(0, 50, 50, 50, 50))
    [update] = await broker.submit(order("a", Side.BUY, qty, otype, price))
    assert isinstance(update, OrderUpdate)
    assert (update.status, update.reason) == (OrderStatus.FAILED, reason)


async def test_limit_buy_rests_then_fills_when_low_touches_at_limit_or_gap_open() -> None:
    broker = PaperBroker(initial_cash=1_000)
    await broker.on_bar(bar(0, 100, 101, 99, 100))
    assert await broker.submit(order("a", Side.BUY, 1, OrderType.LIMIT, 95)) == []
    assert await broker.submit(order("b", Side.BUY, 1, OrderType.LIMIT, 97)) == []
    # Cash for both is reserved while they rest.
    assert broker.account().buying_power == pytest.approx(1_000 - 95 - 97)
    assert await broker.on_bar(bar(1, 99, 100, 96, 98)) != []  # low 96 reaches 97 only
    assert "b" not in broker.resting and "a" in broker.resting
    fills = await broker.on_bar(bar(2, 90, 92, 89, 91))  # gapped below 95: fills at the open
    [fill] = fills
    assert isinstance(fill, Fill)
    assert (fill.client_order_id, fill.price) == ("a", 90)


async def test_marketable_limit_fills_now_never_worse_than_limit() -> None:
    broker = PaperBroker(initial_cash=1_000, slippage_bps=100)
    await broker.on_bar(bar(0, 100, 101, 99, 100))
    [fill] = await broker.submit(order("a", Side.BUY, 1, OrderType.LIMIT, 100.5))
    assert isinstance(fill, Fill)
    assert fill.price == pytest.approx(100.5)  # slippage would give 101, capped at the limit


async def test_resting_sell_reserves_holdings_and_cancel_releases() -> None:
    broker = PaperBroker(initial_cash=1_000)
    await broker.on_bar(bar(0, 10, 10, 10, 10))
    await broker.submit(order("a", Side.BUY, 5))
    assert await broker.submit(order("s1", Side.SELL, 4, OrderType.LIMIT, 20)) == []
    [refused] = await broker.submit(order("s2", Side.SELL, 2))
    assert isinstance(refused, OrderUpdate)
    assert refused.reason == "insufficient_selling_power"
    [cancelled] = await broker.cancel(order("s1", Side.SELL, 4, OrderType.LIMIT, 20))
    assert isinstance(cancelled, OrderUpdate)
    assert cancelled.status is OrderStatus.CANCELLED
    [sold] = await broker.submit(order("s3", Side.SELL, 2))
    assert isinstance(sold, Fill)


def test_fee_models() -> None:
    assert FeeModel(kind="percentage", bps=25).fee(10, 100) == pytest.approx(2.5)
    assert FeeModel(kind="perShare", per_share=0.01, minimum=1).fee(10, 100) == 1
    assert FeeModel(kind="perShare", per_share=0.01, minimum=1).fee(500, 100) == 5
    assert FeeModel(kind="zero").fee(10, 100) == 0


async def test_order_before_any_price_is_refused() -> None:
    broker = PaperBroker()
    [update] = await broker.submit(order("a", Side.BUY, 1))
    assert isinstance(update, OrderUpdate)
    assert update.status is OrderStatus.FAILED
    assert "no market price" in update.message


def bracketed(cid: str, qty: float, tp: float | None, sl: float | None) -> Order:
    entry = order(cid, Side.BUY, qty)
    entry.take_profit = Bracket(Side.SELL, tp) if tp else None
    entry.stop_loss = Bracket(Side.SELL, sl) if sl else None
    return entry


async def test_take_profit_fills_at_its_limit_and_cancels_the_stop() -> None:
    broker = PaperBroker(initial_cash=10_000)
    await broker.on_bar(bar(0, 100, 100, 100, 100))
    [entry_fill] = await broker.submit(bracketed("e", 3, tp=110, sl=95))
    assert isinstance(entry_fill, Fill)
    assert set(broker.resting) == {"e-tp", "e-sl"}
    assert await broker.submit(order("x", Side.SELL, 1)) != []  # 3 held, promised once: ok
    assert await broker.on_bar(bar(1, 101, 108, 97, 104)) == []  # neither exit reached
    tp_fill, cancelled = await broker.on_bar(bar(2, 105, 112, 104, 111))
    assert isinstance(tp_fill, Fill) and isinstance(cancelled, OrderUpdate)
    assert (tp_fill.client_order_id, tp_fill.price, tp_fill.quantity) == ("e-tp", 110, 3)
    assert (cancelled.client_order_id, cancelled.status) == ("e-sl", OrderStatus.CANCELLED)
    assert broker.resting == {}


async def test_stop_loss_fills_at_the_stop_or_the_gap_and_wins_a_tie() -> None:
    broker = PaperBroker(initial_cash=10_000)
    await broker.on_bar(bar(0, 100, 100, 100, 100))
    await broker.submit(bracketed("e", 2, tp=110, sl=95))
    # One bar reaches both exits: the stop is assumed first (the worse outcome).
    sl_fill, cancelled = await broker.on_bar(bar(1, 100, 111, 94, 100))
    assert isinstance(sl_fill, Fill) and isinstance(cancelled, OrderUpdate)
    assert (sl_fill.client_order_id, sl_fill.price) == ("e-sl", 95)
    assert cancelled.client_order_id == "e-tp"
    await broker.submit(bracketed("f", 1, tp=None, sl=95))
    [gap] = await broker.on_bar(bar(2, 90, 91, 89, 90))  # opened below the stop
    assert isinstance(gap, Fill) and gap.price == 90


async def test_brackets_survive_a_restart_of_a_durable_venue(tmp_path: Path) -> None:
    first = DurableVenue(tmp_path / "journal.db", initial_cash=10_000)
    broker = first.broker
    await broker.on_bar(bar(0, 100, 100, 100, 100))
    await broker.submit(bracketed("e", 2, tp=110, sl=95))
    first.close()
    second = DurableVenue(tmp_path / "journal.db", initial_cash=10_000)
    again = second.broker
    assert set(again.resting) == {"e-tp", "e-sl"}
    assert again.resting["e-tp"].order.parent_id == "e"
    [tp_fill, _] = await again.on_bar(bar(1, 105, 112, 104, 111))
    assert isinstance(tp_fill, Fill) and tp_fill.client_order_id == "e-tp"
    looked_up = await again.lookup(order("e", Side.BUY, 2))
    assert looked_up is not None
    status = looked_up[0]
    assert isinstance(status, OrderUpdate) and status.status is OrderStatus.FILLED
    second.close()
    third = DurableVenue(tmp_path / "journal.db", initial_cash=10_000)
    assert third.broker.resting == {}  # the filled exit and its cancelled sibling: gone
    assert third.broker.ledger.quantity("BTC") == 0
    third.close()
