"""Polygon.io stock aggregates over the stocks websocket, built up to the session's interval.

Wire facts this module relies on (Polygon.io / Massive documentation):
- `<ws>/stocks` greets with `[{"ev":"status","status":"connected",...}]`; the client
  sends `{"action":"auth","params":<key>}` and gets `auth_success` or `auth_failed`,
  then `{"action":"subscribe","params":"AM.AAPL,AM.MSFT"}`. Messages are JSON
  arrays of events.
- `AM` events are minute aggregates, `A` events second aggregates, each with
  `sym`, `s`/`e` (window start and end, ms), `o h l c v` and `av` (the day's
  accumulated volume). No trades in a window means no event.
- `GET /v2/aggs/ticker/{sym}/range/{mult}/{timespan}/{from}/{to}` returns `results`
  of `{t, o, h, l, c, v}` with `t` the window start, inclusive of both ends,
  paged through `next_url`; `GET /v3/reference/tickers/{sym}` answers 404 for an
  unknown ticker; `GET /v1/marketstatus/now` carries the server's clock.

A 1s session reads `A`; any session of whole minutes reads `AM` and aggregates
(aggregate.py says how and when a bar is delivered). Daily and weekly sessions
are refused: US stock days do not follow UTC days.

Polygon sends each minute's aggregates of every ticker before any of the next
minute's, so an aggregate of one ticker starting at t is the venue's clock for
all of them: any bucket that ended by t is complete, whether or not a quiet
ticker traded in it. The decoder closes such buckets and reports every symbol's
progress to t, so a quiet symbol's missing minutes are confirmed over REST
instead of holding the other symbols' bars back until it trades again.

A key refused at the handshake of the first connection stops the session with
a clear error (a wrong key, or a plan without websockets). A key that was
accepted earlier in the run and is refused later is retried with the normal
backoff (reconnect.CredentialsRefused), as is a REST 401 after that point.

The API key travels only in the auth message and in an Authorization header,
never in a URL, so no URL in an error or a log can reveal it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from yarl import URL

from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import Bar, datetime_to_ms
from kubetrade.runner.marketdata.aggregate import LiveAggregator, Part, aggregate
from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.connection import (
    FeedTimeouts,
    close_quietly,
    describe,
    open_websocket,
    receive_json,
)
from kubetrade.runner.marketdata.feed import (
    LiveFeed,
    MalformedFrame,
    Observation,
    Progress,
    checked_bar,
)
from kubetrade.runner.marketdata.http import RejectedRequest, get_json
from kubetrade.runner.marketdata.reconnect import (
    BackoffPolicy,
    CredentialsRefused,
    TransientError,
)
from kubetrade.runner.spec import PolygonConfig, SessionSpec

__all__ = ["DELAYED_WS", "REALTIME_WS", "REST", "PolygonVenue", "create"]

REALTIME_WS: Final = "wss://socket.polygon.io"
DELAYED_WS: Final = "wss://delayed.polygon.io"
REST: Final = "https://api.polygon.io"
_SECOND: Final = 1_000
_MINUTE: Final = 60_000
_DAY: Final = 86_400_000
_PAGE: Final = 50_000  # most base aggregates one request returns
_MAX_PAGES: Final = 1_000  # a next_url chain longer than this is a venue bug


def create(
    spec: SessionSpec, *, credentials: Credentials, timeouts: FeedTimeouts | None = None
) -> LiveFeed:
    """The provider for a session with `marketData.provider: polygon` (needs `api_key`)."""
    config = spec.market_data.parsed()
    assert isinstance(config, PolygonConfig)
    key = credentials.require("api_key")
    timeouts = timeouts or FeedTimeouts()  # no idle limit: a quiet stock sends nothing
    venue = PolygonVenue(
        symbols=spec.symbols,
        interval_ms=spec.interval_ms,
        ws_url=config.ws_url or (DELAYED_WS if config.feed == "delayed" else REALTIME_WS),
        rest_url=config.rest_url or REST,
        market=config.market,
        api_key=key,
        timeouts=timeouts,
    )
    return LiveFeed(
        venue=venue,
        symbols=spec.symbols,
        policy=BackoffPolicy.from_config(config),
        timeouts=timeouts,
    )


def stream_for(interval_ms: int) -> tuple[str, int, str]:
    """The channel, its aggregate length (ms) and REST timespan for a session interval."""
    if interval_ms == _SECOND:
        return "A", _SECOND, "second"
    if interval_ms % _MINUTE == 0 and interval_ms < _DAY:
        return "AM", _MINUTE, "minute"
    raise MarketDataError(
        f"polygon: a {interval_ms} ms interval is not supported: US stock trading days do not"
        " follow UTC days; use spec.interval 1s, or minutes and hours up to 12h"
    )


class PolygonVenue:
    name = "polygon"
    contiguous = False  # a minute without trades has no aggregate

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        interval_ms: int,
        ws_url: str,
        rest_url: str,
        market: str,
        api_key: str,
        timeouts: FeedTimeouts,
    ) -> None:
        self.channel, self.base_ms, self.timespan = stream_for(interval_ms)
        self.interval_ms = interval_ms
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.market = market
        self.timeouts = timeouts
        self._key = api_key
        self._symbols = {symbol.upper(): symbol for symbol in symbols}
        self._http: aiohttp.ClientSession | None = None
        self._accepted = False  # the websocket accepted the key once: a later refusal is retried

    # -- websocket ---------------------------------------------------------------------

    async def check(self) -> None:
        for ticker, symbol in self._symbols.items():
            try:
                await self._get(f"/v3/reference/tickers/{quote(ticker, safe='')}")
            except RejectedRequest as exc:
                if exc.status == 404:
                    raise MarketDataError(
                        f"polygon: unknown ticker {symbol!r} (HTTP 404 from the ticker"
                        " reference); check spec.symbols: stock tickers look like AAPL"
                    ) from None
                raise self._refusal(exc, symbol) from None

    async def connect(self) -> tuple[ClientConnection, AggregateDecoder]:
        ws = await open_websocket(
            f"{self.ws_url}/{self.market}", timeouts=self.timeouts, venue=self.name
        )
        try:
            await self._handshake(ws)
        except BaseException:
            await close_quietly(ws)
            raise
        return ws, AggregateDecoder(self._symbols, self.channel, self.interval_ms, self._scrub)

    async def _handshake(self, ws: ClientConnection) -> None:
        timeout, name, accepted = self.timeouts.open, self.name, self._accepted
        try:
            await _await_status(ws, "connected", within=timeout, scrub=self._scrub)
            await ws.send(json.dumps({"action": "auth", "params": self._key}))
            await _await_status(
                ws, "auth_success", within=timeout, scrub=self._scrub, accepted=accepted
            )
            self._accepted = True
            channels = ",".join(f"{self.channel}.{ticker}" for ticker in self._symbols)
            await ws.send(json.dumps({"action": "subscribe", "params": channels}))
        except ConnectionClosed as exc:
            raise TransientError(f"{name}: connection closed ({describe(exc)})") from None

    # -- REST --------------------------------------------------------------------------

    async def bars(self, symbol: str, *, start: int, end: int) -> list[Bar]:
        start = -(-start // self.interval_ms) * self.interval_ms  # whole buckets only
        if start >= end:
            return []
        parts = await self._aggregates(symbol, start, end - 1, sort="asc", enough=None)
        return [
            bar
            for bar in aggregate(parts, self.interval_ms)
            if start <= bar.time and bar.time + self.interval_ms <= end
        ]

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        # A bucket is whole once the venue's clock has passed its end.
        cutoff = min(end, await self._server_time() or end)
        cutoff -= cutoff % self.interval_ms
        # Nights, weekends and holidays have no bars: look back well beyond `count` bars.
        lookback = 3 * count * self.interval_ms + 5 * _DAY
        lookback += -lookback % self.interval_ms
        parts = await self._aggregates(
            symbol, cutoff - lookback, cutoff - 1, sort="desc", enough=count
        )
        bars = aggregate(reversed(parts), self.interval_ms)
        return bars[-count:]

    async def clock(self) -> int | None:
        return await self._server_time()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _aggregates(
        self, symbol: str, first: int, last: int, *, sort: str, enough: int | None
    ) -> list[Bar]:
        """Base aggregates with first <= t <= last in `sort` order, following next_url.

        With `enough`, stops once more than `enough` buckets are covered: the oldest
        of them may be partial, the newest `enough` are whole.
        """
        ticker = quote(symbol.upper(), safe="")
        path = f"/v2/aggs/ticker/{ticker}/range/1/{self.timespan}/{first}/{last}"
        params: dict[str, str | int] | None = {"adjusted": "true", "sort": sort, "limit": _PAGE}
        out: list[Bar] = []
        buckets: set[int] = set()
        for _ in range(_MAX_PAGES):
            try:
                body = await self._get(path, params)
            except RejectedRequest as exc:
                raise self._refusal(exc, symbol) from None
            rows = body.get("results") or [] if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise TransientError("polygon REST aggregates: unexpected answer")
            for row in rows:
                bar = self._row(row, symbol)
                out.append(bar)
                buckets.add(bar.time - bar.time % self.interval_ms)
            next_url = body.get("next_url")
            if not next_url or (enough is not None and len(buckets) > enough):
                break
            # Follow the page on our own base URL, so a proxy set as restUrl is kept.
            url = URL(str(next_url))
            path, params = url.raw_path + ("?" + url.raw_query_string if url.query else ""), None
        return out

    async def _server_time(self) -> int | None:
        """The venue's clock, or None when this server has none to read."""
        try:
            body = await self._get("/v1/marketstatus/now")
        except RejectedRequest:
            return None
        try:
            return datetime_to_ms(datetime.fromisoformat(str(body["serverTime"])))
        except (KeyError, TypeError, ValueError):
            return None

    async def _get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.timeouts.request)
            self._http = aiohttp.ClientSession(timeout=timeout)
        headers = {"Authorization": f"Bearer {self._key}"}
        return await get_json(
            self._http, self.rest_url + path, params=params, headers=headers, venue=self.name
        )

    def _row(self, row: Any, symbol: str) -> Bar:
        try:
            time = row["t"]
            if type(time) is not int:
                raise TypeError
            return checked_bar(symbol, time, row["o"], row["h"], row["l"], row["c"], row["v"])
        except (KeyError, TypeError, ValueError, MalformedFrame):
            raise TransientError("polygon REST aggregates: unreadable result") from None

    def _refusal(self, exc: RejectedRequest, symbol: str) -> Exception:
        body = exc.body if isinstance(exc.body, dict) else {}
        said = self._scrub(str(body.get("message") or body.get("error") or ""))[:200]
        if exc.status == 401 and self._accepted:
            return CredentialsRefused(
                f"polygon refused the API key it had accepted before (HTTP 401: {said!r})"
            )
        if exc.status == 401:
            return MarketDataError(
                f"polygon rejected the API key (HTTP 401: {said!r}); check the 'api_key'"
                " credential (Secret key api_key, or KUBETRADE_POLYGON_API_KEY locally)"
            )
        if exc.status == 403:
            return MarketDataError(
                f"polygon: the API key's plan does not include this data (HTTP 403: {said!r});"
                " check spec.marketData.config.feed or upgrade the plan"
            )
        return MarketDataError(
            f"polygon refused a request for {symbol!r} with HTTP {exc.status} ({said!r});"
            " check spec.symbols and spec.marketData.config.restUrl"
        )

    def _scrub(self, text: str) -> str:
        """`text` with the API key blanked, should a server ever echo it."""
        return text.replace(self._key, "***") if self._key else text


