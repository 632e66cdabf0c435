"""The process's epoch ticker: one thread that advances the wasmtime engine's epoch.

wasmtime checks a store's epoch deadline in wasm code (at function entries and
loop headers); the ticker makes the epoch move. ``ticks`` counts the same
ticks as Python sees them, so host code can check the same deadline
(``budget.CallBudget``) without asking wasmtime.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from wasmtime import Engine

TICK_S: Final = 0.01  # epoch period: the timeout's resolution

#: Epoch ticks so far, as Python sees them. The ticker bumps the engine's epoch first,
#: then this, so ``ticks`` never runs ahead of the epoch wasm code sees.
ticks = 0


def start(engine: Engine) -> None:
    """Start the one ticker thread of ``engine`` (call once per engine)."""
    threading.Thread(target=_tick, args=(engine,), name="kubetrade-wasm-epoch", daemon=True).start()


def _tick(engine: Engine) -> None:
    global ticks
    while True:
        time.sleep(TICK_S)
        engine.increment_epoch()
        ticks += 1
