"""The account at a ccxt venue in the engine's terms: cash, positions, fees in one currency.

The engine's ledger keeps a single cash currency, the quote asset (USDT by
default). Cash is that asset's balance; a position is the balance of a
market's base asset. A fee charged in the base asset (Binance takes a buy's
commission out of the coins bought) is valued at the trade's price and comes
out of the position, as at the venue; a fee in any other asset (BNB on
Binance) is converted at that asset's price and counted against cash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kubetrade.runner.brokers.base import BrokerError
from kubetrade.runner.brokers.ccxt.client import VenueClient
from kubetrade.runner.brokers.ccxt.errors import VenueError
from kubetrade.runner.brokers.ccxt.orders import trade_fees
from kubetrade.runner.brokers.venue_rules import MarketRules
from kubetrade.runner.domain import AccountInfo, Position

log = logging.getLogger("kubetrade.brokers.ccxt")


def check_can_trade(balance: dict[str, Any], name: str) -> None:
    info = balance.get("info")
    if isinstance(info, dict) and info.get("canTrade") is False:
        raise BrokerError(f"{name}: the account may not trade (canTrade is false)")


def quote_asset(client: VenueClient, configured: str | None, symbols: Sequence[str]) -> str:
    """The configured quote asset, else the one the session's markets share, else USDT."""
    if configured:
        return configured
    quotes = {r.quote for s in symbols if (r := client.rules_for(s)) is not None}
    return quotes.pop() if len(quotes) == 1 else "USDT"


async def read_account(
    client: VenueClient,
    balance: dict[str, Any],
    *,
    quote: str,
    symbols: Sequence[str],
    precision: int,
    now: int,
) -> tuple[AccountInfo, dict[str, Position]]:
    """Cash and positions from a ccxt balance.

    Positions are the base assets of the session's symbols; without them
    (a factory that does not pass them), of every market in the quote asset.
    """
    totals: dict[str, Any] = balance.get("total") or {}
    held: dict[str, tuple[MarketRules, float]] = {}
    for symbol in symbols or client.quoted_markets(quote):
        rules = client.rules_for(symbol)
        amount = float(totals.get(rules.base) or 0.0) if rules is not None else 0.0
        if rules is not None and amount > 0:
            held[symbol] = (rules, round(amount, precision))
    prices = await _prices(client, [rules.venue_symbol for rules, _ in held.values()])
    positions = {
        symbol: Position(
            symbol=symbol,
            quantity=amount,
            # The cost basis is unknown: the price now, so PnL counts from the session's start.
            average_cost=prices.get(rules.venue_symbol, 0.0),
            open_time=now,
        )
        for symbol, (rules, amount) in held.items()
    }
    cash = float(totals.get(quote) or 0.0)
    free = float((balance.get("free") or {}).get(quote) or 0.0)
    value = sum(p.quantity * p.average_cost for p in positions.values())
    account = AccountInfo(
        balance=cash,
        equity=cash + value,
        buying_power=free,
        realized_pnl=0.0,
        unrealized_pnl=0.0,
        total_fees=0.0,
    )
    return account, positions


async def _prices(client: VenueClient, venue_symbols: list[str]) -> dict[str, float]:
    if not venue_symbols:
        return {}
    try:
        tickers = await client.read("read prices", "fetch_tickers", venue_symbols)
    except VenueError as exc:
        log.warning("%s: no prices for the held assets, cost basis unknown: %s", client.name, exc)
        return {}
    return {s: float(t.get("last") or t.get("close") or 0.0) for s, t in tickers.items()}


class FeeConverter:
    """A trade's fees in the quote asset, pricing a foreign fee asset at most once per bar."""

    def __init__(self, client: VenueClient) -> None:
        self._client = client
        self._rates: dict[tuple[str, str], tuple[int, float | None]] = {}

    async def in_quote(
        self, trade: dict[str, Any], rules: MarketRules, now: int
    ) -> tuple[float, float]:
        """The trade's fees valued in the quote asset, and the part of them the venue took
        in the base asset, in its units (it comes out of the position, not the cash)."""
        total = base = 0.0
        for currency, cost in trade_fees(trade):
            if currency == rules.quote:
                total += cost
            elif currency == rules.base:
                total += cost * float(trade["price"])
                base += cost
            else:
                rate = await self._rate(currency, rules.quote, now)
                if rate is None:
                    log.warning(
                        "%s: no %s/%s price; a fee of %g %s is not counted",
                        self._client.name,
                        currency,
                        rules.quote,
                        cost,
                        currency,
                    )
                else:
                    total += cost * rate
        return total, base

    async def _rate(self, currency: str, quote: str, now: int) -> float | None:
        cached = self._rates.get((currency, quote))
        if cached is not None and cached[0] == now:
            return cached[1]
        rate: float | None = None
        for symbol, invert in ((f"{currency}/{quote}", False), (f"{quote}/{currency}", True)):
            if not self._client.has_market(symbol):
                continue
            try:
                ticker = await self._client.read("price a fee currency", "fetch_ticker", symbol)
            except VenueError as exc:
                log.warning("%s: cannot price %s: %s", self._client.name, currency, exc)
                break
            last = ticker.get("last") or ticker.get("close")
            if last:
                rate = 1 / float(last) if invert else float(last)
            break
        self._rates[(currency, quote)] = (now, rate)
        return rate
