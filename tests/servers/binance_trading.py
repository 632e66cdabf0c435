"""A local Binance spot REST server for tests, faithful where a client can tell.

It speaks the subset of the spot API a trading client uses, with Binance's
paths, parameters, JSON shapes, error codes and messages:

  GET    /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo, /api/v3/klines,
         /api/v3/ticker/24hr
  GET    /api/v3/account, /api/v3/openOrders, /api/v3/myTrades   (SIGNED)
  POST   /api/v3/order; GET and DELETE /api/v3/order;
  DELETE /api/v3/openOrders                                       (SIGNED)

SIGNED requests carry the key in X-MBX-APIKEY and an HMAC-SHA256 of the query
string followed by the body, keyed by the secret, as `signature`; `timestamp`
must fall inside `recvWindow` (at most 60000 ms) and no more than 1 s ahead of
the server's clock. A client order id may be reused only once no open order
has it; otherwise the order is refused with -2010 "Duplicate order sent.".
Orders are checked against PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE and
NOTIONAL, and against the account's free balance.

Execution is driven by the test: market orders fill at once at the market's
price (optionally in several trades, or only up to a liquidity cap, after
which they expire); limit orders fill at once if marketable, else rest until
`set_price` crosses them or `fill` fills part of them. Commission is charged
in the asset received, like Binance's default, or in `commission_asset`
(BNB-style) when the account holds enough of it.

Faults for a test to inject: an error status (429 with Retry-After, 5xx, any
Binance error), a hang (no answer until the client gives up) and a dropped
connection, each either before the request is handled or after, the last
being "the order was created but the answer never came". Every request is
recorded, and every order request separately, so tests can count them.

The server runs on 127.0.0.1 in a thread of its own, so the process under
test may be this one or a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

Params = dict[str, str]
Answer = tuple[int, Any]  # HTTP status, JSON body

_EIGHT = Decimal("0.00000001")
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9\-_.:/]{1,36}$")
_OPEN = ("NEW", "PARTIALLY_FILLED")


def s8(value: Decimal) -> str:
    """Binance's number format: a string with eight decimals."""
    return f"{value.quantize(_EIGHT):f}"


def _error(status: int, code: int, msg: str) -> Answer:
    return status, {"code": code, "msg": msg}


