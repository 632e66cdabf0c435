"""Crash points: named places where a test can make the runner die with SIGKILL.

The crash-restart tests must kill the runner at exact instants too, such as
between journaling an order and sending it, which random kills from outside
would rarely hit. `KUBETRADE_CRASH_AT=<point>:<n>` kills the process the n-th
time it passes <point>. Unset (always, outside those tests) it costs one
dictionary lookup per call.
"""

from __future__ import annotations

import os
import signal

_plan: dict[str, int] = {}
for item in filter(None, os.environ.get("KUBETRADE_CRASH_AT", "").split(",")):
    point, _, count = item.partition(":")
    _plan[point] = int(count or "1")


# Whether any point is planned: a call site on every bar tests this instead of calling.
ARMED = bool(_plan)


def crash_point(name: str) -> None:
    remaining = _plan.get(name)
    if remaining is None:
        return
    if remaining <= 1:
        os.kill(os.getpid(), signal.SIGKILL)
    _plan[name] = remaining - 1
