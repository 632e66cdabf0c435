"""The host functions a strategy calls, answered from the session's state.

Each method takes the decoded request message and returns the response
message. Raising HostCallError (or any exception) traps the strategy's current
call, as in argo-trading: the strategy cannot catch it, the engine records a
strategy error and goes on with the next bar.

What a strategy makes the host keep is capped (``budget``): orders, log lines
and marks per call, marks and cache entries per session, each item's size.
``budget`` is the calling strategy's, handed over when the strategy loads; its
deadline also bounds the one host function that can run long (execute_sql).
"""

from __future__ import annotations

import math

from google.protobuf import empty_pb2, timestamp_pb2

from kubetrade.runner.domain import (
    Bar,
    Bracket,
    Mark,
    Order,
    OrderStatus,
    OrderType,
    Side,
)
from kubetrade.runner.hostapi import rollup
from kubetrade.runner.hostapi.indicators import Definitions, IndicatorEngine, IndicatorError
from kubetrade.runner.hostapi.sql import SqlEngine, SqlError
from kubetrade.runner.session import HostCallError, Session
from kubetrade.runner.strategy import budget as caps
from kubetrade.runner.strategy import wire
from kubetrade.runner.strategy.budget import CallBudget
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

_EMPTY = empty_pb2.Empty()
_SIDES = {pb.PURCHASE_TYPE_BUY: Side.BUY, pb.PURCHASE_TYPE_SELL: Side.SELL}
_SIDE_CODES = {Side.BUY: pb.PURCHASE_TYPE_BUY, Side.SELL: pb.PURCHASE_TYPE_SELL}
_TYPES = {pb.ORDER_TYPE_MARKET: OrderType.MARKET, pb.ORDER_TYPE_LIMIT: OrderType.LIMIT}
_TYPE_CODES = {OrderType.MARKET: pb.ORDER_TYPE_MARKET, OrderType.LIMIT: pb.ORDER_TYPE_LIMIT}
_STATUS_CODES = {
    OrderStatus.PENDING: pb.ORDER_STATUS_PENDING,
    OrderStatus.FILLED: pb.ORDER_STATUS_FILLED,
    OrderStatus.CANCELLED: pb.ORDER_STATUS_CANCELLED,
    OrderStatus.REJECTED: pb.ORDER_STATUS_REJECTED,
    OrderStatus.FAILED: pb.ORDER_STATUS_FAILED,
}
_LOG_LEVELS = {
    pb.LOG_LEVEL_DEBUG: "debug",
    pb.LOG_LEVEL_INFO: "info",
    pb.LOG_LEVEL_WARN: "warn",
    pb.LOG_LEVEL_ERROR: "error",
}


