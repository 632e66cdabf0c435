"""The wasm strategy host: load a strategy built for the argo-trading plugin ABI and call it.

The engine implements ``HostApi`` (the strategy's view of the session) and drives a
``WasmStrategy`` bar by bar. functions.py answers the host functions a strategy calls,
from the back ends in hostapi/. printable.py makes the strategy's words safe to print; the
console uses it too. Everything else in this package is private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetrade.runner.strategy.api import HostApi
    from kubetrade.runner.strategy.host import (
        SandboxLimits,
        StrategyError,
        StrategyLoadError,
        WasmStrategy,
    )

__all__ = ["HostApi", "SandboxLimits", "StrategyError", "StrategyLoadError", "WasmStrategy"]

# Loaded on first use: what needs only abi.py (the operator's build info, for one) does
# not pay for wasmtime and the host (~19 MB resident in every operator replica).
_HOME = {
    "HostApi": "api",
    "SandboxLimits": "host",
    "StrategyError": "host",
    "StrategyLoadError": "host",
    "WasmStrategy": "host",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
