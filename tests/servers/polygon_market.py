"""A local Polygon.io stocks server: the aggregates websocket and the REST calls a provider makes.

Speaks what the Polygon provider reads, as documented:
- `GET /stocks` (websocket): greets with
  `[{"ev":"status","status":"connected","message":"Connected Successfully"}]`;
  `{"action":"auth","params":<key>}` answers `auth_success`, or `auth_failed` and
  closes; `{"action":"subscribe","params":"AM.AAPL,AM.MSFT"}` (or `AM.*`) answers
  one `success` status per channel. Each step then sends one JSON array with an
  event per subscribed ticker that traded: `{"ev": "AM" | "A", "sym", "v", "av",
  "op", "vw", "o", "c", "h", "l", "a", "z", "s", "e"}`, where `av` is the UTC
  day's accumulated volume. A server runs minute steps (`AM`) or second steps (`A`).
- `GET /v2/aggs/ticker/{t}/range/{mult}/{timespan}/{from}/{to}` with `adjusted`,
  `sort`, `limit`: `{"ticker", "queryCount", "resultsCount", "adjusted", "status",
  "request_id", "results": [{"v","vw","o","c","h","l","t","n"}], "next_url"?}`;
  `from`/`to` are ms timestamps or dates, both inclusive; a longer answer than
  `limit` is paged through `next_url`.
- `GET /v3/reference/tickers/{t}`: the ticker, or 404 NOT_FOUND.
- `GET /v1/marketstatus/now`: the simulated clock as `serverTime` (RFC 3339).
REST wants the key as `Authorization: Bearer <key>` or `apiKey=<key>`, else 401.
`quiet_every=n` leaves out one step in n per ticker, as a minute without trades;
`thin={ticker: n}` lets that ticker trade on one step in n only, as a thinly
traded stock.
See the package docstring for the simulated clock and the fault scripts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web

from kubetrade.runner.domain import Bar
from servers import Connection, SimMarket, parse_faults, serve_forever
from servers import standalone_arguments as _arguments

__all__ = ["PolygonMarket"]

_UNITS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_DAY = 86_400_000


class PolygonMarket(SimMarket):
    venue = "polygon"

    def __init__(
        self,
        *,
        symbols: Sequence[str] = ("AAPL", "MSFT"),
        base: Literal["minute", "second"] = "minute",
        keys: Iterable[str] = ("test-key",),
        quiet_every: int | None = None,
        thin: dict[str, int] | None = None,
        **kw: Any,
    ) -> None:
        self.channel = "AM" if base == "minute" else "A"
        self.keys = set(keys)
        self.quiet_every = quiet_every
        self.thin = thin or {}
        self.day_volume: dict[tuple[str, int], float] = {}  # (ticker, start) -> av
        self._running_volume: dict[str, tuple[int, float]] = {}  # ticker -> (day, av)
        self._count = 0
        self._subscribed: dict[int, set[str]] = {}
        super().__init__(symbols=symbols, step_ms=_UNITS[base], **kw)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/stocks", self._stream)
        app.router.add_get(
            "/v2/aggs/ticker/{ticker}/range/{mult}/{timespan}/{frm}/{to}", self._aggs
        )
        app.router.add_get("/v3/reference/tickers/{ticker}", self._ticker)
        app.router.add_get("/v1/marketstatus/now", self._status)

    def _produce(self) -> dict[str, Bar]:
        closed = {}
        for index, symbol in enumerate(self.symbols):
            if self.quiet_every and (self._count + index) % self.quiet_every == 0:
                continue  # no trades in this window: no aggregate at all
            if symbol in self.thin and self._count % self.thin[symbol]:
                continue
            bar = closed[symbol] = self._walks[symbol].bar(symbol, self.now, 1.0)
            self.bars[symbol].append(bar)
            day, total = self._running_volume.get(symbol, (-1, 0.0))
            total = (total if day == self.now // _DAY else 0.0) + bar.volume
            self._running_volume[symbol] = (self.now // _DAY, total)
            self.day_volume[symbol, bar.time] = total
        self._count += 1
        self.now += self.step_ms
        return closed

    # -- websocket ---------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.open_stream(request)
        self._subscribed[conn.number] = set()
        try:
            await ws.send_str(_status("connected", "Connected Successfully"))
            message = await ws.receive(timeout=10)
            request_ = json.loads(message.data) if isinstance(message.data, str) else {}
            key = request_.get("params") if request_.get("action") == "auth" else None
            if key not in self.keys or conn.due("reject_auth"):
                await ws.send_str(_status("auth_failed", "authentication failed"))
                await ws.close()
                return ws
            await ws.send_str(_status("auth_success", "authenticated"))
        except (ConnectionError, RuntimeError, TimeoutError, ValueError, AttributeError):
            await ws.close()
            return ws
        await self.serve(conn, first_step=self.steps, on_text=self._on_text)
        return ws

    async def _on_text(self, conn: Connection, text: str) -> None:
        try:
            request = json.loads(text)
            action, params = request["action"], str(request["params"])
        except (ValueError, KeyError, TypeError):
            await conn.ws.send_str(_status("error", "invalid message"))
            return
        subscribed = self._subscribed[conn.number]
        replies = []
        for channel in filter(None, (p.strip() for p in params.split(","))):
            prefix, _, ticker = channel.partition(".")
            if prefix != self.channel:
                replies.append({"ev": "status", "status": "error", "message": f"{channel}?"})
                continue
            tickers = set(self.symbols) if ticker == "*" else {ticker}
            if action == "subscribe":
                subscribed |= tickers
                replies.append(_event("success", f"subscribed to: {channel}"))
            elif action == "unsubscribe":
                subscribed -= tickers
                replies.append(_event("success", f"unsubscribed to: {channel}"))
        await conn.ws.send_str(json.dumps(replies))

    def _step_frames(self, conn: Connection, step: int) -> list[str]:
        closed = self.produced[step]
        subscribed = self._subscribed[conn.number]
        events = [self._event(bar) for symbol, bar in closed.items() if symbol in subscribed]
        return [json.dumps(events)] if events else []

    def _event(self, bar: Bar) -> dict[str, Any]:
        average = round((bar.high + bar.low + bar.close) / 3, 4)
        return {
            "ev": self.channel,
            "sym": bar.symbol,
            "v": bar.volume,
            "av": self.day_volume[bar.symbol, bar.time],
            "op": self.bars[bar.symbol][0].open,
            "vw": average,
            "o": bar.open,
            "c": bar.close,
            "h": bar.high,
            "l": bar.low,
            "a": average,
            "z": 10,
            "s": bar.time,
            "e": bar.time + self.step_ms,
        }

    def _events_in(self, frame: str) -> int:
        return len(json.loads(frame))

    def _malformed_frames(self) -> list[str]:
        ticker = self.symbols[0]
        return [
            '[{"ev": "' + self.channel + '", "sym": "' + ticker + '", "o": 1',  # cut short
            json.dumps([{"ev": self.channel, "sym": ticker, "s": "later"}]),
            json.dumps({"no": "event"}),
        ]

    # -- REST --------------------------------------------------------------------------

    def _refused(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        key = header.removeprefix("Bearer ").strip() or request.query.get("apiKey", "")
        if key in self.keys:
            return None
        return _error(401, "API Key was not provided" if not key else "Unknown API Key")

    async def _aggs(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        info, query = request.match_info, request.query
        ticker, timespan = info["ticker"], info["timespan"]
        settings = dict(query)
        if "cursor" in query:  # a next_url: the first page's settings travel in the cursor
            settings.update(json.loads(base64.urlsafe_b64decode(query["cursor"])))
        try:
            size = int(info["mult"]) * _UNITS[timespan]
            first, last = _moment(info["frm"], end=False), _moment(info["to"], end=True)
            limit = min(50_000, int(settings.get("limit", 5000)))
        except (KeyError, ValueError):
            return _error(400, "bad request")
        if size % self.step_ms:
            return _error(400, "timespan finer than this server's aggregates")
        await asyncio.sleep(0)  # a network hop: let the stream move on meanwhile
        source = [b for b in self.bars.get(ticker, []) if first <= b.time <= last]
        results = _buckets(source, size)
        descending = settings.get("sort") == "desc"
        if descending:
            results.reverse()
        page = results[:limit]
        body: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(source),
            "resultsCount": len(page),
            "adjusted": settings.get("adjusted", "true") != "false",
            "status": "OK",
            "request_id": uuid.uuid4().hex,
            "count": len(page),
        }
        if page:
            body["results"] = page
        if len(results) > limit:
            edge = page[-1]["t"]
            start, end = (first, edge - 1) if descending else (edge + 1, last)
            cursor = base64.urlsafe_b64encode(
                json.dumps({k: settings[k] for k in ("sort", "limit") if k in settings}).encode()
            ).decode()
            body["next_url"] = (
                f"{self.http_url}/v2/aggs/ticker/{ticker}/range/{info['mult']}/{timespan}"
                f"/{start}/{end}?cursor={cursor}"
            )
        return web.json_response(body)

    async def _ticker(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        ticker = request.match_info["ticker"]
        if ticker not in self.bars:
            body = {"status": "NOT_FOUND", "request_id": uuid.uuid4().hex}
            body["message"] = "Ticker not found."
            return web.json_response(body, status=404)
        details = {
            "ticker": ticker,
            "name": f"{ticker} Inc.",
            "market": "stocks",
            "locale": "us",
            "primary_exchange": "XNAS",
            "type": "CS",
            "active": True,
            "currency_name": "usd",
        }
        return web.json_response(
            {"request_id": uuid.uuid4().hex, "results": details, "status": "OK"}
        )

    async def _status(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        moment = datetime.fromtimestamp(self.now // 1000, tz=UTC)
        with_zone = moment.astimezone(ZoneInfo("America/New_York"))
        return web.json_response(
            {
                "market": "open",
                "serverTime": with_zone.isoformat(),
                "earlyHours": False,
                "afterHours": False,
                "exchanges": {"nyse": "open", "nasdaq": "open", "otc": "open"},
                "currencies": {"fx": "open", "crypto": "open"},
            }
        )


def _error(status: int, said: str) -> web.Response:
    body = {"status": "ERROR", "request_id": uuid.uuid4().hex, "error": said}
    return web.json_response(body, status=status)


def _status(status: str, message: str) -> str:
    return json.dumps([_event(status, message)])


def _event(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def _moment(text: str, *, end: bool) -> int:
    """A path's from/to: epoch ms, or a date (its first or last millisecond)."""
    if text.isdigit():
        return int(text)
    day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    start = int(day.timestamp() * 1000)
    return start + _DAY - 1 if end else start