def _mandatory(name: str) -> Answer:
    return _error(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _on_grid(value: Decimal, low: Decimal, step: Decimal) -> bool:
    return step == 0 or (value - low) % step == 0


@dataclass
class Market:
    symbol: str
    base: str
    quote: str
    price: Decimal
    step: Decimal = Decimal("0.00001")
    tick: Decimal = Decimal("0.01")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    market_max_qty: Decimal = Decimal("100")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    status: str = "TRADING"
    liquidity: Decimal | None = None  # market orders fill at most this much, then expire
    fill_parts: int = 1  # trades a market order is split into

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": s8(self.min_price),
                    "maxPrice": s8(self.max_price),
                    "tickSize": s8(self.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": s8(self.min_qty),
                    "maxQty": s8(self.max_qty),
                    "stepSize": s8(self.step),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": s8(Decimal(0)),
                    "maxQty": s8(self.market_max_qty),
                    "stepSize": s8(Decimal(0)),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": s8(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": s8(self.max_notional),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


@dataclass
class VenueOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    quantity: Decimal
    time: int
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    status: str = "NEW"
    update_time: int = 0
    resting: bool = False  # its funds are set aside (locked) until it fills or is cancelled

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed

    def json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": s8(self.price),
            "origQty": s8(self.quantity),
            "executedQty": s8(self.executed),
            "cummulativeQuoteQty": s8(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": s8(Decimal(0)),
            "icebergQty": s8(Decimal(0)),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": s8(Decimal(0)),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass
class Trade:
    trade_id: int
    order: VenueOrder
    price: Decimal
    quantity: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    maker: bool

    def json(self) -> dict[str, Any]:
        return {
            "symbol": self.order.symbol,
            "id": self.trade_id,
            "orderId": self.order.order_id,
            "orderListId": -1,
            "price": s8(self.price),
            "qty": s8(self.quantity),
            "quoteQty": s8(self.price * self.quantity),
            "commission": s8(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.order.side == "BUY",
            "isMaker": self.maker,
            "isBestMatch": True,
        }

    def fill_json(self) -> dict[str, Any]:
        """The entry in a FULL order answer's `fills`."""
        return {
            "price": s8(self.price),
            "qty": s8(self.quantity),
            "commission": s8(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }


@dataclass
class Fault:
    method: str
    path: str
    kind: str  # "status", "hang" or "drop"
    times: int = 1
    status: int = 500
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    retry_after: int | None = None
    after: bool = False  # hang/drop after handling the request (e.g. the order exists)
    seconds: float = 30.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    params: Params
    status: int  # 0 when no answer was sent


@dataclass(frozen=True)
class OrderRequest:
    """A POST /api/v3/order that passed authentication, and what became of it."""

    params: Params
    outcome: str  # the new order's status, or the error's code


@dataclass
class _Account:
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)

    def move(self, asset: str, *, free: Decimal = Decimal(0), locked: Decimal = Decimal(0)) -> None:
        self.free[asset] = self.free.get(asset, Decimal(0)) + free
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + locked


class BinanceTradingServer:
    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        markets: list[Market],
        balances: dict[str, Decimal | str | float],
        commission_rate: Decimal = Decimal("0.001"),
        commission_asset: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.markets = {m.symbol: m for m in markets}
        self.commission_rate = commission_rate
        self.commission_asset = commission_asset
        self.clock_offset_ms = 0  # the server's clock minus the real one
        self.account = _Account(free={a: Decimal(str(v)) for a, v in balances.items()})
        self.orders: list[VenueOrder] = []
        self.trades: list[Trade] = []
        self.order_requests: list[OrderRequest] = []
        self.requests: list[Received] = []
        self.klines: dict[str, list[list[Any]]] = {}
        self._faults: list[Fault] = []
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._port = 0
        self._routes: dict[tuple[str, str], tuple[Callable[[Params], Answer], bool]] = {
            ("GET", "/api/v3/ping"): (lambda p: (200, {}), False),
            ("GET", "/api/v3/time"): (lambda p: (200, {"serverTime": self.now()}), False),
            ("GET", "/api/v3/exchangeInfo"): (self._exchange_info, False),
            ("GET", "/api/v3/klines"): (self._klines, False),
            ("GET", "/api/v3/ticker/24hr"): (self._ticker, False),
            ("GET", "/api/v3/account"): (self._account_info, True),
            ("POST", "/api/v3/order"): (self._new_order, True),
            ("GET", "/api/v3/order"): (self._query_order, True),
            ("DELETE", "/api/v3/order"): (self._cancel_order, True),
            ("GET", "/api/v3/openOrders"): (self._open_orders, True),
            ("DELETE", "/api/v3/openOrders"): (self._cancel_open_orders, True),
            ("GET", "/api/v3/myTrades"): (self._my_trades, True),
        }

    # -- running -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> BinanceTradingServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self._closing = asyncio.Event()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="binance-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Binance test server did not start")

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return

        async def shutdown() -> None:
            assert self._closing is not None
            self._closing.set()  # hanging handlers give up at once
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    # -- what a test controls -------------------------------------------------------

    def now(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int,
        code: int = -1001,
        msg: str = "Internal error; unable to process your request. Please try again.",
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` such requests with an error, unhandled."""
        with self._lock:
            self._faults.append(
                Fault(method, path, "status", times, status, code, msg, retry_after)
            )

    def hang(
        self, method: str, path: str, *, after: bool, seconds: float = 30.0, times: int = 1
    ) -> None:
        """Send no answer for `seconds`; with after=True the request is handled first."""
        with self._lock:
            self._faults.append(Fault(method, path, "hang", times, after=after, seconds=seconds))

    def drop(self, method: str, path: str, *, after: bool, times: int = 1) -> None:
        """Close the connection without an answer; with after=True, handle the request first."""
        with self._lock:
            self._faults.append(Fault(method, path, "drop", times, after=after))

    def set_price(self, symbol: str, price: Decimal | str | float) -> None:
        """Move the market; resting limit orders it crosses fill at their limit (as makers)."""
        with self._lock:
            market = self.markets[symbol]
            market.price = Decimal(str(price))
            for order in list(self.orders):
                if order.symbol != symbol or order.status not in _OPEN:
                    continue
                crossed = (order.side == "BUY" and market.price <= order.price) or (
                    order.side == "SELL" and market.price >= order.price
                )
                if crossed:
                    self._execute(order, order.remaining, order.price, maker=True)

    def fill(self, client_order_id: str, quantity: Decimal | str | float) -> None:
        """Fill part (or the rest) of a resting order at its limit price."""
        with self._lock:
            order = self._find(None, client_order_id)
            assert order is not None and order.status in _OPEN, client_order_id
            self._execute(order, min(Decimal(str(quantity)), order.remaining), order.price, True)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked)."""
        with self._lock:
            return (
                self.account.free.get(asset, Decimal(0)),
                self.account.locked.get(asset, Decimal(0)),
            )

    def orders_with(self, client_order_id: str) -> list[VenueOrder]:
        with self._lock:
            return [o for o in self.orders if o.client_order_id == client_order_id]

    # -- HTTP ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        query = request.rel_url.raw_query_string
        body = await request.text()
        params: Params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        route = self._routes.get((method, path))
        if route is None:
            return web.Response(status=404, text="Not Found")
        handler, signed = route
        fault = self._take_fault(method, path)
        if fault is not None and fault.kind == "status":
            self._record(method, path, params, fault.status)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            return self._json(fault.status, {"code": fault.code, "msg": fault.msg}, headers)
        if fault is not None and not fault.after:
            return await self._no_answer(request, fault, method, path, params)
        answer = self._authenticate(request, query, body, params) if signed else None
        if answer is None:
            with self._lock:
                answer = handler(params)
        self._record(method, path, params, answer[0])
        if fault is not None:
            return await self._no_answer(request, fault, method, path, params)
        return self._json(*answer)

    async def _no_answer(
        self, request: web.Request, fault: Fault, method: str, path: str, params: Params
    ) -> web.StreamResponse:
        if not fault.after:
            self._record(method, path, params, 0)
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches anyone
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), fault.seconds)
        return self._json(504, {"code": -1007, "msg": "Timeout waiting for response."})

    @staticmethod
    def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            text=json.dumps(payload),
            content_type="application/json",
            headers=headers,
        )

    def _record(self, method: str, path: str, params: Params, status: int) -> None:
        with self._lock:
            self.requests.append(Received(method, path, params, status))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.path == path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _authenticate(
        self, request: web.Request, query: str, body: str, params: Params
    ) -> Answer | None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            return _error(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signature = params.get("signature")
        if not signature:
            return _mandatory("signature")
        # totalParams: the query string, then the body, each without the signature.
        payload = _unsigned(query) + _unsigned(body)
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
            return _error(400, -1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            return _mandatory("timestamp")
        if recv_window > 60_000:
            return _error(400, -1131, "recvWindow must be less than 60000")
        now = self.now()
        if timestamp >= now + 1000:
            return _error(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            return _error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return None

    # -- public endpoints --------------------------------------------------------------

    def _exchange_info(self, params: Params) -> Answer:
        wanted = set(json.loads(params["symbols"])) if "symbols" in params else None
        if "symbol" in params:
            wanted = {params["symbol"]}
        symbols = [m.info() for m in self.markets.values() if wanted is None or m.symbol in wanted]
        if wanted and not symbols:
            return _error(400, -1121, "Invalid symbol.")
        return 200, {
            "timezone": "UTC",
            "serverTime": self.now(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _ticker(self, params: Params) -> Answer:
        def one(m: Market) -> dict[str, Any]:
            p, now = s8(m.price), self.now()
            return {
                "symbol": m.symbol,
                "priceChange": s8(Decimal(0)),
                "priceChangePercent": "0.000",
                "weightedAvgPrice": p,
                "prevClosePrice": p,
                "lastPrice": p,
                "lastQty": s8(Decimal(1)),
                "bidPrice": p,
                "bidQty": s8(Decimal(1)),
                "askPrice": p,
                "askQty": s8(Decimal(1)),
                "openPrice": p,
                "highPrice": p,
                "lowPrice": p,
                "volume": s8(Decimal(0)),
                "quoteVolume": s8(Decimal(0)),
                "openTime": now - 86_400_000,
                "closeTime": now,
                "firstId": -1,
                "lastId": -1,
                "count": 0,
            }

        if "symbol" in params:
            market = self.markets.get(params["symbol"])
            return (200, one(market)) if market else _error(400, -1121, "Invalid symbol.")
        names = json.loads(params["symbols"]) if "symbols" in params else list(self.markets)
        if any(n not in self.markets for n in names):
            return _error(400, -1121, "Invalid symbol.")
        return 200, [one(self.markets[n]) for n in names]

    def _klines(self, params: Params) -> Answer:
        symbol = params.get("symbol")
        if not symbol:
            return _mandatory("symbol")
        if symbol not in self.markets:
            return _error(400, -1121, "Invalid symbol.")
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 1 << 62))
        limit = min(int(params.get("limit", 500)), 1000)
        rows = [r for r in self.klines.get(symbol, []) if start <= r[0] <= end]
        return 200, rows[:limit]

    # -- account and orders (SIGNED) --------------------------------------------------

    def _account_info(self, params: Params) -> Answer:
        assets = sorted(set(self.account.free) | set(self.account.locked))
        balances = [
            {"asset": a, "free": s8(self.balance(a)[0]), "locked": s8(self.balance(a)[1])}
            for a in assets
        ]
        if params.get("omitZeroBalances") == "true":
            balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
        rate = s8(self.commission_rate)
        return 200, {
            "makerCommission": int(self.commission_rate * 10_000),
            "takerCommission": int(self.commission_rate * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": rate,
                "taker": rate,
                "buyer": s8(Decimal(0)),
                "seller": s8(Decimal(0)),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _new_order(self, params: Params) -> Answer:
        answer = self._place(params)
        outcome = answer[1].get("status") if answer[0] == 200 else str(answer[1]["code"])
        self.order_requests.append(OrderRequest(dict(params), str(outcome)))
        return answer

    def _place(self, params: Params) -> Answer:
        for name in ("symbol", "side", "type"):
            if not params.get(name):
                return _mandatory(name)
        market = self.markets.get(params["symbol"])
        if market is None:
            return _error(400, -1121, "Invalid symbol.")
        side, kind = params["side"], params["type"]
        if side not in ("BUY", "SELL"):
            return _error(400, -1117, "Invalid side.")
        if kind not in ("MARKET", "LIMIT"):
            return _error(400, -1116, "Invalid orderType.")
        quantity = _decimal(params.get("quantity"))
        if quantity is None:
            return _mandatory("quantity")
        price = market.price
        tif = ""
        if kind == "LIMIT":
            limit = _decimal(params.get("price"))
            if limit is None:
                return _mandatory("price")
            tif = params.get("timeInForce", "")
            if tif not in ("GTC", "IOC", "FOK"):
                return _mandatory("timeInForce")
            price = limit
        client_id = params.get("newClientOrderId") or f"web_{next(self._ids)}"
        if not _CLIENT_ID.match(client_id):
            return _error(
                400,
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[a-zA-Z0-9-_.:/]{1,36}$'.",
            )
        if market.status != "TRADING":
            return _error(400, -2010, "Market is closed.")
        refusal = self._filters(market, kind, quantity, price)
        if refusal is not None:
            return _error(400, -1013, f"Filter failure: {refusal}")
        if any(o.client_order_id == client_id and o.status in _OPEN for o in self.orders):
            return _error(400, -2010, "Duplicate order sent.")
        if not self._affordable(market, side, quantity, price):
            return _error(400, -2010, "Account has insufficient balance for requested action.")
        now = self.now()
        order = VenueOrder(
            order_id=next(self._ids),
            client_order_id=client_id,
            symbol=market.symbol,
            side=side,
            type=kind,
            time_in_force=tif or "GTC",
            price=price if kind == "LIMIT" else Decimal(0),
            quantity=quantity,
            time=now,
        )
        self.orders.append(order)
        first_trade = len(self.trades)
        self._start(market, order)
        if params.get("newOrderRespType") == "ACK":
            return 200, {
                "symbol": order.symbol,
                "orderId": order.order_id,
                "orderListId": -1,
                "clientOrderId": order.client_order_id,
                "transactTime": now,
            }
        answer = {**order.json(), "transactTime": now}
        for key in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty"):
            answer.pop(key)
        if params.get("newOrderRespType", "FULL") == "FULL":
            answer["fills"] = [t.fill_json() for t in self.trades[first_trade:]]
        return 200, answer

    def _filters(self, market: Market, kind: str, quantity: Decimal, price: Decimal) -> str | None:
        if kind == "LIMIT" and (
            not market.min_price <= price <= market.max_price
            or not _on_grid(price, market.min_price, market.tick)
        ):
            return "PRICE_FILTER"
        if not market.min_qty <= quantity <= market.max_qty or not _on_grid(
            quantity, market.min_qty, market.step
        ):
            return "LOT_SIZE"
        if kind == "MARKET" and quantity > market.market_max_qty:
            return "MARKET_LOT_SIZE"
        notional = quantity * price
        if notional < market.min_notional or (kind == "LIMIT" and notional > market.max_notional):
            return "NOTIONAL"
        return None

    def _affordable(self, market: Market, side: str, quantity: Decimal, price: Decimal) -> bool:
        if side == "BUY":
            return self.balance(market.quote)[0] >= quantity * price
        return self.balance(market.base)[0] >= quantity

    def _start(self, market: Market, order: VenueOrder) -> None:
        """Execute what an order can take now; rest or expire the rest."""
        if order.type == "MARKET":
            size = (
                order.quantity
                if market.liquidity is None
                else min(order.quantity, market.liquidity)
            )
            parts = max(1, market.fill_parts)
            piece = (size / parts).quantize(market.step, rounding=ROUND_DOWN)
            for i in range(parts):
                chunk = size - piece * (parts - 1) if i == parts - 1 else piece
                if chunk > 0:
                    self._execute(order, chunk, market.price, maker=False)
            if order.remaining > 0:
                order.status = "EXPIRED"
            return
        marketable = (order.side == "BUY" and market.price <= order.price) or (
            order.side == "SELL" and market.price >= order.price
        )
        if marketable:
            self._execute(order, order.quantity, market.price, maker=False)
            return
        if order.time_in_force in ("IOC", "FOK"):
            order.status = "EXPIRED"
            return
        # Resting: its funds are set aside until it fills or is cancelled.
        order.resting = True
        if order.side == "BUY":
            cost = order.quantity * order.price
            self.account.move(market.quote, free=-cost, locked=cost)
        else:
            self.account.move(market.base, free=-order.quantity, locked=order.quantity)

    def _execute(self, order: VenueOrder, quantity: Decimal, price: Decimal, maker: bool) -> None:
        market = self.markets[order.symbol]
        value = quantity * price
        if order.side == "BUY":
            if order.resting:  # release what was set aside at the limit; pay the trade price
                held = quantity * order.price
                self.account.move(market.quote, free=held - value, locked=-held)
            else:
                self.account.move(market.quote, free=-value)
            self.account.move(market.base, free=quantity)
            received, received_amount = market.base, quantity
        else:
            if order.resting:
                self.account.move(market.base, locked=-quantity)
            else:
                self.account.move(market.base, free=-quantity)
            self.account.move(market.quote, free=value)
            received, received_amount = market.quote, value
        asset, commission = self._commission(market, value, received, received_amount)
        self.account.move(asset, free=-commission)
        order.executed += quantity
        order.cum_quote += value
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        order.update_time = self.now()
        if order.status == "FILLED":
            order.resting = False
        self.trades.append(
            Trade(next(self._ids), order, price, quantity, commission, asset, self.now(), maker)
        )

    def _commission(
        self, market: Market, value: Decimal, received: str, received_amount: Decimal
    ) -> tuple[str, Decimal]:
        rate = self.commission_rate
        asset = self.commission_asset
        if asset is not None and asset != received:
            pair = self.markets.get(f"{asset}{market.quote}")
            if pair is not None:
                amount = (value * rate / pair.price).quantize(_EIGHT)
                if self.balance(asset)[0] >= amount:
                    return asset, amount
        return received, (received_amount * rate).quantize(_EIGHT)

    def _find(self, order_id: str | None, client_order_id: str | None) -> VenueOrder | None:
        for order in reversed(self.orders):  # a reused client id names the latest order
            if (order_id and str(order.order_id) == order_id) or (
                client_order_id and order.client_order_id == client_order_id
            ):
                return order
        return None

    def _order_target(self, params: Params) -> Answer | None:
        """Why a query or cancel names no order, if it does not."""
        symbol = params.get("symbol")
        if not symbol:
            return _mandatory("symbol")
        if symbol not in self.markets:
            return _error(400, -1121, "Invalid symbol.")
        if not params.get("orderId") and not params.get("origClientOrderId"):
            return _error(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        return None

    def _query_order(self, params: Params) -> Answer:
        problem = self._order_target(params)
        if problem is not None:
            return problem
        order = self._find(params.get("orderId"), params.get("origClientOrderId"))
        if order is None or order.symbol != params["symbol"]:
            return _error(400, -2013, "Order does not exist.")
        return 200, order.json()

    def _cancel_order(self, params: Params) -> Answer:
        problem = self._order_target(params)
        if problem is not None:
            return problem
        order = self._find(params.get("orderId"), params.get("origClientOrderId"))
        if order is None or order.symbol != params["symbol"] or order.status not in _OPEN:
            return _error(400, -2011, "Unknown order sent.")
        return 200, self._cancel(order, params.get("newClientOrderId"))

    def _cancel(self, order: VenueOrder, cancel_id: str | None) -> dict[str, Any]:
        market = self.markets[order.symbol]
        if order.resting and order.side == "BUY":
            held = order.remaining * order.price
            self.account.move(market.quote, free=held, locked=-held)
        elif order.resting:
            self.account.move(market.base, free=order.remaining, locked=-order.remaining)
        order.resting = False
        order.status = "CANCELED"
        order.update_time = self.now()
        answer = order.json()
        for key in (
            "time",
            "updateTime",
            "isWorking",
            "stopPrice",
            "icebergQty",
            "workingTime",
            "origQuoteOrderQty",
        ):
            answer.pop(key)
        answer["origClientOrderId"] = order.client_order_id
        answer["clientOrderId"] = cancel_id or f"cancel_{next(self._ids)}"
        answer["transactTime"] = order.update_time
        return answer

    def _open_orders(self, params: Params) -> Answer:
        symbol = params.get("symbol")
        if symbol is not None and symbol not in self.markets:
            return _error(400, -1121, "Invalid symbol.")
        return 200, [
            o.json()
            for o in self.orders
            if o.status in _OPEN and (symbol is None or o.symbol == symbol)
        ]

    def _cancel_open_orders(self, params: Params) -> Answer:
        symbol = params.get("symbol")
        if not symbol:
            return _mandatory("symbol")
        if symbol not in self.markets:
            return _error(400, -1121, "Invalid symbol.")
        open_orders = [o for o in self.orders if o.status in _OPEN and o.symbol == symbol]
        if not open_orders:
            return _error(400, -2011, "Unknown order sent.")
        return 200, [self._cancel(o, None) for o in open_orders]

    def _my_trades(self, params: Params) -> Answer:
        symbol = params.get("symbol")
        if not symbol:
            return _mandatory("symbol")
        if symbol not in self.markets:
            return _error(400, -1121, "Invalid symbol.")
        order_id = params.get("orderId")
        start = int(params.get("startTime", 0))
        from_id = int(params.get("fromId", 0))
        limit = min(int(params.get("limit", 500)), 1000)
        trades = [
            t.json()
            for t in self.trades
            if t.order.symbol == symbol
            and (order_id is None or str(t.order.order_id) == order_id)
            and t.time >= start
            and t.trade_id >= from_id
        ]
        return 200, trades[:limit]


def _unsigned(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def _decimal(text: str | None) -> Decimal | None:
    try:
        value = Decimal(text) if text else None
    except ArithmeticError:
        return None
    return value if value is not None and value.is_finite() and value > 0 else None
