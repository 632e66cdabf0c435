"""Average-cost accounting, including fees a venue takes out of the coins it trades."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from kubetrade.runner.domain import Fill, Side
from kubetrade.runner.session.ledger import Ledger

T0 = 1_704_067_200_000


def fill(
    n: int, side: Side, quantity: float, price: float, fee: float, fee_base: float = 0.0
) -> Fill:
    return Fill(f"f{n}", f"o{n}", "BTCUSDT", side, quantity, price, fee, T0 + n, fee_base)


def test_a_fee_taken_in_coins_comes_out_of_the_position_not_the_cash() -> None:
    # Binance: buy 1 BTC at 100 with 0.1% commission, taken as 0.001 BTC.
    ledger = Ledger(cash=1_000.0)
    ledger.apply(fill(1, Side.BUY, 1.0, 100.0, fee=0.1, fee_base=0.001))
    assert ledger.cash == 900.0  # the venue's USDT: no fee paid from it
    assert ledger.quantity("BTCUSDT") == 0.999  # the venue's BTC
    assert ledger.total_fees == 0.1
    position = ledger.positions["BTCUSDT"]
    assert position.average_cost == 100.0
    assert position.total_in_quantity - position.total_out_quantity == position.quantity
    # Selling all of it pays its commission in USDT, as Binance does.
    closed = ledger.apply(fill(2, Side.SELL, 0.999, 110.0, fee=0.10989))
    assert ledger.quantity("BTCUSDT") == 0.0
    assert ledger.cash == pytest.approx(900.0 + 0.999 * 110.0 - 0.10989)
    assert closed.realized_pnl == pytest.approx(9.99)
    # Realized PnL less all fees is exactly what the cash gained.
    assert ledger.realized_pnl - ledger.total_fees == pytest.approx(ledger.cash - 1_000.0)


def test_coins_taken_on_a_sell_leave_the_position_at_its_cost() -> None:
    ledger = Ledger(cash=1_000.0)
    ledger.apply(fill(1, Side.BUY, 2.0, 100.0, fee=0.2))
    closed = ledger.apply(fill(2, Side.SELL, 1.0, 120.0, fee=0.12, fee_base=0.001))
    assert ledger.quantity("BTCUSDT") == 0.999
    assert ledger.cash == pytest.approx(1_000.0 - 200.2 + 120.0)  # the sell's fee was coins
    assert closed.realized_pnl == pytest.approx(20.0 * 1.001)


def test_pnl_less_fees_always_equals_the_change_in_equity() -> None:
    rng = random.Random(11)
    ledger = Ledger(cash=100_000.0)
    price = 100.0
    for n in range(2_000):
        price *= 1 + rng.uniform(-0.01, 0.01)
        held = ledger.quantity("BTCUSDT")
        if held > 0.01 and rng.random() < 0.45:
            quantity = round(held * rng.choice([0.5, 1.0]), 8)
            in_coins = rng.random() < 0.2 and quantity < held
            fee_base = round(quantity * 0.001, 8) if in_coins else 0.0
            quantity = min(quantity, round(held - fee_base, 8))
            ledger.apply(fill(n, Side.SELL, quantity, price, quantity * price * 0.001, fee_base))
        else:
            quantity = round(rng.uniform(0.01, 1.0), 8)
            fee_base = round(quantity * 0.001, 8) if rng.random() < 0.5 else 0.0
            fee = fee_base * price if fee_base else quantity * price * 0.001
            ledger.apply(fill(n, Side.BUY, quantity, price, fee, fee_base))
        marks = {"BTCUSDT": price}
        equity = ledger.cash + ledger.market_value(marks)
        pnl = ledger.realized_pnl + ledger.unrealized_pnl(marks) - ledger.total_fees
        assert pnl == pytest.approx(equity - 100_000.0, abs=1e-6)


def test_with_realized_pnl_copies_every_other_field() -> None:
    # Built positionally for speed: a field added to Fill must not be dropped or shifted.
    original = Fill("f", "o", "BTCUSDT", Side.SELL, 1.5, 100.0, 0.15, T0, 0.001, 0.0)
    assert original.with_realized_pnl(7.5) == replace(original, realized_pnl=7.5)


@pytest.mark.parametrize("precision", [0, 2, 4, 8])
def test_coins_taken_as_a_fee_are_kept_whatever_the_order_precision(precision: int) -> None:
    # Order quantities may use few decimals; the position still matches the venue's coins.
    ledger = Ledger(cash=1_000.0, precision=precision)
    ledger.apply(fill(1, Side.BUY, 0.05, 3_000.0, fee=0.15, fee_base=0.00005))
    assert ledger.quantity("BTCUSDT") == 0.04995
    assert ledger.cash == 850.0