def timestamp(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def to_ms(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def market_data(bar: Bar) -> pb.MarketData:
    return pb.MarketData(
        symbol=bar.symbol,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        time=timestamp(bar.time),
    )


def round_down(quantity: float, precision: int) -> float:
    """`quantity` cut to `precision` decimal places, as argo-trading does it (Go's
    math.Floor(q * 10^p) / 10^p, the same float operations): never more than the
    strategy asked for, so an order sized to its cash stays within it. (Like argo's,
    it can land one unit of the last place low: 2.3 at 8 places is 2.29999999.)"""
    scale = 10.0**precision
    return math.floor(quantity * scale) / scale


def _bracket(request: pb.ExecuteOrder, name: str) -> Bracket | None:
    if not request.HasField(name):
        return None
    bracket = getattr(request, name)
    side = _SIDES.get(bracket.side)
    if side is None:
        raise HostCallError(f"{name} has unknown side {bracket.side}")
    # A missing price (0) reaches the risk check, which refuses it with the reason.
    return Bracket(side=side, price=bracket.price)


class HostFunctions:
    """Implements the strategy API (kubetrade.runner.strategy.api.HostApi)."""

    def __init__(self, state: Session, *, indicators: Definitions = "argo") -> None:
        self._state = state
        # The calling strategy's (WasmStrategy hands over its own); this one has no deadline.
        self.budget = CallBudget(None)
        # Indicator settings and state; `indicators` is spec.engine.indicators.
        self._indicators = IndicatorEngine(state.window, indicators)
        self._sql = SqlEngine(state.window)  # DuckDB, opened on the first execute_sql

    # -- market data window -------------------------------------------------

    def get_range(self, request: pb.GetRangeRequest) -> pb.GetRangeResponse:
        try:
            interval = rollup.requested(request.interval)
        except ValueError as exc:
            raise HostCallError(f"get_range: {exc}") from None
        # An unset bound leaves that side open.
        start = to_ms(request.start_time) if request.HasField("start_time") else rollup.EARLIEST
        end = to_ms(request.end_time) if request.HasField("end_time") else rollup.LATEST
        window = self._state.window
        # No symbol means every symbol, as argo-trading's GetRange (which has no symbol).
        symbols = [request.symbol] if request.symbol else list(window.series)
        bars: list[Bar] = []
        for symbol in symbols:
            found = window.range(symbol, start, end)
            bars.extend(found if interval is None else rollup.resample(found, interval))
        if len(symbols) > 1:
            bars.sort(key=lambda b: (b.time, b.symbol))
        return pb.GetRangeResponse(data=[market_data(b) for b in bars])

    def read_last_data(self, request: pb.ReadLastDataRequest) -> pb.MarketData:
        bar = self._state.window.last(request.symbol)
        if bar is None:
            raise HostCallError(f"no market data for symbol {request.symbol!r}")
        return market_data(bar)

    def count(self, request: pb.CountRequest) -> pb.CountResponse:
        start = to_ms(request.start_time) if request.HasField("start_time") else rollup.EARLIEST
        end = to_ms(request.end_time) if request.HasField("end_time") else rollup.LATEST
        return pb.CountResponse(count=self._state.window.count(start, end))

    def execute_sql(self, request: pb.ExecuteSQLRequest) -> pb.ExecuteSQLResponse:
        try:
            # A query may take what is left of the strategy call's time, no more.
            rows = self._sql.execute(
                request.query, request.params, timeout_s=self.budget.seconds_left()
            )
        except SqlError as exc:
            raise HostCallError(f"execute_sql: {exc}") from None
        return pb.ExecuteSQLResponse(results=[pb.SQLResult(fields=row) for row in rows])

    # -- indicators -----------------------------------------------------------

    def configure_indicator(self, request: pb.ConfigureRequest) -> empty_pb2.Empty:
        try:
            self._indicators.configure(request.indicator_type, request.config)
        except IndicatorError as exc:
            raise HostCallError(f"configure_indicator: {exc}") from None
        return _EMPTY

    def get_signal(self, request: pb.GetSignalRequest) -> pb.GetSignalResponse:
        if not request.HasField("market_data") or not request.market_data.symbol:
            raise HostCallError("get_signal: market_data with a symbol is required")
        data = request.market_data
        if data.symbol not in self._state.symbols and self._state.window.last(data.symbol) is None:
            raise HostCallError(f"get_signal: symbol {data.symbol!r} is not traded by this session")
        try:
            reading = self._indicators.reading(
                request.indicator_type, data.symbol, to_ms(data.time)
            )
        except IndicatorError as exc:
            raise HostCallError(f"get_signal: {exc}") from None
        return pb.GetSignalResponse(
            timestamp=data.time,
            type=f"SIGNAL_TYPE_{reading.signal.name}",  # the package mirrors the ABI's names
            name=reading.name,
            reason=reading.reason,
            rawValue=reading.raw_value,
            symbol=data.symbol,
            indicatorType=request.indicator_type,
        )

    # -- cache ----------------------------------------------------------------

    def get_cache(self, request: pb.GetRequest) -> pb.GetResponse:
        return pb.GetResponse(value=self._state.cache.get(request.key, ""))

    def set_cache(self, request: pb.SetRequest) -> empty_pb2.Empty:
        cache = self._state.cache
        key, value = request.key, request.value
        if len(key) > caps.MAX_CACHE_KEY_CHARS:
            raise HostCallError(
                f"cache key of {len(key)} characters; a key may have {caps.MAX_CACHE_KEY_CHARS}"
            )
        if len(value) > caps.MAX_CACHE_VALUE_CHARS:
            raise HostCallError(
                f"cache value for {key[:64]!r} exceeds {caps.MAX_CACHE_VALUE_CHARS} characters"
            )
        old = cache.get(key)
        if old is None and len(cache) >= caps.MAX_CACHE_ENTRIES:
            raise HostCallError(f"strategy cache is full ({caps.MAX_CACHE_ENTRIES} keys)")
        grows = len(value) - len(old) if old is not None else len(key) + len(value)
        if cache.chars + grows > caps.MAX_CACHE_CHARS:
            raise HostCallError(
                f"strategy cache is full: its keys and values would hold more than "
                f"{caps.MAX_CACHE_CHARS} characters"
            )
        self._state.set_cache(key, value)
        return _EMPTY

    # -- trading --------------------------------------------------------------

    def place_order(self, request: pb.ExecuteOrder) -> empty_pb2.Empty:
        self.budget.orders_placed(1)
        self._state.accept(self._order(request))
        return _EMPTY

    def place_multiple_orders(self, request: pb.PlaceMultipleOrdersRequest) -> empty_pb2.Empty:
        self.budget.orders_placed(len(request.orders))
        # All or nothing: a malformed order traps the call before any order is placed.
        orders = [self._order(item) for item in request.orders]
        for order in orders:
            self._state.accept(order)
        return _EMPTY

    def get_positions(self, request: empty_pb2.Empty) -> wire.PackedPositions:
        positions = self._state.book.ledger.positions.values()
        return wire.positions((p for p in positions if p.quantity), self._state.strategy_name)

    def get_position(self, request: pb.GetPositionRequest) -> wire.PackedPosition:
        # Asked on every decision of most strategies: packed by hand, not built field by field.
        position = self._state.book.ledger.position(request.symbol)
        return wire.position(position, self._state.strategy_name)

    def cancel_order(self, request: pb.CancelOrderRequest) -> empty_pb2.Empty:
        self._state.cancel(self._state.find(request.order_id))
        return _EMPTY

    def cancel_all_orders(self, request: empty_pb2.Empty) -> empty_pb2.Empty:
        for order in self._state.book.open_orders():
            self._state.cancel(order)
        return _EMPTY

    def get_order_status(self, request: pb.GetOrderStatusRequest) -> pb.GetOrderStatusResponse:
        order = self._state.find(request.order_id)
        return pb.GetOrderStatusResponse(status=_STATUS_CODES[order.status])

    def get_account_info(self, request: empty_pb2.Empty) -> pb.AccountInfo:
        a = self._state.book.account()
        return pb.AccountInfo(
            balance=a.balance,
            equity=a.equity,
            buying_power=a.buying_power,
            realized_pnl=a.realized_pnl,
            unrealized_pnl=a.unrealized_pnl,
            total_fees=a.total_fees,
            margin_used=a.margin_used,
        )

    def get_open_orders(self, request: empty_pb2.Empty) -> pb.GetOpenOrdersResponse:
        # An order whose cancel the strategy asked for is no longer open to it,
        # even before the venue confirms; its status stays PENDING until then.
        cancelling = {o.client_order_id for o in self._state.cancels}
        return pb.GetOpenOrdersResponse(
            orders=[
                pb.OpenOrder(
                    id=o.strategy_order_id or o.client_order_id,
                    symbol=o.symbol,
                    side=_SIDE_CODES[o.side],
                    order_type=_TYPE_CODES[o.order_type],
                    quantity=o.remaining,
                    price=o.price,
                    strategy_name=o.strategy_name,
                    reason=pb.Reason(reason=o.reason, message=o.message),
                )
                for o in self._state.book.open_orders()
                if o.client_order_id not in cancelling
            ]
        )

    def get_trades(self, request: pb.GetTradesRequest) -> pb.GetTradesResponse:
        start = to_ms(request.start_time) if request.HasField("start_time") else None
        end = to_ms(request.end_time) if request.HasField("end_time") else None
        book = self._state.book
        trades: list[pb.TradeRecord] = []
        cumulative = 0.0
        for fill in book.fills:
            cumulative += fill.realized_pnl
            if request.symbol and fill.symbol != request.symbol:
                continue
            if (start is not None and fill.time < start) or (end is not None and fill.time > end):
                continue
            order = book.orders.get(fill.client_order_id)
            trades.append(
                pb.TradeRecord(
                    order_id=(order.strategy_order_id if order else "") or fill.client_order_id,
                    symbol=fill.symbol,
                    side=_SIDE_CODES[fill.side],
                    quantity=fill.quantity,
                    price=fill.price,
                    executed_at=timestamp(fill.time),
                    fee=fill.fee,
                    pnl=fill.realized_pnl,
                    strategy_name=order.strategy_name if order else "",
                    reason=pb.Reason(reason=order.reason, message=order.message) if order else None,
                    cumulative_pnl=cumulative,
                )
            )
        if request.limit > 0:
            trades = trades[-request.limit :]
        return pb.GetTradesResponse(trades=trades)

    # -- markers and logs ------------------------------------------------------

    def mark(self, request: pb.MarkRequest) -> empty_pb2.Empty:
        m, data = request.mark, request.market_data
        self.budget.mark_added()
        if len(self._state.marks) >= caps.MAX_MARKS:
            raise HostCallError(
                f"the session already holds {caps.MAX_MARKS} marks, the most it keeps"
            )
        if m.ByteSize() > caps.MAX_MARK_BYTES:
            raise HostCallError(
                f"a mark of {m.ByteSize()} bytes; a mark's texts may have {caps.MAX_MARK_BYTES}"
            )
        for enum, value, name in (
            (pb.MarkShape, m.shape, "shape"),
            (pb.SignalType, m.signal_type, "signal_type"),
            (pb.MarkLevel, m.level, "level"),
        ):
            if value not in enum.values():
                raise HostCallError(f"mark has unknown {name} {value}")
        self._state.add_mark(
            Mark(
                symbol=data.symbol,
                time=to_ms(data.time) if data.HasField("time") else self._state.now,
                color=m.color,
                shape=pb.MarkShape.Name(m.shape),
                title=m.title,
                message=m.message,
                category=m.category,
                signal_type=pb.SignalType.Name(m.signal_type),
                level=pb.MarkLevel.Name(m.level),
            )
        )
        return _EMPTY

    def get_markers(self, request: empty_pb2.Empty) -> pb.GetMarkersResponse:
        return pb.GetMarkersResponse(
            markers=[
                pb.Mark(
                    color=m.color,
                    shape=m.shape,
                    title=m.title,
                    message=m.message,
                    category=m.category,
                    signal_type=m.signal_type,
                    level=m.level,
                )
                for m in self._state.marks
            ]
        )

    def log(self, request: pb.LogRequest) -> empty_pb2.Empty:
        level = _LOG_LEVELS.get(request.level, "info")
        fields = request.fields
        if len(fields) > caps.MAX_LOG_FIELDS:
            raise HostCallError(
                f"a log line with {len(fields)} fields; a line may have {caps.MAX_LOG_FIELDS}"
            )
        self.budget.log_line(request.ByteSize())
        # (A comprehension copies a protobuf map twice as fast as dict() does.)
        self._state.log(level, request.message, {k: fields[k] for k in fields})
        return _EMPTY

    # -- helpers -----------------------------------------------------------------

    def _order(self, request: pb.ExecuteOrder) -> Order:
        state = self._state
        side = _SIDES.get(request.side)
        order_type = _TYPES.get(request.order_type)
        # An enum value this ABI version does not know: refuse, do not guess.
        if side is None:
            raise HostCallError(f"order has unknown side {request.side}")
        if order_type is None:
            raise HostCallError(f"order has unknown order type {request.order_type}")
        quantity = request.quantity
        if math.isfinite(quantity) and quantity > 0:
            quantity = round_down(quantity, state.precision)
            if quantity <= 0:
                # argo-trading fails the call here too; a quantity of 0 or less is an
                # order the risk gate refuses (FAILED, invalid_quantity) instead.
                raise HostCallError(
                    f"order quantity {request.quantity!r} is too small or zero after rounding"
                    f" down to {state.precision} decimal places (spec.engine.decimalPrecision)"
                )
        order = Order(
            client_order_id=state.next_client_order_id(),
            symbol=request.symbol,
            side=side,
            order_type=order_type,
            quantity=quantity,
            price=request.price,
            time=state.now,
            strategy_name=request.strategy_name or state.strategy_name,
            reason=request.reason.reason or "strategy",
            message=request.reason.message,
            strategy_order_id=request.id,
            position_type="SHORT" if request.position_type == pb.POSITION_TYPE_SHORT else "LONG",
            updated=state.now,
            take_profit=_bracket(request, "take_profit"),
            stop_loss=_bracket(request, "stop_loss"),
        )
        return order
