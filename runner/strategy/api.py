"""What the engine implements for a strategy: the StrategyApi service of the ABI.

``HostApi`` has one method per host import, named exactly like the import, taking
the parsed request message and returning the response message. ``DISPATCH`` maps
each import name to its request class and handler name, so the wasm host can
parse the guest's bytes before it calls the handler; ``RESPONSES`` names the
message the guest expects back.

A handler reports failure by raising: the host turns the exception into a trap
that aborts the strategy's current call (argo semantics), and the caller sees a
StrategyError naming the host function and the exception.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Protocol

from google.protobuf.empty_pb2 import Empty

from kubetrade.runner.strategy.pb import strategy_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Mapping

    from google.protobuf.message import Message

    from kubetrade.runner.strategy.wire import Packed


class HostApi(Protocol):
    # Market data window
    def get_range(self, request: pb.GetRangeRequest) -> pb.GetRangeResponse: ...
    def read_last_data(self, request: pb.ReadLastDataRequest) -> pb.MarketData: ...
    def execute_sql(self, request: pb.ExecuteSQLRequest) -> pb.ExecuteSQLResponse: ...
    def count(self, request: pb.CountRequest) -> pb.CountResponse: ...

    # Indicators
    def configure_indicator(self, request: pb.ConfigureRequest) -> Empty: ...
    def get_signal(self, request: pb.GetSignalRequest) -> pb.GetSignalResponse: ...

    # Strategy key/value cache
    def get_cache(self, request: pb.GetRequest) -> pb.GetResponse: ...
    def set_cache(self, request: pb.SetRequest) -> Empty: ...

    # Trading
    def place_order(self, request: pb.ExecuteOrder) -> Empty: ...
    def place_multiple_orders(self, request: pb.PlaceMultipleOrdersRequest) -> Empty: ...
    def get_positions(self, request: Empty) -> pb.GetPositionsResponse | Packed: ...
    def get_position(self, request: pb.GetPositionRequest) -> pb.Position | Packed: ...
    def cancel_order(self, request: pb.CancelOrderRequest) -> Empty: ...
    def cancel_all_orders(self, request: Empty) -> Empty: ...
    def get_order_status(self, request: pb.GetOrderStatusRequest) -> pb.GetOrderStatusResponse: ...
    def get_account_info(self, request: Empty) -> pb.AccountInfo: ...
    def get_open_orders(self, request: Empty) -> pb.GetOpenOrdersResponse: ...
    def get_trades(self, request: pb.GetTradesRequest) -> pb.GetTradesResponse: ...

    # Chart markers
    def mark(self, request: pb.MarkRequest) -> Empty: ...
    def get_markers(self, request: Empty) -> pb.GetMarkersResponse: ...

    # Logging
    def log(self, request: pb.LogRequest) -> Empty: ...


# import name -> (request message class, HostApi method name). The method name equals the
# import name today; keeping it explicit lets a rename on either side stay a one-line change.
DISPATCH: Final[Mapping[str, tuple[type[Message], str]]] = MappingProxyType(
    {
        "get_range": (pb.GetRangeRequest, "get_range"),
        "read_last_data": (pb.ReadLastDataRequest, "read_last_data"),
        "execute_sql": (pb.ExecuteSQLRequest, "execute_sql"),
        "count": (pb.CountRequest, "count"),
        "configure_indicator": (pb.ConfigureRequest, "configure_indicator"),
        "get_signal": (pb.GetSignalRequest, "get_signal"),
        "get_cache": (pb.GetRequest, "get_cache"),
        "set_cache": (pb.SetRequest, "set_cache"),
        "place_order": (pb.ExecuteOrder, "place_order"),
        "place_multiple_orders": (pb.PlaceMultipleOrdersRequest, "place_multiple_orders"),
        "get_positions": (Empty, "get_positions"),
        "get_position": (pb.GetPositionRequest, "get_position"),
        "cancel_order": (pb.CancelOrderRequest, "cancel_order"),
        "cancel_all_orders": (Empty, "cancel_all_orders"),
        "get_order_status": (pb.GetOrderStatusRequest, "get_order_status"),
        "get_account_info": (Empty, "get_account_info"),
        "get_open_orders": (Empty, "get_open_orders"),
        "get_trades": (pb.GetTradesRequest, "get_trades"),
        "mark": (pb.MarkRequest, "mark"),
        "get_markers": (Empty, "get_markers"),
        "log": (pb.LogRequest, "log"),
    }
)

# import name -> the response message class the guest will parse. Checked at run time because
# a handler that returns the wrong message (or None) would otherwise be misread by the guest.
RESPONSES: Final[Mapping[str, type[Message]]] = MappingProxyType(
    {
        "get_range": pb.GetRangeResponse,
        "read_last_data": pb.MarketData,
        "execute_sql": pb.ExecuteSQLResponse,
        "count": pb.CountResponse,
        "configure_indicator": Empty,
        "get_signal": pb.GetSignalResponse,
        "get_cache": pb.GetResponse,
        "set_cache": Empty,
        "place_order": Empty,
        "place_multiple_orders": Empty,
        "get_positions": pb.GetPositionsResponse,
        "get_position": pb.Position,
        "cancel_order": Empty,
        "cancel_all_orders": Empty,
        "get_order_status": pb.GetOrderStatusResponse,
        "get_account_info": pb.AccountInfo,
        "get_open_orders": pb.GetOpenOrdersResponse,
        "get_trades": pb.GetTradesResponse,
        "mark": Empty,
        "get_markers": pb.GetMarkersResponse,
        "log": Empty,
    }
)
