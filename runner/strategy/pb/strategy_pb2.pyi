import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Interval(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERVAL_1M: _ClassVar[Interval]
    INTERVAL_5M: _ClassVar[Interval]
    INTERVAL_15M: _ClassVar[Interval]
    INTERVAL_30M: _ClassVar[Interval]
    INTERVAL_1H: _ClassVar[Interval]
    INTERVAL_4H: _ClassVar[Interval]
    INTERVAL_6H: _ClassVar[Interval]
    INTERVAL_8H: _ClassVar[Interval]
    INTERVAL_12H: _ClassVar[Interval]
    INTERVAL_1D: _ClassVar[Interval]
    INTERVAL_1W: _ClassVar[Interval]
    INTERVAL_1MONTH: _ClassVar[Interval]

class PositionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POSITION_TYPE_LONG: _ClassVar[PositionType]
    POSITION_TYPE_SHORT: _ClassVar[PositionType]

class SignalType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNAL_TYPE_BUY_LONG: _ClassVar[SignalType]
    SIGNAL_TYPE_SELL_LONG: _ClassVar[SignalType]
    SIGNAL_TYPE_BUY_SHORT: _ClassVar[SignalType]
    SIGNAL_TYPE_SELL_SHORT: _ClassVar[SignalType]
    SIGNAL_TYPE_NO_ACTION: _ClassVar[SignalType]
    SIGNAL_TYPE_CLOSE_POSITION: _ClassVar[SignalType]
    SIGNAL_TYPE_WAIT: _ClassVar[SignalType]
    SIGNAL_TYPE_ABORT: _ClassVar[SignalType]

class IndicatorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INDICATOR_RSI: _ClassVar[IndicatorType]
    INDICATOR_MACD: _ClassVar[IndicatorType]
    INDICATOR_BOLLINGER_BANDS: _ClassVar[IndicatorType]
    INDICATOR_STOCHASTIC_OSCILLATOR: _ClassVar[IndicatorType]
    INDICATOR_WILLIAMS_R: _ClassVar[IndicatorType]
    INDICATOR_ADX: _ClassVar[IndicatorType]
    INDICATOR_CCI: _ClassVar[IndicatorType]
    INDICATOR_AO: _ClassVar[IndicatorType]
    INDICATOR_TREND_STRENGTH: _ClassVar[IndicatorType]
    INDICATOR_RANGE_FILTER: _ClassVar[IndicatorType]
    INDICATOR_EMA: _ClassVar[IndicatorType]
    INDICATOR_WADDAH_ATTAR: _ClassVar[IndicatorType]
    INDICATOR_ATR: _ClassVar[IndicatorType]
    INDICATOR_MA: _ClassVar[IndicatorType]
    INDICATOR_PSY: _ClassVar[IndicatorType]

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_PENDING: _ClassVar[OrderStatus]
    ORDER_STATUS_FILLED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
    ORDER_STATUS_REJECTED: _ClassVar[OrderStatus]
    ORDER_STATUS_FAILED: _ClassVar[OrderStatus]

class PurchaseType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PURCHASE_TYPE_BUY: _ClassVar[PurchaseType]
    PURCHASE_TYPE_SELL: _ClassVar[PurchaseType]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]

class OrderReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_REASON_STOP_LOSS: _ClassVar[OrderReason]
    ORDER_REASON_TAKE_PROFIT: _ClassVar[OrderReason]
    ORDER_REASON_STRATEGY: _ClassVar[OrderReason]

