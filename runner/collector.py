"""The garbage collector kept off what running sessions hold for their whole life.

When a session's bar loop starts, what is alive (imported modules, the compiled
strategy, the warm-up window) stays alive until it stops. The collector's full
passes would scan all of it again and again, stalling a bar for ~10 ms each
time; frozen (``gc.freeze``), those objects are left out. Garbage is collected
first so no dead cycle is frozen with them. Sessions sharing a process share
the freeze: it is lifted when the last one stops, so a process that runs
session after session still collects what each one left behind.
"""

from __future__ import annotations

import gc

_running = 0  # sessions whose bar loop runs now


def session_started() -> None:
    global _running
    if _running == 0:
        gc.collect()
        gc.freeze()
    _running += 1


def session_stopped() -> None:
    global _running
    _running -= 1
    if _running == 0:
        gc.unfreeze()
