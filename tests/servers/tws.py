"""A local TWS / IB Gateway that speaks the TWS API socket protocol, for tests.

It implements the subset a real ib_async client uses, byte for byte as TWS
sends it at server version 178:

- the handshake: "API\\0", a length-prefixed "v<min>..<max>" version range,
  answered with the server version and the connection time; then startApi,
  answered with nextValidId, managedAccounts and the usual farm-status notices;
- what ib_async asks for while connecting: positions, open orders, completed
  orders, account updates (values, portfolio, account time), account updates
  per account, executions with their commission reports;
- contract details (unknown symbols get error 200, as from TWS), account
  summary, next ids, current time;
- placeOrder / cancelOrder, answered with openOrder and orderStatus; fills
  are reported as execDetails followed by a commissionReport, and positions,
  portfolio and account values of subscribed connections follow each fill.

A market order fills at once at the price the test set (`prices`, moved by
`half_spread` against the order); a limit order fills when it is marketable
against that price, now or after `set_price`, or when the test calls `fill`
(which can fill part of it). The test can drop every connection (`drop`),
refuse new ones (`refuse` / `accept`), lose the next order on its way in or
accept it and drop before answering (`drop_next_order`), or reject it
(`reject_next_order`). Everything received is recorded in `received`, every
order in `orders` and every execution in `executions`.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

SERVER_VERSION = 178
MIN_CLIENT_VERSION = 157
ACCOUNT = "DU7654321"
UNSET_DOUBLE = "1.7976931348623157E308"  # TWS's "no value" for doubles

Value = str | int | float | bool | None
DONE = frozenset({"Filled", "Cancelled", "Inactive", "ApiCancelled"})


@dataclass(frozen=True, slots=True)
class Listing:
    """A stock the server knows, by its IB symbol (e.g. "BRK B")."""

    symbol: str
    con_id: int
    primary_exchange: str = "NASDAQ"
    currency: str = "USD"
    min_tick: float = 0.01
    size_increment: float = 1.0
    long_name: str = ""


@dataclass(slots=True)
class ServerOrder:
    client_id: int
    order_id: int
    perm_id: int
    listing: Listing
    action: str  # BUY | SELL
    quantity: float
    order_type: str  # MKT | LMT
    limit: float | None
    tif: str
    account: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    avg_price: float = 0.0
    commission: float = 0.0
    completed_time: str = ""

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled


@dataclass(frozen=True, slots=True)
class ServerExecution:
    exec_id: str
    order: ServerOrder
    shares: float
    price: float
    time: datetime
    commission: float
    realized_pnl: float | None  # None for an opening trade (TWS sends its "unset")
    cum_qty: float
    avg_price: float

    @property
    def side(self) -> str:
        return "BOT" if self.order.action == "BUY" else "SLD"


@dataclass(frozen=True, slots=True)
class Received:
    client_id: int | None  # None before startApi
    fields: tuple[str, ...]

    @property
    def msg_id(self) -> int:
        return int(self.fields[0])


def _text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def frame(fields: Iterable[Value]) -> bytes:
    """One message: its fields, each NUL-terminated, after a 4-byte big-endian length."""
    body = "".join(_text(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


def ib_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")


def parse_filter_time(text: str) -> datetime | None:
    """ExecutionFilter.time: "yyyymmdd-hh:mm:ss" (UTC) or "yyyymmdd hh:mm:ss [zone]"."""
    text = text.strip()
    if not text:
        return None
    if "-" in text[:9]:
        return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    day, clock, *zone = text.split(" ")
    moment = datetime.strptime(day + clock, "%Y%m%d%H:%M:%S")
    return moment.replace(tzinfo=ZoneInfo(zone[0]) if zone else UTC)


# ------------------------------------------------------------ outgoing messages
# Field order follows ib_async's decoder at server version 178.


def _contract(listing: Listing, exchange: str) -> list[Value]:
    # conId symbol secType lastTradeDate strike right multiplier exchange currency
    # localSymbol tradingClass
    s = listing
    return [s.con_id, s.symbol, "STK", "", 0.0, "", "", exchange, s.currency, s.symbol, "NMS"]


def msg_error(req_id: int, code: int, text: str) -> list[Value]:
    return [4, 2, req_id, code, text, ""]


def msg_contract_details(req_id: int, s: Listing) -> list[Value]:
    return [
        10, req_id, s.symbol, "STK", "", 0.0, "", "SMART", s.currency, s.symbol, "NMS", "NMS",
        s.con_id, s.min_tick, "", "ACTIVETIM,LMT,MKT,STP", f"SMART,{s.primary_exchange}", 1,
        0, s.long_name or s.symbol, s.primary_exchange, "", "", "", "", "US/Eastern",
        "", "", "", "", 0,  # tradingHours liquidHours evRule evMultiplier, no secIds
        1, "", "", "26,26", "", "COMMON", 1, s.size_increment, 100,
    ]  # fmt: skip


def msg_open_order(o: ServerOrder) -> list[Value]:
    limit = o.limit if o.limit is not None else ""
    return [
        5, o.order_id, *_contract(o.listing, "SMART"),
        o.action, o.quantity, o.order_type, limit, "", o.tif, "", o.account, "O", 0,
        o.order_ref, o.client_id, o.perm_id, 0, 0, 0, "", "", "", "", "",  # ... faPercentage
        "", "", "", "", "", 0, "", "", "",  # modelCode ... auctionStrategy
        "", "", "", "", "", 0, 0, 0, 0, "", 3, 0, 0, "", 0, 0, "", 0, "", "",  # ... dnAuxPrice
        0, 0, "", "", "", "", "",  # continuousUpdate ... comboLegsDescrip
        0, 0, 0,  # combo legs, order combo legs, smart combo routing params
        "", "", "",  # scale init/subs level size, no price increment
        "",  # hedgeType
        0, "", "", 0, 0,  # optOutSmartRouting clearingAccount clearingIntent notHeld no dnc
        "",  # algoStrategy
        0, 0, o.status, "", "", "", "", "", "", "", "", "",  # solicited whatIf status margins
        "", "", "", "", "", 0, 0,  # commissions, warning, randomize size/price
        0,  # conditions
        "", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0,  # adjusted ... priceMgmt
        "", 0, 0,  # duration postToAts autoCancelParent
        "", "", "", "", "",  # minTradeQty ... midOffsetAtHalf
    ]  # fmt: skip


def msg_completed_order(o: ServerOrder) -> list[Value]:
    limit = o.limit if o.limit is not None else ""
    return [
        101, *_contract(o.listing, "SMART"),
        o.action, o.quantity, o.order_type, limit, "", o.tif, "", o.account, "O", 0,
        o.order_ref, o.perm_id, 0, 0, 0, "", "", "", "",  # ... faPercentage
        "", "", "", "", "", 0, "", "", "", "", "", "", "", 0, 0, 0, "", 3, 0, "", 0, "", 0,
        0, 0, "", "", "",  # continuousUpdate ... comboLegsDescrip
        0, 0, 0, "", "", "", "",  # legs, params, scale sizes, hedgeType
        "", "", 0, 0,  # clearingAccount clearingIntent notHeld no dnc
        "", 0, o.status, 0, 0,  # algoStrategy solicited status randomize size/price
        0,  # conditions
        "", "", "", 0, 0, "", o.filled, 0, 0, "", 0, 0, 0, o.completed_time, o.status,
        "", "", "", "", "",
    ]  # fmt: skip


def msg_order_status(o: ServerOrder, last_price: float = 0.0) -> list[Value]:
    return [
        3, o.order_id, o.status, o.filled, o.remaining, o.avg_price, o.perm_id, 0,
        last_price, o.client_id, "", 0.0,
    ]  # fmt: skip


def msg_execution(req_id: int, e: ServerExecution) -> list[Value]:
    o = e.order
    return [
        11, req_id, o.order_id, *_contract(o.listing, o.listing.primary_exchange),
        e.exec_id, ib_time(e.time), o.account, o.listing.primary_exchange, e.side, e.shares,
        e.price, o.perm_id, o.client_id, 0, e.cum_qty, e.avg_price, o.order_ref, "", "",
        "", 1, 0,  # modelCode lastLiquidity pendingPriceRevision
    ]  # fmt: skip


def msg_commission(e: ServerExecution) -> list[Value]:
    pnl = UNSET_DOUBLE if e.realized_pnl is None else e.realized_pnl
    return [59, 1, e.exec_id, e.commission, e.order.listing.currency, pnl, UNSET_DOUBLE, ""]


# --------------------------------------------------------------------- server


@dataclass(slots=True)
class _Position:
    quantity: float = 0.0
    avg_cost: float = 0.0  # per share, commissions included (as IB reports it)


class _Connection(asyncio.Protocol):
    """One API client connection: framing, handshake, subscriptions."""

    def __init__(self, server: TwsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.greeted = False
        self.client_id: int | None = None
        self.muted = False  # drop_next_order == "after_accept": swallow the answers
        self.positions = False
        self.account_updates = ""  # account subscribed with reqAccountUpdates
        self.summaries: set[int] = set()  # reqAccountSummary ids

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self in self.server.connections:
            self.server.connections.remove(self)

    def send(self, fields: Sequence[Value]) -> None:
        if self.transport is not None and not self.muted:
            self.transport.write(frame(fields))

    def close(self, *, graceful: bool = False) -> None:
        if self.transport is not None:
            if graceful:
                self.transport.close()  # what was sent still arrives
            else:
                self.transport.abort()  # like a gateway that dies: no goodbye

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.greeted:
            if len(self.buffer) < 8:
                return
            if not self.buffer.startswith(b"API\0"):
                self.close()
                return
            self.buffer = self.buffer[4:]
        while len(self.buffer) >= 4:
            size = struct.unpack(">I", self.buffer[:4])[0]
            if len(self.buffer) < 4 + size:
                return
            body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
            if not self.greeted:
                self._handshake(body.decode())
            else:
                fields = body.decode().split("\0")[:-1]
                self.server.handle(self, fields)

    def _handshake(self, versions: str) -> None:
        # "v157..178" optionally followed by " <connect options>"
        low, _, high = versions.split(" ")[0].lstrip("v").partition("..")
        if int(high or low) < SERVER_VERSION or int(low) > SERVER_VERSION:
            self.close()
            return
        self.greeted = True
        assert self.transport is not None
        body = f"{SERVER_VERSION}\0{ib_time(datetime.now(UTC))}\0".encode()
        self.transport.write(struct.pack(">I", len(body)) + body)


class TwsServer:
    def __init__(
        self,
        *,
        accounts: Sequence[str] = (ACCOUNT,),
        cash: float = 100_000.0,
        commission_per_share: float = 0.005,
        min_commission: float = 1.0,
        listings: Iterable[Listing] = (),
    ) -> None:
        self.accounts = list(accounts)
        self.cash = cash
        self.realized_pnl = 0.0
        self.commission_per_share = commission_per_share
        self.min_commission = min_commission
        self.listings = {s.symbol: s for s in listings}
        self.prices: dict[str, float] = {}
        self.half_spread = 0.0
        self.positions: dict[str, _Position] = {}
        self.orders: list[ServerOrder] = []
        self.executions: list[ServerExecution] = []
        self.received: list[Received] = []
        self.connections: list[_Connection] = []
        self.connects = 0  # successful startApi calls
        self.drop_next_order: Literal["", "lost", "after_accept"] = ""
        self.reject_next_order = ""  # error 201's text for the next order, if set
        self._server: asyncio.Server | None = None
        self._port = 0
        self._next_order_id = 1
        self._perm_ids = itertools.count(900_000_001)
        self._exec_seq = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> TwsServer:
        await self.accept()
        return self

    async def stop(self) -> None:
        await self.refuse()
        self.drop()

    async def refuse(self) -> None:
        """Stop listening: new connections are refused, as when the gateway is down."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def accept(self) -> None:
        """Listen (again) on the same port."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _Connection(self), "127.0.0.1", self._port, reuse_address=True
            )
            self._port = self._server.sockets[0].getsockname()[1]

    def drop(self) -> None:
        """Close every client connection at once."""
        for conn in list(self.connections):
            conn.close()

    # -- what the test sees and sets ----------------------------------------------

    def messages(self, msg_id: int) -> list[tuple[str, ...]]:
        return [r.fields for r in self.received if r.msg_id == msg_id]

    def orders_with_ref(self, order_ref: str) -> list[ServerOrder]:
        return [o for o in self.orders if o.order_ref == order_ref]

    def position(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return pos.quantity if pos is not None else 0.0

    def hold(self, symbol: str, quantity: float, avg_cost: float) -> None:
        """Start with a position, as an account that traded before the session."""
        self.positions[symbol] = _Position(quantity, avg_cost)
        self.prices.setdefault(symbol, avg_cost)

    def set_price(self, symbol: str, price: float) -> None:
        """Move the market; resting limit orders that it reaches fill at this price."""
        self.prices[symbol] = price
        for order in self.orders:
            resting = order.status not in DONE and order.order_type == "LMT"
            if resting and order.listing.symbol == symbol and self._marketable(order, price):
                self._execute(order, order.remaining, price)

    def fill(self, order_ref: str, shares: float, price: float | None = None) -> None:
        """Fill (part of) the open order with this orderRef, at its limit unless told."""
        (order,) = [o for o in self.orders_with_ref(order_ref) if o.status not in DONE]
        fill_price = price if price is not None else order.limit
        assert fill_price is not None, "a market order needs a price to fill at"
        self._execute(order, min(shares, order.remaining), fill_price)

    # -- dispatch ------------------------------------------------------------------

    def handle(self, conn: _Connection, fields: list[str]) -> None:
        self.received.append(Received(conn.client_id, tuple(fields)))
        handler = {
            71: self._start_api,
            61: self._req_positions,
            64: self._cancel_positions,
            5: self._req_open_orders,
            16: self._req_all_open_orders,
            99: self._req_completed_orders,
            6: self._req_account_updates,
            76: self._req_account_updates_multi,
            7: self._req_executions,
            9: self._req_contract_details,
            62: self._req_account_summary,
            63: self._cancel_account_summary,
            3: self._place_order,
            4: self._cancel_order,
            8: self._req_ids,
            49: self._req_current_time,
        }.get(int(fields[0]))
        if handler is not None:
            handler(conn, fields)

    def _start_api(self, conn: _Connection, fields: list[str]) -> None:
        client_id = int(fields[2])
        if any(c.client_id == client_id for c in self.connections if c is not conn):
            conn.send(msg_error(-1, 326, "Unable to connect as the client id is already in use."))
            conn.close(graceful=True)
            return
        conn.client_id = client_id
        self.connects += 1
        conn.send([9, 1, self._next_order_id])
        conn.send([15, 1, ",".join(self.accounts)])
        for code, text in (
            (2104, "Market data farm connection is OK:usfarm"),
            (2106, "HMDS data farm connection is OK:ushmds"),
            (2158, "Sec-def data farm connection is OK:secdefnj"),
        ):
            conn.send(msg_error(-1, code, text))

    def _req_ids(self, conn: _Connection, fields: list[str]) -> None:
        conn.send([9, 1, self._next_order_id])

    def _req_current_time(self, conn: _Connection, fields: list[str]) -> None:
        conn.send([49, 1, int(datetime.now(UTC).timestamp())])

    # -- contracts -------------------------------------------------------------------

    def _req_contract_details(self, conn: _Connection, fields: list[str]) -> None:
        # 9, 8, reqId, conId, symbol, secType, lastTradeDate, strike, right, multiplier,
        # exchange, primaryExchange, currency, localSymbol, tradingClass, ...
        req_id, con_id, symbol, sec_type = int(fields[2]), int(fields[3] or 0), fields[4], fields[5]
        currency = fields[12]
        matches = [
            s
            for s in self.listings.values()
            if (s.con_id == con_id if con_id else s.symbol == symbol)
            and sec_type in ("", "STK")
            and currency in ("", s.currency)
        ]
        if not matches:
            conn.send(
                msg_error(req_id, 200, "No security definition has been found for the request")
            )
            return
        for listing in matches:
            conn.send(msg_contract_details(req_id, listing))
        conn.send([52, 1, req_id])

    def _listing(self, con_id: int, symbol: str) -> Listing | None:
        for s in self.listings.values():
            if (con_id and s.con_id == con_id) or (not con_id and s.symbol == symbol):
                return s
        return None

    # -- orders --------------------------------------------------------------------

    def _place_order(self, conn: _Connection, fields: list[str]) -> None:
        # 3, orderId, contract (12 fields), secIdType, secId, action, totalQuantity,
        # orderType, lmtPrice, auxPrice, tif, ocaGroup, account, openClose, origin, orderRef
        mode, self.drop_next_order = self.drop_next_order, ""
        if mode == "lost":
            self.drop()  # the order never reaches the gateway
            return
        assert conn.client_id is not None
        order_id = int(fields[1])
        listing = self._listing(int(fields[2] or 0), fields[3])
        if listing is None:
            conn.send(msg_error(order_id, 200, "No security definition has been found"))
            return
        if any(o.client_id == conn.client_id and o.order_id == order_id for o in self.orders):
            conn.send(msg_error(order_id, 103, "Duplicate order id"))
            return
        self._next_order_id = max(self._next_order_id, order_id + 1)
        quantity = float(fields[17])
        order = ServerOrder(
            client_id=conn.client_id,
            order_id=order_id,
            perm_id=next(self._perm_ids),
            listing=listing,
            action=fields[16],
            quantity=quantity,
            order_type=fields[18],
            limit=float(fields[19]) if fields[19] else None,
            tif=fields[21] or "DAY",
            account=fields[23] or self.accounts[0],
            order_ref=fields[26],
        )
        self.orders.append(order)
        if mode == "after_accept":
            conn.muted = True  # the gateway takes the order, the answer never arrives
        rejection, self.reject_next_order = self.reject_next_order, ""
        if not rejection and quantity != int(quantity):
            rejection = "Fractional-sized order cannot be placed via API."
        if rejection:
            order.status = "Inactive"
            self._finish(order)
            self._to_owner(order, msg_error(order_id, 201, f"Order rejected - reason:{rejection}"))
            self._to_owner(order, msg_order_status(order))
        else:
            self._to_owner(order, msg_open_order(order))
            self._to_owner(order, msg_order_status(order))
            price = self.prices.get(listing.symbol)
            if price is not None and order.order_type == "MKT":
                spread = self.half_spread if order.action == "BUY" else -self.half_spread
                self._execute(order, quantity, price + spread)
            elif price is not None and self._marketable(order, price):
                self._execute(order, quantity, price)
        if mode == "after_accept":
            self.drop()

    def _cancel_order(self, conn: _Connection, fields: list[str]) -> None:
        order_id = int(fields[2])
        found = [o for o in self.orders if o.client_id == conn.client_id and o.order_id == order_id]
        if not found or found[0].status in DONE:
            state = found[0].status if found else "unknown"
            conn.send(
                msg_error(
                    order_id,
                    10148,
                    f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                    f"state: {state}.",
                )
            )
            return
        order = found[0]
        order.status = "Cancelled"
        self._finish(order)
        self._to_owner(order, msg_order_status(order))
        self._to_owner(order, msg_error(order_id, 202, "Order Canceled - reason:"))

    def _req_open_orders(self, conn: _Connection, fields: list[str]) -> None:
        self._send_open_orders(conn, only_own=True)

    def _req_all_open_orders(self, conn: _Connection, fields: list[str]) -> None:
        self._send_open_orders(conn, only_own=False)

    def _send_open_orders(self, conn: _Connection, *, only_own: bool) -> None:
        for order in self.orders:
            if order.status in DONE or (only_own and order.client_id != conn.client_id):
                continue
            conn.send(msg_open_order(order))
            conn.send(msg_order_status(order))
        conn.send([53, 1])

    def _req_completed_orders(self, conn: _Connection, fields: list[str]) -> None:
        for order in self.orders:
            if order.status in DONE:
                conn.send(msg_completed_order(order))
        conn.send([102])

    @staticmethod
    def _marketable(order: ServerOrder, price: float) -> bool:
        assert order.limit is not None
        return price <= order.limit if order.action == "BUY" else price >= order.limit

    def _finish(self, order: ServerOrder) -> None:
        order.completed_time = ib_time(datetime.now(UTC))

    def _to_owner(self, order: ServerOrder, fields: list[Value]) -> None:
        for conn in self.connections:
            if conn.client_id == order.client_id:
                conn.send(fields)

    # -- executions and the account ------------------------------------------------------

    def _execute(self, order: ServerOrder, shares: float, price: float) -> None:
        # IB's fixed pricing: per share with a minimum per order.
        commission = shares * self.commission_per_share
        if order.commission == 0.0:
            commission = max(commission, self.min_commission)
        commission = round(commission, 4)
        order.commission += commission
        order.avg_price = (order.avg_price * order.filled + price * shares) / (
            order.filled + shares
        )
        order.filled += shares
        if order.remaining <= 1e-9:
            order.status = "Filled"
            self._finish(order)
        realized = self._book(order, shares, price, commission)
        execution = ServerExecution(
            exec_id=f"{order.perm_id:08x}.{next(self._exec_seq):08x}.01.01",
            order=order,
            shares=shares,
            price=price,
            time=datetime.now(UTC),
            commission=commission,
            realized_pnl=realized,
            cum_qty=order.filled,
            avg_price=order.avg_price,
        )
        self.executions.append(execution)
        self._to_owner(order, msg_execution(-1, execution))
        self._to_owner(order, msg_open_order(order))
        self._to_owner(order, msg_order_status(order, price))
        self._to_owner(order, msg_commission(execution))
        self._publish_account(order.listing)

    def _book(self, order: ServerOrder, shares: float, price: float, fee: float) -> float | None:
        pos = self.positions.setdefault(order.listing.symbol, _Position())
        if order.action == "BUY":
            cost = pos.avg_cost * pos.quantity + shares * price + fee
            pos.quantity += shares
            pos.avg_cost = cost / pos.quantity if pos.quantity else 0.0
            self.cash -= shares * price + fee
            return None
        realized = (price - pos.avg_cost) * shares
        pos.quantity -= shares
        if abs(pos.quantity) < 1e-9:
            pos.quantity, pos.avg_cost = 0.0, 0.0
        self.cash += shares * price - fee
        self.realized_pnl += realized
        return realized

    def _mark(self, symbol: str, pos: _Position) -> float:
        return self.prices.get(symbol, pos.avg_cost)

    def _values(self) -> list[tuple[str, float | str, str]]:
        held = sum(p.quantity * self._mark(s, p) for s, p in self.positions.items())
        unrealized = sum(
            p.quantity * (self._mark(s, p) - p.avg_cost) for s, p in self.positions.items()
        )
        net = self.cash + held
        values: list[tuple[str, float | str, str]] = [("AccountType", "INDIVIDUAL", "")]
        for tag, value in (
            ("NetLiquidation", net),
            ("TotalCashValue", self.cash),
            ("SettledCash", self.cash),
            ("AvailableFunds", self.cash),
            ("BuyingPower", self.cash),
            ("ExcessLiquidity", self.cash),
            ("EquityWithLoanValue", net),
            ("GrossPositionValue", held),
            ("InitMarginReq", 0.0),
            ("MaintMarginReq", 0.0),
        ):
            values.append((tag, round(value, 2), "USD"))
        for currency in ("BASE", "USD"):
            for tag, value in (
                ("CashBalance", self.cash),
                ("NetLiquidationByCurrency", net),
                ("RealizedPnL", self.realized_pnl),
                ("UnrealizedPnL", unrealized),
            ):
                values.append((tag, round(value, 2), currency))
        return values

    def _portfolio(self, listing: Listing, account: str) -> list[Value]:
        pos = self.positions.get(listing.symbol, _Position())
        mark = self._mark(listing.symbol, pos)
        return [
            7, 8, listing.con_id, listing.symbol, "STK", "", 0.0, "", "", listing.primary_exchange,
            listing.currency, listing.symbol, "NMS", pos.quantity, mark, pos.quantity * mark,
            pos.avg_cost, pos.quantity * (mark - pos.avg_cost), 0.0, account,
        ]  # fmt: skip

    def _position(self, listing: Listing) -> list[Value]:
        pos = self.positions.get(listing.symbol, _Position())
        return [61, 3, self.accounts[0], *_contract(listing, "NASDAQ"), pos.quantity, pos.avg_cost]

    def _send_values(self, conn: _Connection, account: str) -> None:
        for tag, value, currency in self._values():
            conn.send([6, 2, tag, value, currency, account])

    def _send_summary(self, conn: _Connection, req_id: int, tags: Set[str]) -> None:
        ledger = "$LEDGER:ALL" in tags or "$LEDGER" in tags
        for account in self.accounts:
            for tag, value, currency in self._values():
                if tag in tags or (ledger and currency in ("BASE", "USD") and tag in _LEDGER):
                    conn.send([63, 1, req_id, account, tag, value, currency])
        conn.send([64, 1, req_id])

    def _publish_account(self, listing: Listing) -> None:
        for conn in self.connections:
            if conn.positions:
                conn.send(self._position(listing))
            if conn.account_updates:
                self._send_values(conn, conn.account_updates)
                conn.send(self._portfolio(listing, conn.account_updates))
            for req_id in conn.summaries:
                self._send_summary(conn, req_id, _SUMMARY_TAGS)

    def _req_positions(self, conn: _Connection, fields: list[str]) -> None:
        conn.positions = True
        for symbol, pos in self.positions.items():
            if pos.quantity:
                conn.send(self._position(self.listings[symbol]))
        conn.send([62, 1])

    def _cancel_positions(self, conn: _Connection, fields: list[str]) -> None:
        conn.positions = False

    def _req_account_updates(self, conn: _Connection, fields: list[str]) -> None:
        subscribe, account = fields[2] == "1", fields[3] or self.accounts[0]
        conn.account_updates = account if subscribe else ""
        if not subscribe:
            return
        self._send_values(conn, account)
        for symbol, pos in self.positions.items():
            if pos.quantity:
                conn.send(self._portfolio(self.listings[symbol], account))
        conn.send([8, 1, datetime.now(UTC).strftime("%H:%M")])
        conn.send([54, 1, account])

    def _req_account_updates_multi(self, conn: _Connection, fields: list[str]) -> None:
        req_id, account, model = int(fields[2]), fields[3], fields[4]
        for tag, value, currency in self._values():
            if currency != "BASE":
                conn.send([73, 1, req_id, account, model, tag, value, currency])
        conn.send([74, 1, req_id])

    def _req_account_summary(self, conn: _Connection, fields: list[str]) -> None:
        req_id = int(fields[2])
        conn.summaries.add(req_id)
        self._send_summary(conn, req_id, set(fields[4].split(",")))

    def _cancel_account_summary(self, conn: _Connection, fields: list[str]) -> None:
        conn.summaries.discard(int(fields[2]))

    def _req_executions(self, conn: _Connection, fields: list[str]) -> None:
        # 7, 3, reqId, clientId, acctCode, time, symbol, secType, exchange, side
        req_id, client_id, account = int(fields[2]), int(fields[3] or 0), fields[4]
        since, symbol, side = parse_filter_time(fields[5]), fields[6], fields[9]
        for e in self.executions:
            o = e.order
            if (
                (client_id and o.client_id != client_id)
                or (account and o.account != account)
                or (since is not None and e.time.replace(microsecond=0) < since)
                or (symbol and o.listing.symbol != symbol)
                or (side and o.action != side)
            ):
                continue
            conn.send(msg_execution(req_id, e))
            conn.send(msg_commission(e))
        conn.send([55, 1, req_id])


_LEDGER = frozenset({"CashBalance", "NetLiquidationByCurrency", "RealizedPnL", "UnrealizedPnL"})
_SUMMARY_TAGS = frozenset(
    {"NetLiquidation", "TotalCashValue", "AvailableFunds", "BuyingPower", "InitMarginReq"}
)
