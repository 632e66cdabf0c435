"""A local Binance spot market data server: combined kline streams and the klines REST API.

Speaks what the Binance provider reads, as documented for spot:
- `GET /stream?streams=<symbol>@kline_<interval>/...`: a websocket carrying
  `{"stream": <name>, "data": {"e": "kline", "E": ..., "s": ..., "k": {...}}}`.
  On connect it sends each symbol's kline in progress; on every step, each
  symbol's kline that closed (`"x": true`) and then the next kline in progress.
  Prices and volumes are decimal strings, as Binance sends them.
- `GET /api/v3/klines?symbol&interval[&startTime][&endTime][&limit]`: rows
  `[openTime, "o", "h", "l", "c", "v", closeTime, "q", n, "V", "Q", "0"]`, the
  kline in progress included, at most 1000 (default 500); only `endTime` gives
  the klines up to it, `startTime` those from it. An unknown symbol answers
  HTTP 400 `{"code": -1121, "msg": "Invalid symbol."}`.
- `GET /api/v3/time`: `{"serverTime": <the simulated clock>}`.
See the package docstring for the simulated clock and the fault scripts.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from kubetrade.runner.domain import Bar, interval_ms
from servers import Connection, FaultKind, SimMarket, parse_faults, serve_forever
from servers import standalone_arguments as _arguments

__all__ = ["BinanceMarket"]


class BinanceMarket(SimMarket):
    venue = "binance"

    def __init__(
        self, *, symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"), interval: str = "1m", **kw: Any
    ) -> None:
        super().__init__(symbols=symbols, step_ms=interval_ms(interval), **kw)
        self.interval = interval
        self._subscribed: dict[int, list[str]] = {}

    def subscribed(self, connection: int) -> list[str]:
        """The symbols connection number `connection` asked for, in its order."""
        return self._subscribed.get(connection, [])

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/time", self._time)

    # -- websocket ---------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        wanted = []
        for name in request.query.get("streams", "").split("/"):
            symbol, _, kind = name.partition("@")
            if kind == f"kline_{self.interval}" and symbol.upper() in self.bars:
                wanted.append(symbol.upper())
        ws, conn = await self.open_stream(request)
        self._subscribed[conn.number] = wanted
        first = self.steps
        try:
            for symbol in wanted:  # Binance pushes the kline in progress right away
                await ws.send_str(self._frame(self._in_progress(symbol), closed=False))
        except (ConnectionError, RuntimeError):
            return ws
        await self.serve(conn, first_step=first)
        return ws

    def _step_frames(self, conn: Connection, step: int) -> list[str]:
        closed = self.produced[step]
        frames = []
        for symbol in self._subscribed[conn.number]:
            bar = closed[symbol]
            frames.append(self._frame(bar, closed=True))
            # The next kline opens at the close: it is in progress until the next step.
            following = Bar(symbol, bar.time + self.step_ms, *(bar.close,) * 4, 0.0)
            frames.append(self._frame(following, closed=False))
        return frames

    def _frame(self, bar: Bar, *, closed: bool) -> str:
        end = bar.time + self.step_ms
        data = {
            "e": "kline",
            "E": end if closed else bar.time + 1,
            "s": bar.symbol,
            "k": {
                "t": bar.time,
                "T": end - 1,
                "s": bar.symbol,
                "i": self.interval,
                "f": 100,
                "L": 200,
                "o": f"{bar.open:.8f}",
                "c": f"{bar.close:.8f}",
                "h": f"{bar.high:.8f}",
                "l": f"{bar.low:.8f}",
                "v": f"{bar.volume:.8f}",
                "n": 101,
                "x": closed,
                "q": f"{bar.volume * bar.close:.8f}",
                "V": f"{bar.volume / 2:.8f}",
                "Q": f"{bar.volume * bar.close / 2:.8f}",
                "B": "0",
            },
        }
        return json.dumps({"stream": f"{bar.symbol.lower()}@kline_{self.interval}", "data": data})

    def _malformed_frames(self) -> list[str]:
        name = f"{self.symbols[0].lower()}@kline_{self.interval}"
        return [
            '{"stream": "' + name + '", "data": {"e": "kline", "k": {',  # cut short
            json.dumps({"stream": name, "data": {"e": "kline", "k": {"t": "soon", "x": True}}}),
            "not json at all",
        ]

    async def _on_fault(self, conn: Connection, fault: FaultKind) -> bool:
        if fault != "shutdown":
            return False
        await conn.ws.send_str(json.dumps({"event": {"e": "serverShutdown", "E": self.now}}))
        await conn.ws.close(code=1001, message=b"server shutdown")
        return True

    def _in_progress(self, symbol: str) -> Bar:
        last = self.bars[symbol][-1]
        return Bar(symbol, self.now, *(last.close,) * 4, 0.0)

    # -- REST --------------------------------------------------------------------------

    async def _klines(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = query.get("symbol", "")
        if symbol not in self.bars:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        if query.get("interval") != self.interval:
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        try:
            limit = min(1000, int(query.get("limit", 500)))
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
        except ValueError:
            return web.json_response(
                {"code": -1100, "msg": "Illegal characters found in a parameter."}, status=400
            )
        await asyncio.sleep(0)  # a network hop: let the stream move on meanwhile
        klines = [*self.bars[symbol], self._in_progress(symbol)]
        first = 0 if start is None else bisect.bisect_left(klines, start, key=_time)
        last = len(klines) if end is None else bisect.bisect_right(klines, end, key=_time)
        chosen = klines[first:last]
        chosen = chosen[:limit] if start is not None else chosen[-limit:]
        return web.json_response([self._row(bar) for bar in chosen])

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.now})

    def _row(self, bar: Bar) -> list[Any]:
        return [
            bar.time,
            f"{bar.open:.8f}",
            f"{bar.high:.8f}",
            f"{bar.low:.8f}",
            f"{bar.close:.8f}",
            f"{bar.volume:.8f}",
            bar.time + self.step_ms - 1,
            f"{bar.volume * bar.close:.8f}",
            101,
            f"{bar.volume / 2:.8f}",
            f"{bar.volume * bar.close / 2:.8f}",
            "0",
        ]


def _time(bar: Bar) -> int:
    return bar.time


def main() -> None:
    parser = _arguments(__doc__.splitlines()[0] if __doc__ else "binance market server")
    parser.add_argument("--interval", default="1m")
    args = parser.parse_args()
    market = BinanceMarket(
        symbols=args.symbols.split(","),
        interval=args.interval,
        period=args.period,
        history=args.history,
        faults=parse_faults(args.faults) if args.faults else (),
        lifetime=args.lifetime,
        heartbeat=args.heartbeat,
    )
    asyncio.run(serve_forever(market, args.port))


if __name__ == "__main__":
    main()
