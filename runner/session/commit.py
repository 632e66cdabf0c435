"""When a group of quiet bars is committed: after so many bars, or so much time.

Bars on which nothing leaves the process (no order, no cancel) need not be
durable one by one: after a crash they are processed again, with the same
result, because nothing outside saw them. So they are committed in groups,
which costs one fsync per group instead of one per bar. The bounds keep what a
crash can take back small: at most `max_bars` bars, or `max_seconds` of work.
Whatever must be durable before it acts (an order intent) is committed at once,
whatever the group holds (see Session.commit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class GroupCommit:
    max_bars: int = 1000
    max_seconds: float = 0.2
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _bars: int = 0
    _since: float = 0.0

    def bar_done(self) -> bool:
        """Count a finished bar; True when the group is due for its commit."""
        now = self.clock()
        if not self._bars:
            self._since = now
        self._bars += 1
        return self._bars >= self.max_bars or now - self._since >= self.max_seconds

    def committed(self) -> None:
        self._bars = 0
