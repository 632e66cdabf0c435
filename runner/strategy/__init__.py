"""The wasm strategy host: load a strategy built for the argo-trading plugin ABI and call it.

The engine implements ``HostApi`` (the strategy's view of the session) and drives a
``WasmStrategy`` bar by bar. Everything else in this package is private.
"""

from kubetrade.runner.strategy.api import HostApi
from kubetrade.runner.strategy.host import (
    SandboxLimits,
    StrategyError,
    StrategyLoadError,
    WasmStrategy,
)

__all__ = ["HostApi", "SandboxLimits", "StrategyError", "StrategyLoadError", "WasmStrategy"]
