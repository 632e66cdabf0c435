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

TRIM_SECONDS: Final = 10.0
# mallopt parameters (malloc.h) and their values here: blocks of 128 KiB and more (a list
# response, a watch's buffers) get pages of their own that go back when freed. glibc
# otherwise raises that threshold each time such a block is freed, up to 32 MiB, and from
# then on serves the operator's large transient buffers from a heap that keeps its peak.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 128 * 1024
TRIM_THRESHOLD_BYTES: Final = 1024 * 1024


def configure() -> bool:
    """Fix glibc's thresholds (see above); False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


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