def _buckets(bars: list[Bar], size: int) -> list[dict[str, Any]]:
    """Aggregates of `size` ms, epoch-aligned, from base bars oldest first."""
    out: list[dict[str, Any]] = []
    for bar in bars:
        start = bar.time - bar.time % size
        if out and out[-1]["t"] == start:
            row = out[-1]
            row["h"], row["l"] = max(row["h"], bar.high), min(row["l"], bar.low)
            row["c"], row["v"], row["n"] = bar.close, row["v"] + bar.volume, row["n"] + 10
        else:
            row = {"t": start, "o": bar.open, "h": bar.high, "l": bar.low, "c": bar.close}
            row.update(v=bar.volume, vw=bar.close, n=10)
            out.append(row)
    return out


def main() -> None:
    parser = _arguments(__doc__.splitlines()[0] if __doc__ else "polygon market server")
    parser.add_argument("--base", choices=("minute", "second"), default="minute")
    parser.add_argument("--keys", default="test-key", help="comma-separated valid API keys")
    parser.add_argument("--quiet-every", type=int, help="leave out one step in N per ticker")
    args = parser.parse_args()
    market = PolygonMarket(
        symbols=args.symbols.split(","),
        base=args.base,
        keys=args.keys.split(","),
        quiet_every=args.quiet_every,
        period=args.period,
        history=args.history,
        faults=parse_faults(args.faults) if args.faults else (),
        lifetime=args.lifetime,
        heartbeat=args.heartbeat,
    )
    asyncio.run(serve_forever(market, args.port))


if __name__ == "__main__":
    main()
