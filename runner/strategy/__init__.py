"""The wasm strategy host: load a strategy built for the argo-trading plugin ABI and call it.

The engine implements ``HostApi`` (the strategy's view of the session) and drives a
``WasmStrategy`` bar by bar. functions.py answers the host functions a strategy calls,
from the back ends in hostapi/. printable.py makes the strategy's words safe to print; the
console uses it too. Everything else in this package is private.
"""

from kubetrade.runner.strategy.api import HostApi
from kubetrade.runner.strategy.host import (
    SandboxLimits,
    StrategyError,
    StrategyLoadError,
    WasmStrategy,
)

__all__ = ["HostApi", "SandboxLimits", "StrategyError", "StrategyLoadError", "WasmStrategy"]
