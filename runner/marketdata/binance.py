"""Binance spot klines: one combined websocket stream for every symbol, gaps filled over REST.

Wire facts this module relies on (Binance spot API documentation):
- `<ws>/stream?streams=<symbol>@kline_<interval>/...` carries every symbol on one
  connection; each message is `{"stream": ..., "data": {"e": "kline", "k": {...}}}`
  where `k.t` is the kline's open time, `k.x` tells whether it has closed, and
  the kline in progress is pushed every second or two; symbols in stream names
  are lowercase.
- The server pings every 20 s and drops a client that does not answer within a
  minute (websockets answers for us); it closes every connection after 24 hours
  and may announce a restart with a `serverShutdown` event: both just reconnect.
- `GET /api/v3/klines` returns rows `[openTime, open, high, low, close, volume,
  closeTime, ...]`, at most 1000 per request, the kline in progress included;
  `GET /api/v3/time` gives the server's clock, which decides which klines have
  closed; an unknown symbol is refused with code -1121.

Only closed klines reach the engine, with the kline's open time as bar time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
from websockets.asyncio.client import ClientConnection

from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.connection import FeedTimeouts, open_websocket
from kubetrade.runner.marketdata.feed import (
    Closed,
    LiveFeed,
    MalformedFrame,
    Observation,
    Progress,
    checked_bar,
)
from kubetrade.runner.marketdata.http import RejectedRequest, get_json
from kubetrade.runner.marketdata.reconnect import BackoffPolicy, TransientError
from kubetrade.runner.spec import BinanceMarketDataConfig, SessionSpec

__all__ = ["MAINNET", "TESTNET", "BinanceVenue", "create"]

MAINNET: Final = ("wss://stream.binance.com:9443", "https://api.binance.com")
TESTNET: Final = ("wss://stream.testnet.binance.vision", "https://testnet.binance.vision")
_PAGE: Final = 1000  # most klines one request returns
_MAX_STREAMS: Final = 1024  # most streams one connection may carry
_INVALID_SYMBOL: Final = -1121


def create(
    spec: SessionSpec, *, credentials: Credentials, timeouts: FeedTimeouts | None = None
) -> LiveFeed:
    """The provider for a session with `marketData.provider: binance` (no key needed)."""
    config = spec.market_data.parsed()
    assert isinstance(config, BinanceMarketDataConfig)
    ws_url, rest_url = TESTNET if config.use_testnet else MAINNET
    # A kline that has not changed for a minute means a stalled server: Binance pushes
    # the kline in progress every second or two.
    timeouts = timeouts or FeedTimeouts(idle=60.0)
    venue = BinanceVenue(
        symbols=spec.symbols,
        interval=spec.interval,
        interval_ms=spec.interval_ms,
        ws_url=config.ws_url or ws_url,
        rest_url=config.rest_url or rest_url,
        timeouts=timeouts,
    )
    return LiveFeed(
        venue=venue,
        symbols=spec.symbols,
        policy=BackoffPolicy.from_config(config),
        timeouts=timeouts,
    )


class BinanceVenue:
    name = "binance"
    contiguous = True  # Binance has a kline for every interval, trades or not

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        interval: str,
        interval_ms: int,
        ws_url: str,
        rest_url: str,
        timeouts: FeedTimeouts,
    ) -> None:
        if len(symbols) > _MAX_STREAMS:
            raise MarketDataError(
                f"binance: {len(symbols)} symbols exceed the {_MAX_STREAMS} streams one"
                " connection may carry; split the session"
            )
        self.interval = interval
        self.interval_ms = interval_ms
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.timeouts = timeouts
        # The session's spelling of each symbol, by Binance's (uppercase) spelling.
        self._symbols = {symbol.upper(): symbol for symbol in symbols}
        self._http: aiohttp.ClientSession | None = None

    # -- websocket ---------------------------------------------------------------------

    async def check(self) -> None:
        for symbol in self._symbols.values():
            await self._klines(symbol, limit=1)  # refuses an unknown symbol (-1121)

    async def connect(self) -> tuple[ClientConnection, KlineDecoder]:
        streams = "/".join(f"{s.lower()}@kline_{self.interval}" for s in self._symbols)
        url = f"{self.ws_url}/stream?streams={streams}"
        ws = await open_websocket(url, timeouts=self.timeouts, venue=self.name)
        return ws, KlineDecoder(self._symbols, self.interval)

    # -- REST --------------------------------------------------------------------------

    async def bars(self, symbol: str, *, start: int, end: int) -> list[Bar]:
        out: list[Bar] = []
        while start < end:
            rows = await self._klines(symbol, startTime=start, endTime=end - 1, limit=_PAGE)
            out.extend(bar for bar in map(self._row, rows, [symbol] * len(rows)) if bar.time < end)
            if len(rows) < _PAGE or not out:
                break
            start = out[-1].time + 1
        return out

    async def clock(self) -> int:
        body = await self._get("/api/v3/time", {})
        try:
            return int(body["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise TransientError("binance REST /api/v3/time: unexpected answer") from None

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        now = await self.clock()
        bars: list[Bar] = []
        before = end
        while len(bars) < count:
            # One more than needed: the kline in progress may be among them.
            limit = min(_PAGE, count - len(bars) + 1)
            rows = await self._klines(symbol, endTime=before - 1, limit=limit)
            page = [self._row(row, symbol) for row in rows]
            # A kline has closed once the server's clock has passed its end.
            bars = [b for b in page if b.time + self.interval_ms <= now] + bars
            if len(rows) < limit or not page:
                break
            before = page[0].time
        return bars[-count:]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _klines(self, symbol: str, **params: int) -> list[Any]:
        query: dict[str, str | int] = {"symbol": symbol.upper(), "interval": self.interval}
        query.update(params)
        try:
            rows = await self._get("/api/v3/klines", query)
        except RejectedRequest as exc:
            raise _refusal(exc, symbol) from None
        if not isinstance(rows, list):
            raise TransientError("binance REST /api/v3/klines: unexpected answer")
        return rows

    async def _get(self, path: str, params: dict[str, str | int]) -> Any:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.timeouts.request)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return await get_json(self._http, self.rest_url + path, params=params, venue=self.name)

    def _row(self, row: Any, symbol: str) -> Bar:
        try:
            return checked_bar(symbol, int(row[0]), row[1], row[2], row[3], row[4], row[5])
        except (TypeError, ValueError, IndexError, MalformedFrame):
            raise TransientError("binance REST /api/v3/klines: unreadable kline row") from None


class KlineDecoder:
    """Reads combined-stream kline messages into closed bars and progress marks."""

    def __init__(self, symbols: dict[str, str], interval: str) -> None:
        self._symbols = symbols
        self._interval = interval

    def __call__(self, frame: str | bytes) -> tuple[Observation, ...]:
        try:
            message = json.loads(frame)
            data = message.get("data", message)  # a raw (uncombined) stream is read alike
            event = data.get("e")
            if event == "kline":
                k = data["k"]
                symbol = self._symbols[k["s"]]
                time = k["t"]
                if type(time) is not int or k["i"] != self._interval:
                    raise MalformedFrame
                if k["x"] is True:
                    return (
                        Closed(checked_bar(symbol, time, k["o"], k["h"], k["l"], k["c"], k["v"])),
                    )
                return (Progress(symbol, time),)
        except (ValueError, AttributeError, KeyError, TypeError):
            raise MalformedFrame from None
        shutdown = message.get("event")
        if event == "serverShutdown" or (
            isinstance(shutdown, dict) and shutdown.get("e") == "serverShutdown"
        ):
            raise TransientError("binance announced a server shutdown")
        if event is None and "result" in message:  # the answer to a live (UN)SUBSCRIBE
            return ()
        if event is None:
            raise MalformedFrame
        return ()  # another stream's event: not ours to read


def _refusal(exc: RejectedRequest, symbol: str) -> MarketDataError:
    body = exc.body if isinstance(exc.body, dict) else {}
    code, message = body.get("code"), str(body.get("msg", ""))[:200]
    if code == _INVALID_SYMBOL:
        return MarketDataError(
            f"binance: unknown symbol {symbol!r} (Binance answered {code} {message!r});"
            " check spec.symbols: Binance spot symbols look like BTCUSDT, and the testnet"
            " lists fewer of them (spec.marketData.config.useTestnet)"
        )
    return MarketDataError(
        f"binance refused the klines request for {symbol!r} with HTTP {exc.status}"
        f" (code {code}: {message!r}); check spec.symbols, spec.interval and"
        " spec.marketData.config.restUrl"
    )
