"""The domain types that flow through the runner unchanged: Bar, Order, Fill, Position.

Times are integers, milliseconds since the Unix epoch in UTC. Strategy time is
bar time: nothing in the decision path reads the wall clock, so a replay is
deterministic.

Prices and quantities are floats because the strategy ABI carries doubles;
quantities are rounded to the session's decimal precision where they enter the
system (the strategy host), so arithmetic on them stays exact enough to compare.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter

# The span of bar times kubetrade accepts: every market's history and any plausible
# future, and nothing a date library cannot print (year -1200, a 5,000-digit epoch).
EARLIEST_TIME_MS = -2_208_988_800_000  # 1900-01-01T00:00:00Z
LATEST_TIME_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z (exclusive)
# Bounds on a bar's figures, so that no price times a quantity, nor a sum of volumes,
# can overflow to infinity; far beyond any market's.
MAX_PRICE = 1e12
MAX_VOLUME = 1e18


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def format_ms(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed OHLCV bar. `time` is the bar's open time (ms, UTC)."""

    symbol: str
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderStatus(StrEnum):
    # The five statuses of the strategy ABI. PENDING covers every live state
    # (accepted by us, sent, resting, partially filled).
    PENDING = "PENDING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"  # refused before reaching the venue (risk, validation)
    FAILED = "FAILED"  # refused by the venue (funds, lot size, ...)

    @property
    def is_final(self) -> bool:
        return self is not OrderStatus.PENDING


class RejectReason(StrEnum):
    """Machine-readable reasons carried in Order.reason when an order is refused.

    The first five are the reason strings argo-trading strategies already test for.
    """

    INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"
    INSUFFICIENT_SELLING_POWER = "insufficient_selling_power"
    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    INVALID_ORDER = "invalid_order"
    UNKNOWN_SYMBOL = "unknown_symbol"
    RISK_LIMIT = "risk_limit"
    VENUE_REJECTED = "venue_rejected"


@dataclass(frozen=True, slots=True)
class Bracket:
    """A take-profit or stop-loss riding on an entry order (see the ABI proto)."""

    side: Side
    price: float


@dataclass(slots=True)
class Order:
    """An order from the moment the strategy asks for it until it is final."""

    client_order_id: str  # deterministic: session, epoch, sequence
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    price: float  # the limit price; for market orders the strategy's reference price
    time: int  # bar time at which the strategy placed it
    strategy_name: str = ""
    reason: str = "strategy"  # why it exists, or why it was refused
    message: str = ""
    strategy_order_id: str = ""  # the id the strategy put in ExecuteOrder.id, if any
    position_type: str = "LONG"
    status: OrderStatus = OrderStatus.PENDING
    filled_quantity: float = 0.0
    average_price: float = 0.0
    fee: float = 0.0
    updated: int = 0  # bar time of the last status change
    take_profit: Bracket | None = None
    stop_loss: Bracket | None = None
    parent_id: str = ""  # for a take-profit or stop-loss: the entry it protects

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled_quantity

    def copy(self) -> Order:
        """A snapshot (events carry one: the order itself changes later). Positional
        construction is several times cheaper than dataclasses.replace."""
        return Order(*_order_fields(self))

    @property
    def notional(self) -> float:
        return self.quantity * self.price


_order_fields = attrgetter(*(f.name for f in fields(Order)))


def bracket_children(parent: Order) -> list[Order]:
    """The exits a filled entry's take-profit and stop-loss become, with derived ids.

    The ids are the entry's id plus "-tp"/"-sl", so the engine's book and the
    venue name the same orders without telling each other.
    """
    children = []
    for suffix, reason, bracket, order_type in (
        ("tp", "take_profit", parent.take_profit, OrderType.LIMIT),
        ("sl", "stop_loss", parent.stop_loss, OrderType.MARKET),  # a stop: market once touched
    ):
        if bracket is None:
            continue
        children.append(
            Order(
                client_order_id=f"{parent.client_order_id}-{suffix}",
                symbol=parent.symbol,
                side=bracket.side,
                order_type=order_type,
                quantity=parent.quantity,
                price=bracket.price,
                time=parent.time,
                strategy_name=parent.strategy_name,
                reason=reason,
                message=f"{reason.replace('_', ' ')} of {parent.client_order_id}",
                position_type=parent.position_type,
                parent_id=parent.client_order_id,
            )
        )
    return children


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution against an order. Several fills may complete one order."""

    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float  # the whole fee, valued in the session's cash currency
    time: int
    # The part of the fee the venue took in the traded asset itself, in its units: Binance
    # takes a buy's commission out of the coins bought, so the position grows by
    # quantity - fee_base and no cash pays for it. 0 when the fee is paid in cash.
    fee_base: float = 0.0
    realized_pnl: float = 0.0  # filled in by the ledger when the fill closes a position

    def with_realized_pnl(self, realized_pnl: float) -> Fill:
        # Positional: several times cheaper than dataclasses.replace.
        return Fill(
            self.fill_id, self.client_order_id, self.symbol, self.side, self.quantity,
            self.price, self.fee, self.time, self.fee_base, realized_pnl,
        )  # fmt: skip

    @property
    def cash_fee(self) -> float:
        """The part of the fee that cash pays: all of it unless the venue took coins."""
        return self.fee - self.fee_base * self.price if self.fee_base else self.fee


@dataclass(slots=True)
class Position:
    """A long position in one symbol, with average-cost accounting."""

    symbol: str
    quantity: float = 0.0
    average_cost: float = 0.0  # per unit, fees excluded
    realized_pnl: float = 0.0  # fees excluded; the ledger tracks fees separately
    total_in_quantity: float = 0.0
    total_out_quantity: float = 0.0
    total_in_amount: float = 0.0
    total_out_amount: float = 0.0
    total_in_fee: float = 0.0
    total_out_fee: float = 0.0
    open_time: int = 0  # bar time at which the current position was opened

    def unrealized_pnl(self, mark: float) -> float:
        return (mark - self.average_cost) * self.quantity


@dataclass(frozen=True, slots=True)
class AccountInfo:
    balance: float  # cash
    equity: float  # cash + market value of positions at the last bar's close
    buying_power: float  # cash not reserved by open buy orders
    realized_pnl: float
    unrealized_pnl: float
    total_fees: float
    margin_used: float = 0.0


@dataclass(frozen=True, slots=True)
class Mark:
    """A chart marker a strategy attached to a bar."""

    symbol: str
    time: int
    color: str
    shape: str
    title: str
    message: str
    category: str
    signal_type: str
    level: str


_INTERVAL_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def interval_ms(text: str) -> int:
    """Milliseconds in an interval like "1s", "5m", "4h", "1d", "1w"."""
    count, unit = text[:-1], text[-1:]
    if unit not in _INTERVAL_UNITS or not count.isdigit() or int(count) <= 0:
        raise ValueError(f"invalid interval {text!r}: use a count and a unit, e.g. 1s, 1m, 4h, 1d")
    return int(count) * _INTERVAL_UNITS[unit]