async def _await_status(
    ws: ClientConnection,
    wanted: str,
    *,
    within: float,
    scrub: Callable[[str], str],
    accepted: bool = False,
) -> None:
    """Read status events until `wanted`; fail on a refusal (see _check_status)."""
    while True:
        message = await receive_json(ws, within=within, venue="polygon")
        events = message if isinstance(message, list) else [message]
        for event in events:
            if isinstance(event, dict) and event.get("ev") == "status":
                if event.get("status") == wanted:
                    return
                _check_status(event, scrub, accepted=accepted)


def _check_status(
    event: dict[str, Any], scrub: Callable[[str], str], *, accepted: bool = True
) -> None:
    """Raise for a status event that ends the connection; ignore the others. `accepted`:
    the key was accepted before, so a refusal is the venue's passing trouble."""
    status = str(event.get("status", ""))
    said = scrub(str(event.get("message", "")))[:200]
    if status == "auth_failed" and accepted:
        raise CredentialsRefused(
            f"polygon refused the API key it had accepted before (auth_failed: {said!r})"
        )
    if status == "auth_failed":
        raise MarketDataError(
            f"polygon rejected the API key (auth_failed: {said!r}); check the 'api_key'"
            " credential (Secret key api_key, or KUBETRADE_POLYGON_API_KEY locally) and that"
            " the plan includes websockets for spec.marketData.config.feed"
        )
    if status == "error":
        raise MarketDataError(f"polygon refused the stream: {said!r}")
    if status in ("max_connections", "auth_timeout", "disconnected"):
        raise TransientError(f"polygon: {status} ({said})")


