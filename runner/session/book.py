"""The session's book: every order, every fill, and the ledger they move.

The book is the engine's record of what the strategy asked for and what the
venue did. Strategies read it through host functions (positions, account,
open orders, order status); brokers write to it only through OrderUpdate and
Fill records, so every venue is accounted for by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetrade.runner.domain import AccountInfo, Fill, Order, OrderStatus, OrderType, Side
from kubetrade.runner.session.ledger import Ledger


@dataclass(slots=True)
class Book:
    ledger: Ledger
    orders: dict[str, Order] = field(default_factory=dict)  # by client order id, in order
    fills: list[Fill] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # last close per symbol
    # The strategy may name its orders (ExecuteOrder.id); it later cancels or
    # queries them by that name, so keep the mapping to our client order id.
    by_strategy_id: dict[str, str] = field(default_factory=dict)
    open_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    fill_ids: set[str] = field(default_factory=set)

    def add(self, order: Order) -> None:
        self.orders[order.client_order_id] = order
        if order.strategy_order_id:
            self.by_strategy_id[order.strategy_order_id] = order.client_order_id
        if not order.status.is_final:
            self.open_ids[order.client_order_id] = None

    def find(self, order_id: str) -> Order | None:
        """An order by the strategy's id or by our client order id."""
        client_id = self.by_strategy_id.get(order_id, order_id)
        return self.orders.get(client_id)

    def open_orders(self) -> list[Order]:
        return [self.orders[i] for i in self.open_ids]

    def set_status(
        self, order: Order, status: OrderStatus, time: int, reason: str = "", message: str = ""
    ) -> None:
        order.status = status
        order.updated = time
        if reason:
            order.reason = reason
            order.message = message
        if status.is_final:
            self.open_ids.pop(order.client_order_id, None)

    def has_fill(self, fill_id: str) -> bool:
        return fill_id in self.fill_ids

    def apply_fill(self, fill: Fill) -> tuple[Order | None, Fill]:
        """Record a fill: move the ledger and advance its order."""
        self.fill_ids.add(fill.fill_id)
        fill = self.ledger.apply(fill)
        self.fills.append(fill)
        order = self.orders.get(fill.client_order_id)
        if order is not None:
            filled = order.filled_quantity + fill.quantity
            order.average_price = (
                order.average_price * order.filled_quantity + fill.price * fill.quantity
            ) / filled
            order.filled_quantity = round(filled, self.ledger.precision)
            order.fee += fill.fee
            if order.filled_quantity >= order.quantity:
                self.set_status(order, OrderStatus.FILLED, fill.time)
        return order, fill

    def reserved_cash(self) -> float:
        """Cash promised to open buy orders (at their limit or reference price)."""
        return sum(
            o.remaining * o.price
            for o in self.open_orders()
            if o.side is Side.BUY and o.order_type is OrderType.LIMIT
        )

    def pending_quantities(self, symbol: str) -> tuple[float, float]:
        """What open orders in ``symbol`` still buy and still sell."""
        buying = selling = 0.0
        orders = self.orders
        for client_id in self.open_ids:
            order = orders[client_id]
            if order.symbol == symbol:
                if order.side is Side.BUY:
                    buying += order.remaining
                else:
                    selling += order.remaining
        return buying, selling

    def account(self) -> AccountInfo:
        ledger = self.ledger
        unrealized = ledger.unrealized_pnl(self.marks)
        return AccountInfo(
            balance=ledger.cash,
            equity=ledger.cash + ledger.market_value(self.marks),
            buying_power=ledger.cash - self.reserved_cash(),
            realized_pnl=ledger.realized_pnl,
            unrealized_pnl=unrealized,
            total_fees=ledger.total_fees,
        )
