"""Which Interactive Brokers contract a session symbol means, and its trading rules.

A session symbol names a stock (`AAPL`, `BRK.B`); it is looked up with
reqContractDetails at the configured routing exchange (SMART by default) and
currency, once per symbol. The answer carries the contract id and the rules IB
enforces on orders: the price tick and the size increment. Checking and
rounding against them here turns what IB would reject after a round trip
into a clear refusal before sending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from ib_async import IB, Contract, RequestError, Stock

from kubetrade.runner.domain import Side


class UnknownSymbol(Exception):
    """IB has no single stock for this symbol at this exchange and currency."""


def ib_symbol(symbol: str) -> str:
    # IB writes share classes with a space ("BRK B"); sessions allow no spaces.
    return symbol.replace(".", " ")


def session_symbol(symbol: str) -> str:
    return symbol.replace(" ", ".")


def _usable(value: float) -> bool:
    # IB sends "unset" (0 or DBL_MAX) when a rule does not apply.
    return math.isfinite(value) and 0 < value < 1e300


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str  # the session's symbol
    contract: Contract  # qualified: conId set
    min_tick: float = 0.0
    size_increment: float = 0.0
    min_size: float = 0.0

    def limit_price(self, price: float, side: Side) -> float:
        """The price on the tick grid, never worse for the order than asked."""
        if not _usable(self.min_tick):
            return price
        tick = Decimal(str(self.min_tick))
        steps = (Decimal(str(price)) / tick).to_integral_value(
            ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
        )
        return float(steps * tick)

    def quantity_problem(self, quantity: float) -> str | None:
        """Why IB would refuse this quantity, or None."""
        if _usable(self.min_size) and quantity < self.min_size:
            return f"quantity {quantity:g} is below {self.symbol}'s minimum size {self.min_size:g}"
        if _usable(self.size_increment):
            steps = Decimal(str(quantity)) / Decimal(str(self.size_increment))
            if steps != steps.to_integral_value():
                return (
                    f"quantity {quantity:g} is not a multiple of {self.symbol}'s size "
                    f"increment {self.size_increment:g} at Interactive Brokers"
                )
        return None


@dataclass(slots=True)
class Contracts:
    """Looks symbols up once per session and remembers the answers."""

    ib: IB
    exchange: str
    currency: str
    _known: dict[str, Instrument] = field(default_factory=dict)

    async def resolve(self, symbol: str) -> Instrument:
        known = self._known.get(symbol)
        if known is not None:
            return known
        where = f"on {self.exchange} in {self.currency}"
        query = Stock(ib_symbol(symbol), self.exchange, self.currency)
        try:
            details: list[Any] = await self.ib.reqContractDetailsAsync(query)
        except RequestError as exc:
            raise UnknownSymbol(
                f"Interactive Brokers has no stock {symbol!r} {where} "
                f"(error {exc.code}: {exc.message})"
            ) from None
        if not details:
            raise UnknownSymbol(f"Interactive Brokers has no stock {symbol!r} {where}")
        if len(details) > 1:
            venues = sorted({d.contract.primaryExchange for d in details})
            raise UnknownSymbol(
                f"{symbol!r} {where} matches {len(details)} stocks (primary exchanges "
                f"{', '.join(venues)}); set spec.trading.config.exchange to the one to trade"
            )
        contract = details[0].contract
        # Route through the configured exchange even where IB answers with a listing.
        contract.exchange = self.exchange
        instrument = Instrument(
            symbol=symbol,
            contract=contract,
            min_tick=float(details[0].minTick or 0),
            size_increment=float(details[0].sizeIncrement or 0),
            min_size=float(details[0].minSize or 0),
        )
        self._known[symbol] = instrument
        return instrument
