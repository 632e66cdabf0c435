"""Pre-trade checks that no strategy can bypass.

Every order a strategy places passes through `RiskGate.check` inside the host
before any broker sees it. A breach refuses the order with a reason the
strategy can read: the order's status becomes REJECTED for a breached limit,
and FAILED with argo-trading's reason and wording where argo's backtest fails
the order itself (a quantity of 0 or less: invalid_quantity; selling more than
is held while short selling is off: insufficient_selling_power). All windows
are in bar time so the same replay refuses the same orders.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetrade.runner.domain import Order, OrderStatus, OrderType, RejectReason, Side
from kubetrade.runner.session.book import Book

_DAY_MS = 86_400_000
_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_order_notional: float | None = None
    max_position_notional: float | None = None
    max_orders_per_minute: int | None = None
    max_daily_loss: float | None = None
    allow_short: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    message: str
    status: OrderStatus = OrderStatus.REJECTED  # FAILED where argo-trading fails the order


@dataclass(slots=True)
class RiskGate:
    limits: RiskLimits
    symbols: frozenset[str]
    recent: deque[int] = field(default_factory=deque)  # bar times of accepted orders
    day: int = -1  # UTC day number of `day_start_equity`
    day_start_equity: float = 0.0
    halted_day: int = -1  # day on which the daily loss limit was hit
    brackets_venue: str = ""  # the broker, if it cannot hold take-profits and stop-losses

    def start_of_bar(self, time: int, book: Book) -> bool:
        """Roll the daily window; call before the strategy sees the bar. True if a new
        day began (the state changed)."""
        day = time // _DAY_MS
        if day == self.day:
            return False
        self.day = day
        self.day_start_equity = book.account().equity
        return True

    @property
    def halted(self) -> bool:
        return self.halted_day == self.day

    def state(self) -> dict[str, Any]:
        """What the gate has learnt from the session so far; a restart restores it, so a
        halt stays a halt and the order-rate window keeps counting."""
        return {
            "recent": list(self.recent),
            "day": self.day,
            "day_start_equity": self.day_start_equity,
            "halted_day": self.halted_day,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.recent = deque(int(t) for t in state["recent"])
        self.day = int(state["day"])
        self.day_start_equity = float(state["day_start_equity"])
        self.halted_day = int(state["halted_day"])

    def check(self, order: Order, book: Book, reference_price: float) -> Refusal | None:
        """Refuse the order, or accept it and count it against the rate limit."""
        refusal = (
            self._validate(order)
            or self._brackets(order, reference_price)
            or self._limits(order, book, reference_price)
        )
        if refusal is None and self.limits.max_orders_per_minute is not None:
            self.recent.append(order.time)  # only the rate limit reads it: keep it bounded
        return refusal

    def _validate(self, order: Order) -> Refusal | None:
        if order.symbol not in self.symbols:
            allowed = ", ".join(sorted(self.symbols))
            return Refusal(
                RejectReason.UNKNOWN_SYMBOL,
                f"symbol {order.symbol!r} is not traded by this session (symbols: {allowed})",
            )
        if not (math.isfinite(order.quantity) and order.quantity > 0):
            return Refusal(
                RejectReason.INVALID_QUANTITY,
                f"order quantity must be greater than zero: {order.quantity:.2f}",
                OrderStatus.FAILED,
            )
        if order.order_type is OrderType.LIMIT and not (
            math.isfinite(order.price) and order.price > 0
        ):
            return Refusal(
                RejectReason.INVALID_PRICE, f"limit price must be > 0, got {order.price}"
            )
        return None

    def _brackets(self, order: Order, reference_price: float) -> Refusal | None:
        """A take-profit must sit beyond the entry, a stop-loss behind it, both on the exit side."""
        if order.take_profit is None and order.stop_loss is None:
            return None
        entry = order.price if order.order_type is OrderType.LIMIT else reference_price
        for name, bracket, beyond in (
            ("take_profit", order.take_profit, True),
            ("stop_loss", order.stop_loss, False),
        ):
            if bracket is None:
                continue
            if self.brackets_venue:
                return Refusal(
                    RejectReason.INVALID_ORDER,
                    f"{self.brackets_venue} cannot hold a {name} yet; place the exit yourself",
                )
            if not (math.isfinite(bracket.price) and bracket.price > 0):
                return Refusal(
                    RejectReason.INVALID_PRICE,
                    f"{name}.price must be > 0, got {bracket.price} (kubetrade reads the exit "
                    "price from field 4 of ExecuteOrderTakeProfitOrStopLoss)",
                )
            if bracket.side is order.side:
                return Refusal(
                    RejectReason.INVALID_ORDER, f"{name} must be on the other side of the entry"
                )
            above = bracket.price > entry
            if above != (beyond == (order.side is Side.BUY)):
                where = "above" if beyond == (order.side is Side.BUY) else "below"
                return Refusal(
                    RejectReason.INVALID_PRICE,
                    f"{name}.price {bracket.price} must be {where} the entry price {entry}",
                )
        return None

    def _limits(self, order: Order, book: Book, reference_price: float) -> Refusal | None:
        limits = self.limits
        price = order.price if order.order_type is OrderType.LIMIT else reference_price
        notional = order.quantity * price
        held = book.ledger.quantity(order.symbol)
        buying, selling = book.pending_quantities(order.symbol)
        shorting = order.side is Side.SELL and order.quantity > held - selling + 1e-12
        if shorting and not limits.allow_short:
            return Refusal(
                RejectReason.INSUFFICIENT_SELLING_POWER,
                f"order quantity ({order.quantity:.2f}) exceeds selling power "
                f"({held - selling:.2f}): {order.symbol} held {held}, already selling "
                f"{selling}; short selling is off (spec.risk.allowShort)",
                OrderStatus.FAILED,
            )
        if limits.max_order_notional is not None and notional > limits.max_order_notional:
            return Refusal(
                RejectReason.RISK_LIMIT,
                f"order notional {notional:.2f} exceeds spec.risk.maxOrderNotional "
                f"{limits.max_order_notional:.2f}",
            )
        if limits.max_position_notional is not None and order.side is Side.BUY:
            after = (held + buying + order.quantity) * price
            if after > limits.max_position_notional:
                return Refusal(
                    RejectReason.RISK_LIMIT,
                    f"position in {order.symbol} would reach {after:.2f}, above "
                    f"spec.risk.maxPositionNotional {limits.max_position_notional:.2f}",
                )
        if limits.max_orders_per_minute is not None:
            while self.recent and self.recent[0] <= order.time - _MINUTE_MS:
                self.recent.popleft()
            if len(self.recent) >= limits.max_orders_per_minute:
                return Refusal(
                    RejectReason.RISK_LIMIT,
                    f"more than spec.risk.maxOrdersPerMinute {limits.max_orders_per_minute} "
                    "orders in one minute",
                )
        if limits.max_daily_loss is not None and order.side is Side.BUY:
            loss = self.day_start_equity - book.account().equity
            if self.halted or loss >= limits.max_daily_loss:
                self.halted_day = self.day
                return Refusal(
                    RejectReason.RISK_LIMIT,
                    f"daily loss {loss:.2f} reached spec.risk.maxDailyLoss "
                    f"{limits.max_daily_loss:.2f}; new entries halted until the next UTC day",
                )
        return None