class MarkShape(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARK_SHAPE_CIRCLE: _ClassVar[MarkShape]
    MARK_SHAPE_SQUARE: _ClassVar[MarkShape]
    MARK_SHAPE_TRIANGLE: _ClassVar[MarkShape]

class MarkLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARK_LEVEL_INFO: _ClassVar[MarkLevel]
    MARK_LEVEL_WARNING: _ClassVar[MarkLevel]
    MARK_LEVEL_ERROR: _ClassVar[MarkLevel]

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_WARN: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]
INTERVAL_1M: Interval
INTERVAL_5M: Interval
INTERVAL_15M: Interval
INTERVAL_30M: Interval
INTERVAL_1H: Interval
INTERVAL_4H: Interval
INTERVAL_6H: Interval
INTERVAL_8H: Interval
INTERVAL_12H: Interval
INTERVAL_1D: Interval
INTERVAL_1W: Interval
INTERVAL_1MONTH: Interval
POSITION_TYPE_LONG: PositionType
POSITION_TYPE_SHORT: PositionType
SIGNAL_TYPE_BUY_LONG: SignalType
SIGNAL_TYPE_SELL_LONG: SignalType
SIGNAL_TYPE_BUY_SHORT: SignalType
SIGNAL_TYPE_SELL_SHORT: SignalType
SIGNAL_TYPE_NO_ACTION: SignalType
SIGNAL_TYPE_CLOSE_POSITION: SignalType
SIGNAL_TYPE_WAIT: SignalType
SIGNAL_TYPE_ABORT: SignalType
INDICATOR_RSI: IndicatorType
INDICATOR_MACD: IndicatorType
INDICATOR_BOLLINGER_BANDS: IndicatorType
INDICATOR_STOCHASTIC_OSCILLATOR: IndicatorType
INDICATOR_WILLIAMS_R: IndicatorType
INDICATOR_ADX: IndicatorType
INDICATOR_CCI: IndicatorType
INDICATOR_AO: IndicatorType
INDICATOR_TREND_STRENGTH: IndicatorType
INDICATOR_RANGE_FILTER: IndicatorType
INDICATOR_EMA: IndicatorType
INDICATOR_WADDAH_ATTAR: IndicatorType
INDICATOR_ATR: IndicatorType
INDICATOR_MA: IndicatorType
INDICATOR_PSY: IndicatorType
ORDER_STATUS_PENDING: OrderStatus
ORDER_STATUS_FILLED: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus
ORDER_STATUS_REJECTED: OrderStatus
ORDER_STATUS_FAILED: OrderStatus
PURCHASE_TYPE_BUY: PurchaseType
PURCHASE_TYPE_SELL: PurchaseType
ORDER_TYPE_MARKET: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_REASON_STOP_LOSS: OrderReason
ORDER_REASON_TAKE_PROFIT: OrderReason
ORDER_REASON_STRATEGY: OrderReason
MARK_SHAPE_CIRCLE: MarkShape
MARK_SHAPE_SQUARE: MarkShape
MARK_SHAPE_TRIANGLE: MarkShape
MARK_LEVEL_INFO: MarkLevel
MARK_LEVEL_WARNING: MarkLevel
MARK_LEVEL_ERROR: MarkLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_WARN: LogLevel
LOG_LEVEL_ERROR: LogLevel

