"""One ccxt exchange client, as the broker uses it: requests classified, retried when safe.

Every request goes through `once` (a single attempt) or `read` (repeated with
backoff while the failure is transient, for requests that are safe to repeat:
queries and cancels). Sending an order is never done through `read`; the
broker decides what a lost answer means for an order (see broker.py).
"""

from __future__ import annotations

import logging
from typing import Any

import ccxt.async_support as ccxt

from kubetrade.runner.brokers.ccxt.errors import (
    Backoff,
    ClockSkew,
    Redactor,
    Transient,
    VenueError,
    classify,
    retry_after_seconds,
)
from kubetrade.runner.brokers.ccxt.venue import rest_endpoint
from kubetrade.runner.brokers.venue_rules import MarketRules

log = logging.getLogger("kubetrade.brokers.ccxt")


class VenueClient:
    def __init__(self, exchange: Any, *, name: str, redactor: Redactor, backoff: Backoff) -> None:
        self.exchange = exchange
        self.name = name  # the provider, for messages
        self.backoff = backoff
        self._redactor = redactor
        self._rules: dict[str, MarketRules] = {}

    @property
    def endpoint(self) -> str:
        return rest_endpoint(self.exchange)

    async def close(self) -> None:
        await self.exchange.close()

    # -- requests ----------------------------------------------------------------

    async def once(self, method: str, *args: Any) -> Any:
        """One request; its failure comes out classified and redacted, never chained."""
        exchange = self.exchange
        try:
            return await getattr(exchange, method)(*args)
        except ccxt.BaseError as exc:
            retry_after = None
            if isinstance(exc, ccxt.DDoSProtection):
                retry_after = retry_after_seconds(exchange.last_response_headers)
            last_body = exchange.last_http_response
            raise classify(
                exc,
                self._redactor,
                retry_after=retry_after,
                last_body=last_body if isinstance(last_body, str) else "",
            ) from None

    async def read(self, what: str, method: str, *args: Any) -> Any:
        """A request that is safe to repeat, retried with backoff while the failure is transient."""
        for attempt in range(1, self.backoff.attempts + 1):
            try:
                return await self.once(method, *args)
            except Transient as exc:
                if attempt == self.backoff.attempts:
                    raise
                log.info("%s: could not %s (attempt %d): %s", self.name, what, attempt, exc)
                await self.pause(attempt, exc)
        raise AssertionError("unreachable")

    async def pause(self, attempt: int, exc: VenueError) -> None:
        """Wait before attempt `attempt + 1`; first re-read the venue's clock if it was off."""
        if isinstance(exc, ClockSkew):
            await self.sync_clock()
        await self.backoff.sleep(attempt, exc)

    async def sync_clock(self) -> None:
        """Sign with the venue's clock: Binance refuses timestamps outside recvWindow (-1021)."""
        exchange = self.exchange
        if not exchange.has.get("fetchTime") or "timeDifference" not in exchange.options:
            return  # the exchange keeps no offset of its own to correct
        before = exchange.milliseconds()
        server_time = int(await self.read("read the venue's clock", "fetch_time"))
        skew = (before + exchange.milliseconds()) // 2 - server_time
        exchange.options["timeDifference"] = skew
        if abs(skew) > 1000:
            log.warning(
                "%s: this machine's clock is %d ms off the venue's; signing with the venue's time",
                self.name,
                skew,
            )

    # -- markets (loaded once, by the broker's connect) ------------------------------

    def rules_for(self, symbol: str) -> MarketRules | None:
        """The trading rules of the spot market a session symbol names, if there is one."""
        rules = self._rules.get(symbol)
        if rules is None:
            market = self._market(symbol)
            if market is not None:
                mode = int(self.exchange.precisionMode)
                rules = self._rules[symbol] = MarketRules.from_ccxt(
                    symbol, market, precision_mode=mode
                )
        return rules

    def has_market(self, venue_symbol: str) -> bool:
        return venue_symbol in (self.exchange.markets or {})

    def quoted_markets(self, quote: str) -> list[str]:
        """Every active spot market in the quote asset, by the venue's id."""
        markets = (self.exchange.markets or {}).values()
        return sorted(
            str(m["id"])
            for m in markets
            if m.get("spot") and m.get("quote") == quote and m.get("active") is not False
        )

    def _market(self, symbol: str) -> dict[str, Any] | None:
        """By ccxt symbol (BTC/USDT) or by the venue's id (BTCUSDT, as sessions name them)."""
        markets: dict[str, Any] = self.exchange.markets or {}
        if symbol in markets:
            return dict(markets[symbol])
        candidates = (self.exchange.markets_by_id or {}).get(symbol) or []
        spot = [m for m in candidates if m.get("spot", True)]
        return dict(spot[0]) if spot else None
