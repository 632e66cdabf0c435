"""Order quantities and refusals as argo-trading's backtest treats them.

argo (internal/backtest/engine/engine_v1/backtest_trading.go, internal/utils/order.go)
cuts a quantity down to the configured decimal places (math.Floor(q * 10^p) / 10^p),
fails the call when a positive quantity cuts down to nothing, records an order of 0
or less as FAILED with reason invalid_quantity, and one that sells more than is held
as FAILED with reason insufficient_selling_power. Rounding to the nearest instead
would let 0.6 become 1 and 39.7 become 40: more than a strategy sized to its cash
asked for.
"""

from __future__ import annotations

import math

import pytest

from kubetrade.runner.domain import Bar, OrderStatus
from kubetrade.runner.session import HostCallError, Session
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

T0 = 1_704_067_200_000


def host(precision: int) -> tuple[HostFunctions, Session]:
    session = Session.create(
        session="t",
        symbols=("BTC",),
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset({"BTC"})),
        window_size=10,
        precision=precision,
    )
    session.begin_bar(Bar("BTC", T0, 100, 101, 99, 100, 1))
    return HostFunctions(session), session


def place(
    functions: HostFunctions, quantity: float, side: pb.PurchaseType = pb.PURCHASE_TYPE_BUY
) -> None:
    functions.place_order(
        pb.ExecuteOrder(
            symbol="BTC", side=side, order_type=pb.ORDER_TYPE_MARKET, quantity=quantity, id="o"
        )
    )


@pytest.mark.parametrize(
    ("precision", "asked", "placed"),
    [
        (0, 39.7, 39.0),  # not 40: more than asked for
        (0, 1.999999, 1.0),
        (2, 1.239, 1.23),
        (8, 0.123456789, 0.12345678),
        (8, 2.3, 2.29999999),  # argo's float arithmetic, kept on purpose: same results
    ],
)
def test_quantities_are_cut_down_to_the_decimal_places(
    precision: int, asked: float, placed: float
) -> None:
    functions, session = host(precision)
    place(functions, asked)
    [order] = session.outbox
    assert order.quantity == placed


@pytest.mark.parametrize(("precision", "asked"), [(0, 0.6), (0, 0.999), (2, 0.004)])
def test_a_quantity_that_cuts_down_to_nothing_fails_the_call(precision: int, asked: float) -> None:
    functions, session = host(precision)
    cut = rf"too small or zero after rounding down to {precision} decimal places"
    with pytest.raises(HostCallError, match=cut):
        place(functions, asked)
    assert not session.outbox and not session.book.orders  # no order at all, as in argo


@pytest.mark.parametrize("asked", [0.0, -1.0, math.nan])
def test_a_quantity_of_zero_or_less_is_a_failed_order(asked: float) -> None:
    functions, session = host(8)
    place(functions, asked)
    [order] = session.book.orders.values()
    assert (order.status, order.reason) == (OrderStatus.FAILED, "invalid_quantity")
    assert order.message.startswith("order quantity must be greater than zero: ")
    status = functions.get_order_status(pb.GetOrderStatusRequest(order_id="o"))
    assert status.status == pb.ORDER_STATUS_FAILED
    assert not session.outbox


def test_selling_what_is_not_held_fails_but_a_breached_limit_is_rejected() -> None:
    functions, session = host(8)
    place(functions, 1.5, side=pb.PURCHASE_TYPE_SELL)
    [order] = session.book.orders.values()
    assert (order.status, order.reason) == (OrderStatus.FAILED, "insufficient_selling_power")
    assert order.message.startswith("order quantity (1.50) exceeds selling power (0.00)")
    assert "spec.risk.allowShort" in order.message
    assert not session.outbox
    # A limit of kubetrade's own (argo has none) still reads REJECTED.
    limited = Session.create(
        session="t",
        symbols=("BTC",),
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(max_order_notional=50), symbols=frozenset({"BTC"})),
        window_size=10,
        precision=8,
    )
    limited.begin_bar(Bar("BTC", T0, 100, 101, 99, 100, 1))
    place(HostFunctions(limited), 1)
    [order] = limited.book.orders.values()
    assert (order.status, order.reason) == (OrderStatus.REJECTED, "risk_limit")
