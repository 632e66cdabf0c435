"""Cash and positions moved by fills, with average-cost accounting.

One Ledger is the paper venue's own account; another mirrors the venue inside
the engine's book. Both apply the same arithmetic, so they agree fill by fill.
Positions are long-only: a sell never takes a position below zero (the broker
and the risk check refuse such orders before a fill exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetrade.runner.domain import Fill, Position, Side


@dataclass(slots=True)
class Ledger:
    cash: float
    precision: int = 8  # decimal places kept in quantities
    positions: dict[str, Position] = field(default_factory=dict)
    realized_pnl: float = 0.0
    total_fees: float = 0.0
    # Decimals positions keep: at least 8, so a fee the venue took in coins (Binance: 0.1% of
    # the quantity) is not rounded away when order quantities use fewer decimals.
    _decimals: int = field(init=False, repr=False, default=8)

    def __post_init__(self) -> None:
        self._decimals = max(self.precision, 8)

    def position(self, symbol: str) -> Position:
        existing = self.positions.get(symbol)
        return existing if existing is not None else Position(symbol=symbol)

    def quantity(self, symbol: str) -> float:
        existing = self.positions.get(symbol)
        return existing.quantity if existing is not None else 0.0

    def apply(self, fill: Fill) -> Fill:
        """Move cash and the position for one fill; return it with its realized PnL.

        A fee the venue took in the traded asset (``fee_base``) comes out of the position,
        not the cash, as it does at the venue, so the two stay equal. The average cost is
        weighted by what entered the position, so realized and unrealized PnL less the fees
        always equal the change in cash plus holdings.
        """
        pos = self.positions.get(fill.symbol)
        if pos is None:
            pos = self.positions[fill.symbol] = Position(symbol=fill.symbol)
        amount = fill.quantity * fill.price
        self.total_fees += fill.fee
        if fill.side is Side.BUY:
            if pos.quantity == 0.0:
                pos.open_time = fill.time
            received = fill.quantity - fill.fee_base
            new_quantity = round(pos.quantity + received, self._decimals)
            if new_quantity > 0.0:
                cost = pos.average_cost * pos.quantity + fill.price * received
                pos.average_cost = cost / new_quantity
            pos.quantity = new_quantity
            # In and out count what entered and left the position, so in - out = quantity.
            pos.total_in_quantity += received
            pos.total_in_amount += amount
            pos.total_in_fee += fill.fee
            self.cash -= amount + fill.cash_fee
            return fill
        # Coins the venue kept as its fee leave the position too, at its average cost.
        realized = (fill.price - pos.average_cost) * (fill.quantity + fill.fee_base)
        pos.quantity = round(pos.quantity - fill.quantity - fill.fee_base, self._decimals)
        pos.total_out_quantity += fill.quantity + fill.fee_base
        pos.total_out_amount += amount
        pos.total_out_fee += fill.fee
        pos.realized_pnl += realized
        if pos.quantity <= 0.0:
            # Flat again: the next buy starts a fresh average cost.
            pos.quantity = 0.0
            pos.average_cost = 0.0
        self.cash += amount - fill.cash_fee
        self.realized_pnl += realized
        return fill.with_realized_pnl(realized)

    def unrealized_pnl(self, marks: dict[str, float]) -> float:
        return sum(
            p.unrealized_pnl(marks.get(s, p.average_cost))
            for s, p in self.positions.items()
            if p.quantity
        )

    def market_value(self, marks: dict[str, float]) -> float:
        # A plain loop: the session records the equity after every bar.
        value = 0.0
        for symbol, p in self.positions.items():
            if p.quantity:
                value += p.quantity * marks.get(symbol, p.average_cost)
        return value
