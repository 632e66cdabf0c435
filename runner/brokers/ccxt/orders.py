"""Orders at a ccxt venue as the broker follows them, and the records they turn into.

The broker keeps one `Tracked` per order it sent until the venue reports the
order final. Fills are told apart by the venue's trade id, so the same trade
seen twice (in the order's answer, then in a trade query) counts once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubetrade.runner.brokers.base import OrderUpdate
from kubetrade.runner.brokers.ccxt.errors import InsufficientFunds, VenueError
from kubetrade.runner.brokers.venue_rules import MarketRules, Prepared, to_decimal
from kubetrade.runner.domain import Fill, Order, OrderStatus, OrderType, RejectReason, Side

log = logging.getLogger("kubetrade.brokers.ccxt")

# ccxt's unified order statuses.
OPEN = frozenset({"open", "canceling", None})
_ENDED = {
    "canceled": (OrderStatus.CANCELLED, "cancelled"),
    "expired": (OrderStatus.CANCELLED, "expired"),
    "rejected": (OrderStatus.FAILED, RejectReason.VENUE_REJECTED),
}


@dataclass(slots=True)
class Tracked:
    order: Order
    rules: MarketRules
    venue_id: str = ""
    confirmed: bool = False  # the venue is known to have it (else its fate is unknown)
    cancel_requested: bool = False  # asked to cancel while its fate was unknown
    reported: Decimal = Decimal(0)  # quantity already delivered as fills
    trade_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue reports it (open orders, order status)."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: str
    order_type: str
    status: str  # ccxt's: open, closed, canceled, expired, rejected
    quantity: float
    filled: float
    price: float | None

    @classmethod
    def from_ccxt(cls, data: dict[str, Any], symbol: str) -> VenueOrder:
        price = data.get("price")
        return cls(
            client_order_id=str(data.get("clientOrderId") or ""),
            venue_order_id=str(data.get("id") or ""),
            symbol=symbol,
            side=str(data.get("side") or "").upper(),
            order_type=str(data.get("type") or "").upper(),
            status=str(data.get("status") or ""),
            quantity=float(data.get("amount") or 0.0),
            filled=float(data.get("filled") or 0.0),
            price=float(price) if price else None,
        )


def filled_of(data: dict[str, Any]) -> Decimal:
    return to_decimal(data.get("filled")) or Decimal(0)


def trade_fees(trade: dict[str, Any]) -> list[tuple[str, float]]:
    """(currency, amount) of each fee a ccxt trade carries."""
    fees = trade.get("fees") or ([trade["fee"]] if trade.get("fee") else [])
    out = []
    for fee in fees:
        cost = fee.get("cost") if isinstance(fee, dict) else None
        if cost:
            out.append((str(fee.get("currency") or ""), float(cost)))
    return out


def make_fill(
    tracked: Tracked,
    trade: dict[str, Any],
    *,
    fee: float,
    fee_base: float,
    time: int,
    exchange_id: str,
) -> Fill:
    order = tracked.order
    return Fill(
        fill_id=f"{exchange_id}-{trade['id']}",
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        quantity=float(trade["amount"]),
        price=float(trade["price"]),
        fee=fee,
        time=time,
        fee_base=fee_base,
    )


def final_update(tracked: Tracked, status: str, time: int, venue: str) -> OrderUpdate | None:
    """The update that ends an order the venue finished without filling it all."""
    ended = _ENDED.get(status)
    if ended is None:
        return None  # "closed": its fills completed it
    new_status, reason = ended
    filled = tracked.reported.normalize()
    message = f"{venue} reports the order {status}" + (
        f" after {filled:f} of {tracked.order.quantity:g} filled" if filled else ""
    )
    return OrderUpdate(tracked.order.client_order_id, new_status, time, reason, message)


def amend(order: Order, prepared: Prepared, provider: str) -> None:
    """Make the order say what the venue is asked for: its quantity and price on the grid.

    The book completes an order when its fills reach `order.quantity`, so a
    quantity rounded down for the venue must be the order's quantity too.
    """
    quantity = float(prepared.quantity)
    price = float(prepared.price) if prepared.price is not None else order.price
    if quantity != order.quantity or price != order.price:
        log.info(
            "%s: %s rounded to the market's grid: quantity %g -> %g, price %g -> %g",
            provider,
            order.client_order_id,
            order.quantity,
            quantity,
            order.price,
            price,
        )
        order.quantity, order.price = quantity, price


def log_order(order: Order, provider: str, *, live: bool) -> None:
    # Live providers say so on every order, loudly enough to pass the default log level.
    level = logging.WARNING if live else logging.INFO
    limit = f" limit {order.price:g}" if order.order_type is OrderType.LIMIT else ""
    log.log(
        level,
        "%s%s order %s: %s %g %s %s%s",
        provider,
        " (LIVE: real money)" if live else "",
        order.client_order_id,
        order.side,
        order.quantity,
        order.symbol,
        order.order_type,
        limit,
    )


def refused(order: Order, reason: str, message: str, time: int | None = None) -> OrderUpdate:
    when = order.time if time is None else time
    return OrderUpdate(order.client_order_id, OrderStatus.FAILED, when, reason, message)


def venue_refused(order: Order, exc: VenueError, time: int, provider: str) -> OrderUpdate:
    """A FAILED order carrying the venue's code and message."""
    reason: str = RejectReason.VENUE_REJECTED
    if isinstance(exc, InsufficientFunds):
        reason = (
            RejectReason.INSUFFICIENT_BUYING_POWER
            if order.side is Side.BUY
            else RejectReason.INSUFFICIENT_SELLING_POWER
        )
    log.warning("%s: order %s refused: %s", provider, order.client_order_id, exc)
    return refused(order, reason, f"{provider} refused the order: {exc}", time)
