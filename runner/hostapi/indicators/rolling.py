"""Incremental building blocks: each takes one input per bar in O(1) (amortized).

The averages follow TA-Lib's definitions, the reference the parity tests use:
an EMA and a Wilder average both start from the simple mean of their first
`period` inputs; before that they have no value (None).
"""

from __future__ import annotations

import math
from collections import deque


class Mean:
    """Simple moving average of the last `period` inputs."""

    __slots__ = ("_buf", "_period", "_since_resum", "_sum")

    def __init__(self, period: int) -> None:
        self._period = period
        self._buf: deque[float] = deque()
        self._sum = 0.0
        self._since_resum = 0

    def push(self, x: float) -> float | None:
        buf = self._buf
        buf.append(x)
        self._sum += x
        if len(buf) > self._period:
            self._sum -= buf.popleft()
        self._since_resum += 1
        if self._since_resum >= self._period:
            # A running sum drifts by rounding over millions of bars; re-adding
            # the buffer once per period keeps it exact at O(1) amortized cost.
            self._sum = math.fsum(buf)
            self._since_resum = 0
        return self._sum / self._period if len(buf) == self._period else None

    @property
    def window(self) -> deque[float]:
        return self._buf


class Ema:
    """Exponential moving average, k = 2 / (period + 1), seeded by the first simple mean."""

    __slots__ = ("_k", "_seed", "value")

    def __init__(self, period: int) -> None:
        self._k = 2.0 / (period + 1)
        self._seed: Mean | None = Mean(period)
        self.value: float | None = None

    def push(self, x: float) -> float | None:
        if self._seed is not None:
            self.value = self._seed.push(x)
            if self.value is not None:
                self._seed = None
            return self.value
        assert self.value is not None
        self.value = (x - self.value) * self._k + self.value
        return self.value


class Wilder:
    """Wilder's smoothing (RMA): (previous * (n - 1) + x) / n, seeded by the first simple mean."""

    __slots__ = ("_n", "_seed", "value")

    def __init__(self, period: int) -> None:
        self._n = period
        self._seed: Mean | None = Mean(period)
        self.value: float | None = None

    def push(self, x: float) -> float | None:
        if self._seed is not None:
            self.value = self._seed.push(x)
            if self.value is not None:
                self._seed = None
            return self.value
        assert self.value is not None
        self.value = (self.value * (self._n - 1) + x) / self._n
        return self.value


class Extreme:
    """Highest (or lowest) of the last `period` inputs, with a monotonic queue."""

    __slots__ = ("_count", "_highest", "_period", "_queue")

    def __init__(self, period: int, *, highest: bool) -> None:
        self._period = period
        self._highest = highest
        self._queue: deque[tuple[int, float]] = deque()  # (input index, value), monotonic
        self._count = 0

    def push(self, x: float) -> float | None:
        queue, i = self._queue, self._count
        self._count += 1
        # Values that can never again be the extreme (an equal-or-better one came later) go.
        if self._highest:
            while queue and queue[-1][1] <= x:
                queue.pop()
        else:
            while queue and queue[-1][1] >= x:
                queue.pop()
        queue.append((i, x))
        if queue[0][0] <= i - self._period:
            queue.popleft()
        return queue[0][1] if self._count >= self._period else None


def true_range(high: float, low: float, prev_close: float) -> float:
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


def population_std(values: deque[float], mean: float) -> float:
    # Two passes over the window: exact where TA-Lib's running sum of squares
    # loses digits at prices of tens of thousands.
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
