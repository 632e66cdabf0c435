"""Memory the operator has freed, handed back to the system now and then.

At a thousand sessions the operator's peaks are its watches' first listings and the
bursts of passes after a takeover or a fleet-wide change: large JSON texts and the
dicts parsed from them, freed a moment later. glibc keeps freed heap memory for reuse
rather than returning it, so the resident size stays at the peak for good; a Pod's
memory limit is set against that figure. `malloc_trim(0)` returns the free pages at the
top of the heap and in its holes. It is glibc's and is skipped where there is none
(musl, macOS): the operator works the same, only holding on to its peak.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable
from typing import Final

log = logging.getLogger("kubetrade.operator.memory")

TRIM_SECONDS: Final = 30.0


def _malloc_trim() -> Callable[[], None] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run


async def trim_now_and_then(seconds: float = TRIM_SECONDS) -> None:
    """Every `seconds`, give freed heap memory back (a few milliseconds, off the loop)."""
    trim = _malloc_trim()
    if trim is None:
        log.debug("no malloc_trim here (not glibc): memory is kept at its peak")
        return
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(trim)
