"""The per-symbol sliding window of recent bars that strategies query.

Each symbol keeps at most `size` bars in time order. Bars live in a plain list
that is trimmed in batches, so appends are amortized O(1) and range queries
can bisect on time.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from kubetrade.runner.domain import Bar


@dataclass(slots=True)
class _Series:
    bars: list[Bar] = field(default_factory=list)
    times: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Window:
    size: int
    series: dict[str, _Series] = field(default_factory=dict)

    def append(self, bar: Bar) -> None:
        s = self.series.get(bar.symbol)
        if s is None:
            s = self.series[bar.symbol] = _Series()
        s.bars.append(bar)
        s.times.append(bar.time)
        if len(s.bars) >= 2 * self.size:
            # Trim in one slice every `size` appends instead of on every append.
            del s.bars[: -self.size]
            del s.times[: -self.size]

    def bars(self, symbol: str) -> list[Bar]:
        s = self.series.get(symbol)
        return s.bars[-self.size :] if s is not None else []

    def last(self, symbol: str) -> Bar | None:
        s = self.series.get(symbol)
        return s.bars[-1] if s is not None and s.bars else None

    def range(self, symbol: str, start: int, end: int) -> list[Bar]:
        """Bars of `symbol` with start <= time <= end, oldest first."""
        s = self.series.get(symbol)
        if s is None:
            return []
        first = max(bisect_left(s.times, start), len(s.times) - self.size)
        return s.bars[first : bisect_right(s.times, end)]

    def tail(self, symbol: str, end: int, count: int) -> list[Bar]:
        """The last `count` bars of `symbol` with time <= end (fewer if the window holds
        fewer), oldest first: an argo-trading indicator's lookback, without copying the window."""
        s = self.series.get(symbol)
        if s is None:
            return []
        times = s.times
        stop = len(times) if times and times[-1] <= end else bisect_right(times, end)
        return s.bars[max(stop - count, len(times) - self.size, 0) : stop]

    def count(self, start: int, end: int) -> int:
        """Bars of all symbols with start <= time <= end."""
        total = 0
        for s in self.series.values():
            first = max(bisect_left(s.times, start), len(s.times) - self.size)
            total += max(0, bisect_right(s.times, end) - first)
        return total
