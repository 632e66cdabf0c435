"""Session-interval bars built from a venue's finer aggregates (Polygon's A and AM streams).

Buckets are aligned to the Unix epoch in UTC: a 5m bar holds the minute
aggregates starting in [t, t + 5 min) with t a multiple of 5 minutes. Open is
the first part's open, close the last part's close, high and low the extremes,
volume the sum. The same rule builds bars from the stream (`LiveAggregator`)
and from REST (`aggregate`), so a backfilled bar equals the bar the stream
would have built.

When a live bar is delivered (deterministic: no wall clock involved): as soon as
a part ending at or after the bucket's end arrives, or else when the venue's
clock (`advance`: the newest part of any symbol on the connection) shows a later
bucket. A bucket whose last minutes had no trades therefore waits for the next
trade of any of the session's symbols.

Whether a live bucket is whole: each aggregate carries the day's accumulated
volume (`av`). When a part's `av - v` differs from the previous part's `av`,
something was lost or arrived out of order in between (a disconnect, a dropped
or reordered frame, a new trading day). The buckets that may have a hole are
then not built from the stream: they are reported as Progress, which makes the
feed fetch them from REST. Repeated parts are dropped, and so is a part arriving
after its bucket was delivered (its absence had already been noticed through
`av`, or the clock had closed its bucket, so that bucket came from REST); each
is reported as Stale, for the feed to count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.feed import Closed, Observation, Progress, Stale

__all__ = ["LiveAggregator", "Part", "aggregate"]


@dataclass(frozen=True, slots=True)
class Part:
    """One aggregate read from the stream, no coarser than the session interval."""

    start: int  # ms, UTC, inclusive
    end: int  # ms, UTC, exclusive
    open: float
    high: float
    low: float
    close: float
    volume: float
    day_volume: float  # the day's accumulated volume including this aggregate


def aggregate(bars: Iterable[Bar], interval_ms: int) -> list[Bar]:
    """Bars (oldest first) merged into epoch-aligned buckets of `interval_ms`."""
    out: list[Bar] = []
    bucket: list[Bar] = []
    for bar in bars:
        start = bar.time - bar.time % interval_ms
        if bucket and start != bucket[0].time - bucket[0].time % interval_ms:
            out.append(_merge(bucket, interval_ms))
            bucket = []
        bucket.append(bar)
    if bucket:
        out.append(_merge(bucket, interval_ms))
    return out


def _merge(bars: Sequence[Bar], interval_ms: int) -> Bar:
    first = bars[0]
    if len(bars) == 1 and first.time % interval_ms == 0:
        return first
    return Bar(
        first.symbol,
        first.time - first.time % interval_ms,
        first.open,
        max(b.high for b in bars),
        min(b.low for b in bars),
        bars[-1].close,
        sum(b.volume for b in bars),
    )


@dataclass(slots=True)
class LiveAggregator:
    """One symbol's parts from one connection, turned into closed bars or Progress marks."""

    symbol: str
    interval_ms: int
    _bucket: int | None = None  # start of the bucket being built
    _parts: dict[int, Part] = field(default_factory=dict)  # by start time
    _holed: bool = False  # the bucket may miss a part: it comes from REST
    _last_start: int | None = None  # the newest part seen, to check `av` against
    _last_day_volume: float = 0.0
    _done: int | None = None  # end of the newest bucket closed: older parts are late

    def add(self, part: Part) -> list[Observation]:
        bucket = part.start - part.start % self.interval_ms
        current = self._bucket
        late = (current is not None and bucket < current) or (
            self._done is not None and part.start < self._done
        )
        if late or part.start in self._parts:
            return [Stale(self.symbol)]  # see the module docstring
        whole = self._follows(part)
        out: list[Observation] = []
        if current is not None and bucket > current:
            closed = self._close()
            if whole:  # else the Progress below covers this bucket too
                out.append(closed)
            current = None
        if current is None:
            self._bucket, self._parts = bucket, {}
            self._holed = not whole and part.start > bucket
            if not whole:
                out.append(Progress(self.symbol, bucket))
        elif not whole:
            self._holed = True
        self._parts[part.start] = part
        if part.end >= bucket + self.interval_ms:
            out.append(self._close())
        return out

    @property
    def last_start(self) -> int | None:
        """Start of the newest part seen on this connection."""
        return self._last_start

    def advance(self, boundary: int) -> list[Observation]:
        """The venue's clock reached `boundary`: a bucket that ended by then is complete."""
        bucket = self._bucket
        if bucket is None or bucket + self.interval_ms > boundary:
            return []
        return [self._close()]

    def _follows(self, part: Part) -> bool:
        """Whether nothing is missing between the newest part seen and this one."""
        last = self._last_start
        if last is not None and part.start < last:
            return False  # out of order
        self._last_start = part.start
        previous, self._last_day_volume = self._last_day_volume, part.day_volume
        if last is None:
            return False  # the first part on this connection: what came before is unknown
        expected = previous + part.volume
        return abs(part.day_volume - expected) <= 1e-9 * max(1.0, abs(expected))

    def _close(self) -> Observation:
        bucket = self._bucket
        assert bucket is not None
        self._bucket, self._done = None, bucket + self.interval_ms
        if self._holed:
            return Progress(self.symbol, bucket + self.interval_ms)
        parts = [self._parts[start] for start in sorted(self._parts)]
        bar = Bar(
            self.symbol,
            bucket,
            parts[0].open,
            max(p.high for p in parts),
            min(p.low for p in parts),
            parts[-1].close,
            sum(p.volume for p in parts),
        )
        return Closed(bar)
