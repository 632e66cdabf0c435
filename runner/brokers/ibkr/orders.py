"""Our orders at Interactive Brokers, and the events IB's news about them yields.

Plain bookkeeping, no I/O: the broker feeds in what ib_async reports (order
statuses, executions) and takes out OrderUpdate and Fill events. An execution
becomes a Fill only once its commission report is in, because the fee is part
of the Fill; the end of an order (cancelled, refused) is held back until
every fill before it has gone out, so the engine sees them in the order they
happened.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

from ib_async import Fill as IbFill
from ib_async import Trade

from kubetrade.runner.brokers.base import BrokerEvent, OrderUpdate
from kubetrade.runner.domain import (
    Fill,
    Order,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    datetime_to_ms,
)

log = logging.getLogger("kubetrade.brokers.ibkr")

_ENDED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})  # final, other than Filled
_UNACKNOWLEDGED = frozenset({"", "PendingSubmit", "ApiPending"})
_CANCEL_CONFIRMED = 202  # "Order Canceled - reason:", IB's answer to a cancel request
# IB error codes that mean what a reason strategies already test for means.
_REASONS = {
    200: RejectReason.UNKNOWN_SYMBOL,
    110: RejectReason.INVALID_PRICE,
    163: RejectReason.INVALID_PRICE,
    434: RejectReason.INVALID_QUANTITY,
    10243: RejectReason.INVALID_QUANTITY,
}


def now_ms() -> int:
    return int(time.time() * 1000)


def refusal(order: Order) -> tuple[str, str] | None:
    """Why the order cannot be sent at all, or None."""
    if not (math.isfinite(order.quantity) and order.quantity > 0):
        return RejectReason.INVALID_QUANTITY, f"quantity must be > 0, got {order.quantity}"
    if order.order_type is OrderType.LIMIT and not (math.isfinite(order.price) and order.price > 0):
        return RejectReason.INVALID_PRICE, f"limit price must be > 0, got {order.price}"
    return None


def reason(code: int, text: str, side: Side) -> str:
    """The reason string for an IB error that ended an order."""
    if code in _REASONS:
        return _REASONS[code]
    lowered = text.lower()
    if any(word in lowered for word in ("insufficient", "margin", "buying power", "funds")):
        return (
            RejectReason.INSUFFICIENT_BUYING_POWER
            if side is Side.BUY
            else RejectReason.INSUFFICIENT_SELLING_POWER
        )
    return RejectReason.VENUE_REJECTED


@dataclass(slots=True)
class Tracked:
    """What we know about one of our orders at IB."""

    order: Order
    trade: Trade | None = None  # ib_async's view of it on the current connection
    sent: bool = False  # placeOrder was written to a connection
    acked: bool = False  # IB has shown that it has the order
    cancel_requested: bool = False
    closed: bool = False  # cancelled or failed: its final OrderUpdate is queued
    reported: float = 0.0  # quantity filled in Fill events handed out so far

    @property
    def ref(self) -> str:
        return self.order.client_order_id


@dataclass(slots=True)
class _PendingFill:
    """An execution waiting for its commission report."""

    tracked: Tracked
    fill: IbFill
    seen: float  # monotonic time of arrival

    @property
    def has_fee(self) -> bool:
        # ib_async files the commission report into the fill it already holds.
        return bool(self.fill.commissionReport.execId)


@dataclass(slots=True)
class OrderTracker:
    precision: int = 8
    commission_timeout: float = 5.0  # after this, an execution goes out with fee 0
    orders: dict[str, Tracked] = field(default_factory=dict)  # by orderRef
    executions: dict[str, dict[str, IbFill]] = field(default_factory=dict)  # orderRef, execId
    last_execution: datetime | None = None  # IB's time of the newest execution seen
    fees: float = 0.0  # commissions in the Fill events handed out
    _pending: dict[str, _PendingFill] = field(default_factory=dict)  # by execId
    _emitted: set[str] = field(default_factory=set)  # execIds handed out
    _finals: list[OrderUpdate] = field(default_factory=list)

    def track(self, order: Order) -> Tracked:
        tracked = self.orders[order.client_order_id] = Tracked(order)
        return tracked

    def forget(self, ref: str) -> None:
        self.orders.pop(ref, None)

    def unsent(self) -> list[Tracked]:
        return [t for t in self.orders.values() if not (t.sent or t.closed)]

    def record(self, fill: IbFill) -> None:
        """Remember an execution; queue it as a Fill if it belongs to one of our orders."""
        execution = fill.execution
        if self.last_execution is None or execution.time > self.last_execution:
            self.last_execution = execution.time
        if not execution.orderRef:
            return  # placed by hand in TWS: never one of ours
        self.executions.setdefault(execution.orderRef, {})[execution.execId] = fill
        tracked = self.orders.get(execution.orderRef)
        if tracked is None or execution.execId in self._emitted:
            return
        tracked.acked = True
        pending = self._pending.get(execution.execId)
        if pending is None:
            self._pending[execution.execId] = _PendingFill(tracked, fill, time.monotonic())
        elif not pending.has_fee:
            pending.fill = fill  # the copy from a new connection, where its report will land

    def status(self, trade: Trade) -> None:
        """Take in IB's status of an order (ours or not)."""
        tracked = self.orders.get(trade.order.orderRef)
        if tracked is None:
            return
        tracked.trade = trade
        status = trade.orderStatus.status
        if status not in _UNACKNOWLEDGED:
            tracked.acked = True
        if status in _ENDED and not tracked.closed:
            self.close(tracked, *self._ending(tracked, trade))

    def close(self, tracked: Tracked, status: OrderStatus, why: str, message: str) -> None:
        """End the order with a final update, unless it has ended already."""
        if not tracked.closed:
            tracked.closed = True
            self._finals.append(OrderUpdate(tracked.ref, status, now_ms(), why, message))

    def filled(self, tracked: Tracked) -> bool:
        """All of the order is filled, in events handed out or ready to go."""
        ready = sum(
            p.fill.execution.shares
            for p in self._pending.values()
            if p.tracked is tracked and p.has_fee
        )
        return tracked.reported + ready >= tracked.order.quantity - 0.5 * 10.0**-self.precision

    def ended(self, tracked: Tracked) -> bool:
        """Nothing more will happen to the order: it is closed or all filled."""
        return tracked.closed or self.filled(tracked)

    def settled(self, tracked: Tracked) -> bool:
        """Done waiting on a new order: a market order filled, a limit order acknowledged."""
        if self.ended(tracked):
            return True
        return tracked.order.order_type is OrderType.LIMIT and tracked.acked

    def drain(self, *, connected: bool) -> list[BrokerEvent]:
        """Fills whose fee is known, then the ends of orders with no fill still to come."""
        events: list[BrokerEvent] = []
        now = time.monotonic()
        for exec_id, pending in list(self._pending.items()):
            # While disconnected the report may still come with the executions on reconnect.
            overdue = connected and now - pending.seen > self.commission_timeout
            if pending.has_fee or overdue:
                if not pending.has_fee:
                    log.warning(
                        "no commission report for execution %s after %.0f s; fee recorded as 0",
                        exec_id,
                        self.commission_timeout,
                    )
                del self._pending[exec_id]
                self._emitted.add(exec_id)
                events.append(self._fill(pending))
        waiting = {p.tracked.ref for p in self._pending.values()}
        for update in [u for u in self._finals if u.client_order_id not in waiting]:
            self._finals.remove(update)
            events.append(update)
        return events

    def _ending(self, tracked: Tracked, trade: Trade) -> tuple[OrderStatus, str, str]:
        """CANCELLED or FAILED, with the reason, for an order IB ended."""
        error = next(
            (e for e in reversed(trade.log) if e.errorCode not in (0, _CANCEL_CONFIRMED)), None
        )
        if error is not None:
            why = reason(error.errorCode, error.message, tracked.order.side)
            return OrderStatus.FAILED, why, f"IB error {error.errorCode}: {error.message}"
        if trade.orderStatus.status == "Inactive":
            return OrderStatus.FAILED, RejectReason.VENUE_REJECTED, "IB set the order inactive"
        if tracked.cancel_requested:
            return OrderStatus.CANCELLED, "cancelled", ""
        return OrderStatus.CANCELLED, "cancelled", "cancelled by Interactive Brokers"

    def _fill(self, pending: _PendingFill) -> Fill:
        execution, report = pending.fill.execution, pending.fill.commissionReport
        fee = report.commission if pending.has_fee else 0.0
        quantity = round(execution.shares, self.precision)
        pending.tracked.reported += quantity
        self.fees += fee
        return Fill(
            fill_id=f"ib-{execution.execId}",
            client_order_id=pending.tracked.ref,
            symbol=pending.tracked.order.symbol,
            side=Side.BUY if execution.side == "BOT" else Side.SELL,
            quantity=quantity,
            price=execution.price,
            fee=fee,
            time=datetime_to_ms(execution.time),  # IB's execution time
        )
