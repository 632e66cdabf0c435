"""Typed engine events and the callback protocol.

The engine reports everything it does as one of these events. Users either
iterate them (`async for event in engine.run()`) or hand the engine an
`EngineCallbacks` (`await engine.run_with(callbacks)`). Events carry snapshots:
an Order inside an event never changes after the event is emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetrade.runner.domain import Bar, Fill, Order


@dataclass(frozen=True, slots=True)
class EngineStarted:
    symbols: tuple[str, ...]
    interval: str
    strategy: str  # the strategy's own name


@dataclass(frozen=True, slots=True)
class Summary:
    bars: int
    orders: int
    fills: int
    rejected: int
    realized_pnl: float
    unrealized_pnl: float
    equity: float
    strategy_errors: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class EngineStopped:
    summary: Summary
    error: str | None = None  # None for a clean stop (end of data, stop request)


@dataclass(frozen=True, slots=True)
class MarketData:
    bar: Bar


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """The strategy's order passed the risk check and goes to the broker."""

    order: Order


@dataclass(frozen=True, slots=True)
class OrderFilled:
    order: Order
    fill: Fill


@dataclass(frozen=True, slots=True)
class OrderRejected:
    """Refused by the risk check (REJECTED) or by the venue (FAILED)."""

    order: Order


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    order: Order


@dataclass(frozen=True, slots=True)
class EngineError:
    """A non-fatal problem outside the strategy; the engine carries on."""

    message: str


@dataclass(frozen=True, slots=True)
class StrategyError:
    """The strategy returned an error or trapped while handling `bar`."""

    bar: Bar | None
    message: str


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """The market data feed connected, disconnected or reconnected."""

    provider: str
    connected: bool
    reconnects: int
    lag_ms: int | None  # now minus the newest bar's close time (wall clock)
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class StrategyLog:
    """A line the strategy logged through the host (its level is the strategy's word,
    not a failure: a failed call is a StrategyError)."""

    time: int
    level: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    symbol: str = ""  # the symbol of the bar being processed; "" outside a bar (Initialize)


Event = (
    EngineStarted
    | EngineStopped
    | MarketData
    | OrderPlaced
    | OrderFilled
    | OrderRejected
    | OrderCancelled
    | EngineError
    | StrategyError
    | StrategyLog
    | ProviderStatus
)


@dataclass(slots=True)
class EngineCallbacks:
    """Lifecycle callbacks; any may be left out. `on_engine_stop` is always called."""

    on_engine_start: Callable[[EngineStarted], None] | None = None
    on_engine_stop: Callable[[EngineStopped], None] | None = None
    on_market_data: Callable[[MarketData], None] | None = None
    on_order_placed: Callable[[OrderPlaced], None] | None = None
    on_order_filled: Callable[[OrderFilled], None] | None = None
    on_order_rejected: Callable[[OrderRejected], None] | None = None
    on_order_cancelled: Callable[[OrderCancelled], None] | None = None
    on_error: Callable[[EngineError], None] | None = None
    on_strategy_error: Callable[[StrategyError], None] | None = None
    on_strategy_log: Callable[[StrategyLog], None] | None = None
    on_provider_status: Callable[[ProviderStatus], None] | None = None

    def dispatch(self, event: Event) -> None:
        handler: Callable[[Any], None] | None = getattr(self, _HANDLERS[type(event)])
        if handler is not None:
            handler(event)


_HANDLERS: dict[type, str] = {
    EngineStarted: "on_engine_start",
    EngineStopped: "on_engine_stop",
    MarketData: "on_market_data",
    OrderPlaced: "on_order_placed",
    OrderFilled: "on_order_filled",
    OrderRejected: "on_order_rejected",
    OrderCancelled: "on_order_cancelled",
    EngineError: "on_error",
    StrategyError: "on_strategy_error",
    StrategyLog: "on_strategy_log",
    ProviderStatus: "on_provider_status",
}
