"""A venue's trading rules for one market, and the pre-send check that applies them.

Exchanges refuse orders whose quantity is not a multiple of the lot step, whose
price is off the tick grid, or whose notional is below a minimum (Binance's
LOT_SIZE, MARKET_LOT_SIZE, PRICE_FILTER and NOTIONAL / MIN_NOTIONAL filters).
Rounding and checking here, before anything is sent, turns each of those into
a refusal with a reason the strategy can read, and costs no request (nor any
of the venue's rate limit).

Arithmetic is in Decimal on the shortest text form of each float, so
0.3 / 0.1 is exactly 3 steps and a quantity already on the grid never moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from kubetrade.runner.domain import OrderType, RejectReason, Side

# ccxt's precision modes (ccxt.base.decimal_to_precision): how market["precision"] reads.
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4


def to_decimal(value: object) -> Decimal | None:
    """A positive finite Decimal from a number or numeric text, else None (no rule)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number > 0 else None


def _step(precision: object, mode: int) -> Decimal | None:
    if mode == TICK_SIZE:
        return to_decimal(precision)
    if mode == DECIMAL_PLACES and isinstance(precision, int | float) and precision >= 0:
        return Decimal(1).scaleb(-int(precision))
    return None  # significant digits: no fixed grid; the venue rounds


def _limit(limits: dict[str, Any], key: str, bound: str) -> Decimal | None:
    section = limits.get(key) or {}
    return to_decimal(section.get(bound))


@dataclass(frozen=True, slots=True)
class MarketRules:
    """What one market accepts. A None bound is no bound."""

    symbol: str  # the session's name for it, e.g. BTCUSDT
    venue_symbol: str  # the client library's name, e.g. BTC/USDT
    base: str
    quote: str
    active: bool = True
    amount_step: Decimal | None = None
    price_tick: Decimal | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    market_min_amount: Decimal | None = None  # market orders only (MARKET_LOT_SIZE)
    market_max_amount: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    min_notional: Decimal | None = None
    max_notional: Decimal | None = None

    @classmethod
    def from_ccxt(cls, symbol: str, market: dict[str, Any], *, precision_mode: int) -> MarketRules:
        """Rules from a ccxt unified market structure."""
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        return cls(
            symbol=symbol,
            venue_symbol=str(market["symbol"]),
            base=str(market["base"]),
            quote=str(market["quote"]),
            active=market.get("active") is not False,  # None means the venue does not say
            amount_step=_step(precision.get("amount"), precision_mode),
            price_tick=_step(precision.get("price"), precision_mode),
            min_amount=_limit(limits, "amount", "min"),
            max_amount=_limit(limits, "amount", "max"),
            market_min_amount=_limit(limits, "market", "min"),
            market_max_amount=_limit(limits, "market", "max"),
            min_price=_limit(limits, "price", "min"),
            max_price=_limit(limits, "price", "max"),
            min_notional=_limit(limits, "cost", "min"),
            max_notional=_limit(limits, "cost", "max"),
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """An order's quantity and limit price as they will be sent (on the venue's grid)."""

    quantity: Decimal
    price: Decimal | None  # None for market orders


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    message: str


def _show(value: Decimal | None) -> str:
    """A Decimal as plain text without trailing zeros: 150, 0.00001."""
    return "none" if value is None else f"{value.normalize():f}"


def _floor(value: Decimal, step: Decimal | None) -> Decimal:
    if step is None:
        return value
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def _ceil(value: Decimal, step: Decimal | None) -> Decimal:
    if step is None:
        return value
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def prepare(
    rules: MarketRules,
    *,
    side: Side,
    order_type: OrderType,
    quantity: float,
    price: float,
    reference_price: float,
) -> Prepared | Refusal:
    """Round an order onto the venue's grid and check it, or say why the venue would refuse it.

    `price` is the limit price of a limit order; `reference_price` is the last
    known price, used for a market order's notional.
    """
    name = rules.symbol
    if not rules.active:
        return Refusal(RejectReason.INVALID_ORDER, f"{name} is not trading at the venue now")
    asked = to_decimal(quantity)
    if asked is None:
        return Refusal(RejectReason.INVALID_QUANTITY, f"quantity must be > 0, got {quantity}")
    # Down, never up: an order must not buy more than asked nor sell more than is held.
    amount = _floor(asked, rules.amount_step)
    if amount <= 0:
        return Refusal(
            RejectReason.INVALID_QUANTITY,
            f"quantity {quantity} is below {name}'s lot step {_show(rules.amount_step)}",
        )
    market = order_type is OrderType.MARKET
    low = (rules.market_min_amount if market else None) or rules.min_amount
    high = (rules.market_max_amount if market else None) or rules.max_amount
    if low is not None and amount < low:
        return Refusal(
            RejectReason.INVALID_QUANTITY,
            f"quantity {_show(amount)} is below {name}'s minimum order quantity {_show(low)}",
        )
    if high is not None and amount > high:
        return Refusal(
            RejectReason.INVALID_QUANTITY,
            f"quantity {_show(amount)} is above {name}'s maximum order quantity {_show(high)}",
        )
    limit: Decimal | None = None
    if not market:
        asked_price = to_decimal(price)
        if asked_price is None:
            return Refusal(RejectReason.INVALID_PRICE, f"limit price must be > 0, got {price}")
        # Towards the strategy's side: a buy never pays more, a sell never takes less.
        tick = rules.price_tick
        limit = _floor(asked_price, tick) if side is Side.BUY else _ceil(asked_price, tick)
        refusal = _price_refusal(rules, limit, price)
        if refusal is not None:
            return refusal
    notional_price = limit if limit is not None else to_decimal(reference_price)
    if notional_price is not None:
        notional = amount * notional_price
        if rules.min_notional is not None and notional < rules.min_notional:
            return Refusal(
                RejectReason.INVALID_QUANTITY,
                f"order value {_show(notional)} {rules.quote} is below {name}'s minimum "
                f"notional {_show(rules.min_notional)} {rules.quote}",
            )
        # Binance applies the maximum to limit orders only (NOTIONAL's applyMaxToMarket).
        if not market and rules.max_notional is not None and notional > rules.max_notional:
            return Refusal(
                RejectReason.INVALID_QUANTITY,
                f"order value {_show(notional)} {rules.quote} is above {name}'s maximum "
                f"notional {_show(rules.max_notional)} {rules.quote}",
            )
    return Prepared(quantity=amount, price=limit)


def _price_refusal(rules: MarketRules, limit: Decimal, asked: float) -> Refusal | None:
    name = rules.symbol
    if limit <= 0:
        return Refusal(
            RejectReason.INVALID_PRICE,
            f"limit price {asked} is below {name}'s price tick {_show(rules.price_tick)}",
        )
    if rules.min_price is not None and limit < rules.min_price:
        return Refusal(
            RejectReason.INVALID_PRICE,
            f"limit price {_show(limit)} is below {name}'s minimum price {_show(rules.min_price)}",
        )
    if rules.max_price is not None and limit > rules.max_price:
        return Refusal(
            RejectReason.INVALID_PRICE,
            f"limit price {_show(limit)} is above {name}'s maximum price {_show(rules.max_price)}",
        )
    return None