class MarketData(_message.Message):
    __slots__ = ("symbol", "high", "low", "open", "close", "volume", "time")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    high: float
    low: float
    open: float
    close: float
    volume: float
    time: _timestamp_pb2.Timestamp
    def __init__(self, symbol: _Optional[str] = ..., high: _Optional[float] = ..., low: _Optional[float] = ..., open: _Optional[float] = ..., close: _Optional[float] = ..., volume: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetConfigSchemaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigSchemaResponse(_message.Message):
    __slots__ = ("schema",)
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    schema: str
    def __init__(self, schema: _Optional[str] = ...) -> None: ...

class GetDescriptionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDescriptionResponse(_message.Message):
    __slots__ = ("description",)
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    description: str
    def __init__(self, description: _Optional[str] = ...) -> None: ...

class InitializeRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: str
    def __init__(self, config: _Optional[str] = ...) -> None: ...

class ProcessDataRequest(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: MarketData
    def __init__(self, data: _Optional[_Union[MarketData, _Mapping]] = ...) -> None: ...

class NameRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NameResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetIdentifierRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIdentifierResponse(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class GetRangeRequest(_message.Message):
    __slots__ = ("symbol", "start_time", "end_time", "interval")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    interval: Interval
    def __init__(self, symbol: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval: _Optional[_Union[Interval, str]] = ...) -> None: ...

class GetRangeResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[MarketData]
    def __init__(self, data: _Optional[_Iterable[_Union[MarketData, _Mapping]]] = ...) -> None: ...

class ReadLastDataRequest(_message.Message):
    __slots__ = ("symbol",)
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    def __init__(self, symbol: _Optional[str] = ...) -> None: ...

class ExecuteSQLRequest(_message.Message):
    __slots__ = ("query", "params")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    query: str
    params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query: _Optional[str] = ..., params: _Optional[_Iterable[str]] = ...) -> None: ...

class SQLResult(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.ScalarMap[str, str]
    def __init__(self, fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExecuteSQLResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SQLResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SQLResult, _Mapping]]] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ConfigureRequest(_message.Message):
    __slots__ = ("indicator_type", "config")
    INDICATOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    indicator_type: IndicatorType
    config: str
    def __init__(self, indicator_type: _Optional[_Union[IndicatorType, str]] = ..., config: _Optional[str] = ...) -> None: ...

class GetSignalRequest(_message.Message):
    __slots__ = ("indicator_type", "market_data")
    INDICATOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MARKET_DATA_FIELD_NUMBER: _ClassVar[int]
    indicator_type: IndicatorType
    market_data: MarketData
    def __init__(self, indicator_type: _Optional[_Union[IndicatorType, str]] = ..., market_data: _Optional[_Union[MarketData, _Mapping]] = ...) -> None: ...

class GetSignalResponse(_message.Message):
    __slots__ = ("timestamp", "type", "name", "reason", "rawValue", "symbol", "indicatorType")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RAWVALUE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    INDICATORTYPE_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    type: SignalType
    name: str
    reason: str
    rawValue: str
    symbol: str
    indicatorType: IndicatorType
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[SignalType, str]] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ..., rawValue: _Optional[str] = ..., symbol: _Optional[str] = ..., indicatorType: _Optional[_Union[IndicatorType, str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: str
    def __init__(self, value: _Optional[str] = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class PlaceMultipleOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[ExecuteOrder]
    def __init__(self, orders: _Optional[_Iterable[_Union[ExecuteOrder, _Mapping]]] = ...) -> None: ...

class GetPositionsResponse(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ...) -> None: ...

class GetPositionRequest(_message.Message):
    __slots__ = ("symbol",)
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    def __init__(self, symbol: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderStatusRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: OrderStatus
    def __init__(self, status: _Optional[_Union[OrderStatus, str]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ExecuteOrderTakeProfitOrStopLoss(_message.Message):
    __slots__ = ("symbol", "side", "order_type", "price")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    side: PurchaseType
    order_type: OrderType
    price: float
    def __init__(self, symbol: _Optional[str] = ..., side: _Optional[_Union[PurchaseType, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., price: _Optional[float] = ...) -> None: ...

class ExecuteOrder(_message.Message):
    __slots__ = ("id", "symbol", "side", "order_type", "reason", "price", "strategy_name", "quantity", "take_profit", "stop_loss", "position_type")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_NAME_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    POSITION_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    symbol: str
    side: PurchaseType
    order_type: OrderType
    reason: Reason
    price: float
    strategy_name: str
    quantity: float
    take_profit: ExecuteOrderTakeProfitOrStopLoss
    stop_loss: ExecuteOrderTakeProfitOrStopLoss
    position_type: PositionType
    def __init__(self, id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[PurchaseType, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., reason: _Optional[_Union[Reason, _Mapping]] = ..., price: _Optional[float] = ..., strategy_name: _Optional[str] = ..., quantity: _Optional[float] = ..., take_profit: _Optional[_Union[ExecuteOrderTakeProfitOrStopLoss, _Mapping]] = ..., stop_loss: _Optional[_Union[ExecuteOrderTakeProfitOrStopLoss, _Mapping]] = ..., position_type: _Optional[_Union[PositionType, str]] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "symbol", "side", "quantity", "price", "timestamp", "is_completed", "reason", "strategy_name", "fee", "position_type")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    IS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_NAME_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    POSITION_TYPE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    symbol: str
    side: PurchaseType
    quantity: float
    price: float
    timestamp: _timestamp_pb2.Timestamp
    is_completed: bool
    reason: Reason
    strategy_name: str
    fee: float
    position_type: PositionType
    def __init__(self, order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[PurchaseType, str]] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., is_completed: _Optional[bool] = ..., reason: _Optional[_Union[Reason, _Mapping]] = ..., strategy_name: _Optional[str] = ..., fee: _Optional[float] = ..., position_type: _Optional[_Union[PositionType, str]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("symbol", "quantity", "total_in_quantity", "total_out_quantity", "total_in_amount", "total_out_amount", "total_in_fee", "total_out_fee", "open_timestamp", "strategy_name")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_IN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_OUT_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_IN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_OUT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_IN_FEE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_OUT_FEE_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_NAME_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    quantity: float
    total_in_quantity: float
    total_out_quantity: float
    total_in_amount: float
    total_out_amount: float
    total_in_fee: float
    total_out_fee: float
    open_timestamp: _timestamp_pb2.Timestamp
    strategy_name: str
    def __init__(self, symbol: _Optional[str] = ..., quantity: _Optional[float] = ..., total_in_quantity: _Optional[float] = ..., total_out_quantity: _Optional[float] = ..., total_in_amount: _Optional[float] = ..., total_out_amount: _Optional[float] = ..., total_in_fee: _Optional[float] = ..., total_out_fee: _Optional[float] = ..., open_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., strategy_name: _Optional[str] = ...) -> None: ...

class MarkRequest(_message.Message):
    __slots__ = ("market_data", "mark")
    MARKET_DATA_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    market_data: MarketData
    mark: Mark
    def __init__(self, market_data: _Optional[_Union[MarketData, _Mapping]] = ..., mark: _Optional[_Union[Mark, _Mapping]] = ...) -> None: ...

class GetMarkersResponse(_message.Message):
    __slots__ = ("markers",)
    MARKERS_FIELD_NUMBER: _ClassVar[int]
    markers: _containers.RepeatedCompositeFieldContainer[Mark]
    def __init__(self, markers: _Optional[_Iterable[_Union[Mark, _Mapping]]] = ...) -> None: ...

class Mark(_message.Message):
    __slots__ = ("color", "shape", "title", "message", "category", "signal_type", "level")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    color: str
    shape: MarkShape
    title: str
    message: str
    category: str
    signal_type: SignalType
    level: MarkLevel
    def __init__(self, color: _Optional[str] = ..., shape: _Optional[_Union[MarkShape, str]] = ..., title: _Optional[str] = ..., message: _Optional[str] = ..., category: _Optional[str] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., level: _Optional[_Union[MarkLevel, str]] = ...) -> None: ...

class AccountInfo(_message.Message):
    __slots__ = ("balance", "equity", "buying_power", "realized_pnl", "unrealized_pnl", "total_fees", "margin_used")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    BUYING_POWER_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEES_FIELD_NUMBER: _ClassVar[int]
    MARGIN_USED_FIELD_NUMBER: _ClassVar[int]
    balance: float
    equity: float
    buying_power: float
    realized_pnl: float
    unrealized_pnl: float
    total_fees: float
    margin_used: float
    def __init__(self, balance: _Optional[float] = ..., equity: _Optional[float] = ..., buying_power: _Optional[float] = ..., realized_pnl: _Optional[float] = ..., unrealized_pnl: _Optional[float] = ..., total_fees: _Optional[float] = ..., margin_used: _Optional[float] = ...) -> None: ...

class GetOpenOrdersResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[OpenOrder]
    def __init__(self, orders: _Optional[_Iterable[_Union[OpenOrder, _Mapping]]] = ...) -> None: ...

class OpenOrder(_message.Message):
    __slots__ = ("id", "symbol", "side", "order_type", "quantity", "price", "strategy_name", "position_type", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_NAME_FIELD_NUMBER: _ClassVar[int]
    POSITION_TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    symbol: str
    side: PurchaseType
    order_type: OrderType
    quantity: float
    price: float
    strategy_name: str
    position_type: PositionType
    reason: Reason
    def __init__(self, id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[PurchaseType, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., strategy_name: _Optional[str] = ..., position_type: _Optional[_Union[PositionType, str]] = ..., reason: _Optional[_Union[Reason, _Mapping]] = ...) -> None: ...

class GetTradesRequest(_message.Message):
    __slots__ = ("symbol", "start_time", "end_time", "limit")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, symbol: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class GetTradesResponse(_message.Message):
    __slots__ = ("trades",)
    TRADES_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[TradeRecord]
    def __init__(self, trades: _Optional[_Iterable[_Union[TradeRecord, _Mapping]]] = ...) -> None: ...

class TradeRecord(_message.Message):
    __slots__ = ("order_id", "symbol", "side", "quantity", "price", "executed_at", "fee", "pnl", "position_type", "strategy_name", "reason", "cumulative_pnl")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_AT_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    PNL_FIELD_NUMBER: _ClassVar[int]
    POSITION_TYPE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_PNL_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    symbol: str
    side: PurchaseType
    quantity: float
    price: float
    executed_at: _timestamp_pb2.Timestamp
    fee: float
    pnl: float
    position_type: PositionType
    strategy_name: str
    reason: Reason
    cumulative_pnl: float
    def __init__(self, order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[PurchaseType, str]] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., executed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fee: _Optional[float] = ..., pnl: _Optional[float] = ..., position_type: _Optional[_Union[PositionType, str]] = ..., strategy_name: _Optional[str] = ..., reason: _Optional[_Union[Reason, _Mapping]] = ..., cumulative_pnl: _Optional[float] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("level", "message", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    level: LogLevel
    message: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, level: _Optional[_Union[LogLevel, str]] = ..., message: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...
