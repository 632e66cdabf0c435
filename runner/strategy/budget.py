"""What one strategy call may make the host spend: time, orders, log lines, marks.

Every limit is a budget for the whole strategy (DESIGN.md). wasmtime bounds
what runs inside the sandbox (the epoch deadline, the store's memory and table
limits); this bounds what a strategy makes the host do on its behalf, which
wasmtime cannot see: time inside host functions and WASI calls, and host
memory and journal rows grown by host calls. Each ``WasmStrategy`` owns one
``CallBudget``; its host functions (``functions.HostFunctions``) are handed
it when the strategy loads, and the per-call counts start over with each
export call (one bar's ``process_data``, or ``initialize``). A strategy over
a cap traps with a message naming the cap; the caps are the constants below
(the guest's output and WASI calls have theirs in ``output`` and ``wasi``), and
strategies/README.md lists them all for strategy authors.
"""

from __future__ import annotations

import math
from typing import Final, Protocol, runtime_checkable

from wasmtime import Trap

from kubetrade.runner.strategy import ticker

# -- per strategy call --------------------------------------------------------------------
MAX_ORDERS_PER_CALL: Final = 100  # place_order, and each order of place_multiple_orders
MAX_LOG_LINES_PER_CALL: Final = 100
MAX_LOG_BYTES_PER_CALL: Final = 64 * 1024  # the lines' encoded size (message and fields)
MAX_LOG_FIELDS: Final = 32  # per line
MAX_MARKS_PER_CALL: Final = 20
MAX_MARK_BYTES: Final = 4 * 1024  # one mark's encoded size (its texts, mostly)
# -- per session (what the host keeps for the strategy) -----------------------------------
MAX_MARKS: Final = 10_000
MAX_CACHE_ENTRIES: Final = 10_000
MAX_CACHE_KEY_CHARS: Final = 1024
MAX_CACHE_VALUE_CHARS: Final = 1 << 20
MAX_CACHE_CHARS: Final = 16 << 20  # keys and values together

_NEVER: Final = 1 << 62  # a deadline no tick count reaches


class CallTimeout(Trap):
    """Host code found the call's deadline passed: the call traps as a timeout."""

    def __init__(self, where: str) -> None:
        super().__init__(f"the strategy call ran past its deadline (in {where})")
        self.where = where  # the host or WASI function that noticed


class OverBudget(Exception):
    """A host function's request would go over one of the caps above."""


class CallBudget:
    """One strategy's deadline, in epoch ticks, and what its current call has spent."""

    __slots__ = ("allowed", "deadline", "log_bytes", "logs", "marks", "orders", "spent")

    def __init__(self, timeout_s: float | None) -> None:
        # +1: ticks are ragged. None: no deadline (host functions used without a strategy).
        self.allowed = 0 if timeout_s is None else math.ceil(timeout_s / ticker.TICK_S) + 1
        self.deadline = _NEVER if timeout_s is None else 0
        self.orders = self.logs = self.log_bytes = self.marks = 0
        self.spent = False  # whether any count above moved since the last reset

    @property
    def timeout_s(self) -> float:
        return (self.allowed - 1) * ticker.TICK_S

    def arm(self) -> None:
        """Give the next call its full time (``WasmStrategy`` calls this with the epoch's)."""
        self.deadline = ticker.ticks + self.allowed

    def check(self, where: str) -> None:
        """Trap the call if its deadline has passed. Host and WASI functions call this first."""
        if ticker.ticks >= self.deadline:
            raise CallTimeout(where)

    def seconds_left(self) -> float:
        """How long the call may still run (a host function that can wait bounds it by this)."""
        return max(0.0, (self.deadline - ticker.ticks) * ticker.TICK_S)

    def reset(self) -> None:
        """A new export call: its counts start at zero."""
        self.orders = self.logs = self.log_bytes = self.marks = 0
        self.spent = False

    def orders_placed(self, n: int) -> None:
        self.spent = True
        self.orders += n
        if self.orders > MAX_ORDERS_PER_CALL:
            raise OverBudget(
                f"more than {MAX_ORDERS_PER_CALL} orders in one strategy call (the most a "
                "strategy may place per bar)"
            )

    def log_line(self, size: int) -> None:
        self.spent = True
        self.logs += 1
        self.log_bytes += size
        if self.logs > MAX_LOG_LINES_PER_CALL:
            raise OverBudget(
                f"more than {MAX_LOG_LINES_PER_CALL} log lines in one strategy call (the most "
                "a strategy may log per bar)"
            )
        if self.log_bytes > MAX_LOG_BYTES_PER_CALL:
            raise OverBudget(
                f"more than {MAX_LOG_BYTES_PER_CALL} bytes of log text in one strategy call "
                "(the most a strategy may log per bar)"
            )

    def mark_added(self) -> None:
        self.spent = True
        self.marks += 1
        if self.marks > MAX_MARKS_PER_CALL:
            raise OverBudget(
                f"more than {MAX_MARKS_PER_CALL} marks in one strategy call (the most a "
                "strategy may mark per bar)"
            )


@runtime_checkable
class Budgeted(Protocol):
    """A HostApi that charges the calling strategy's budget; ``WasmStrategy`` hands it its own."""

    budget: CallBudget