class AggregateDecoder:
    """Reads one connection's aggregate events into session bars (see aggregate.py).

    The newest aggregate start seen on the connection, of any ticker, is the
    venue's clock (see the module docstring): whenever it enters a new session
    bucket, every symbol's older buckets are closed and every symbol is reported
    as progressed to it.
    """

    def __init__(
        self, symbols: dict[str, str], channel: str, interval_ms: int, scrub: Callable[[str], str]
    ) -> None:
        self._symbols = symbols
        self._channel = channel
        self._scrub = scrub
        self._interval = interval_ms
        self._builders = {s: LiveAggregator(s, interval_ms) for s in symbols.values()}
        self._boundary: int | None = None  # start of the newest bucket the clock entered

    def __call__(self, frame: str | bytes) -> list[Observation]:
        try:
            message = json.loads(frame)
        except ValueError:
            raise MalformedFrame from None
        events = message if isinstance(message, list) else [message]
        parts: list[tuple[str, Part]] = []
        statuses: list[dict[str, Any]] = []
        for event in events:
            if not isinstance(event, dict) or "ev" not in event:
                raise MalformedFrame
            kind = event["ev"]
            if kind == self._channel:
                symbol = self._symbols.get(str(event.get("sym")))
                if symbol is not None:  # another ticker's event: not ours to read
                    parts.append((symbol, _part(event)))
            elif kind == "status":
                statuses.append(event)
        for status in statuses:
            _check_status(status, self._scrub)
        out: list[Observation] = []
        for symbol, part in parts:
            out.extend(self._builders[symbol].add(part))
        if parts:
            newest = max(part.start for _, part in parts)
            boundary = newest - newest % self._interval
            if self._boundary is None or boundary > self._boundary:
                self._boundary = boundary
                quiet_before = boundary - self._interval
                for symbol, builder in self._builders.items():
                    out.extend(builder.advance(boundary))
                    seen = builder.last_start
                    if seen is None or seen < quiet_before:
                        # Quiet in the last bucket: let the feed confirm it over REST.
                        # (One that traded there delivers that bucket itself.)
                        out.append(Progress(symbol, boundary))
        return out


def _part(event: dict[str, Any]) -> Part:
    try:
        start, end = event["s"], event["e"]
        if type(start) is not int or type(end) is not int or end <= start:
            raise MalformedFrame
        bar = checked_bar("", start, event["o"], event["h"], event["l"], event["c"], event["v"])
        day_volume = float(event["av"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise MalformedFrame from None
    return Part(start, end, bar.open, bar.high, bar.low, bar.close, bar.volume, day_volume)
