"""The fence: whether this operator process may write to the API server now.

A standalone operator (one replica) always may. A leader-election candidate (leader.py)
may only while it holds the Lease: until `valid_until` on the monotonic clock, which is
set from the moment it *sent* its last successful renewal plus the renew deadline, a few
seconds short of the lease's duration. Another candidate takes the Lease over no sooner
than a lease duration after it saw that renewal, so the old leader's last write leaves
before the new leader's first, as long as the two clocks run at the same rate.

The monotonic clock keeps counting while a process is stopped (SIGSTOP, a frozen VM, a
long pause), so a leader that is paused and resumes finds its fence closed and writes
nothing: `Kube` asks `check()` immediately before every write it sends, and the
leader's renew loop then finds the Lease taken and stops the operator.

What a check cannot see is a write already on its way: waiting for a connection, or in
the API server's queue. `Kube` gives each write only the time left on the fence, so the
client has given it up (lease duration - renew deadline) seconds before any standby can
take over; a request the server had already begun is the case no client-side fence
closes, which is why the writes that matter carry a precondition (a resourceVersion, a
pod's uid) that a newer leader's writes have moved on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


class Fenced(Exception):
    """This process does not hold the lease (or no longer): it must not write."""


@dataclass(slots=True)
class Fence:
    valid_until: float = math.inf  # monotonic seconds; inf: standalone, always open

    @classmethod
    def closed(cls) -> Fence:
        return cls(valid_until=-math.inf)

    def open_until(self, when: float) -> None:
        self.valid_until = when

    def close(self) -> None:
        self.valid_until = -math.inf

    def is_open(self) -> bool:
        return time.monotonic() < self.valid_until

    def seconds_left(self) -> float:
        return self.valid_until - time.monotonic()

    def check(self) -> None:
        if not self.is_open():
            raise Fenced("this operator does not hold the leader lease: not writing")
