"""get_range's interval aggregation: the session's bars rolled up into coarser bars.

Buckets are aligned to UTC: minutes, hours and days to multiples of their width
since the Unix epoch (so 4h buckets start at 00:00, 04:00, ... UTC), weeks to
Monday 00:00 UTC, months to the first of the month. Each bucket becomes one
bar: open of its first bar, highest high, lowest low, close of its last bar,
summed volume, timed at the bucket's start.

Partial buckets are kept, as argo-trading (DuckDB's time_bucket over the
requested range) keeps them: the bucket still forming at the current bar, and
buckets cut by the requested range or by the start of the window, hold only
the bars that exist. A strategy that wants complete buckets only can drop the
last one while its start + width is after the current bar.

A requested interval no coarser than the session's own spacing returns the
session's bars unchanged: bars are never split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from kubetrade.runner.domain import Bar

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
_MONDAY_MS = 4 * DAY_MS  # 1970-01-05, the first Monday after the epoch (a Thursday)
MONTH = -1  # not a width: calendar months
EARLIEST, LATEST = -(2**63), 2**63 - 1  # open ends of a time range


@dataclass(frozen=True, slots=True)
class Interval:
    name: str
    width_ms: int  # MONTH for calendar months
    origin_ms: int = 0


# The ABI's Interval enum (strategy.proto), by number.
INTERVALS: dict[int, Interval] = {
    0: Interval("1m", MINUTE_MS),
    1: Interval("5m", 5 * MINUTE_MS),
    2: Interval("15m", 15 * MINUTE_MS),
    3: Interval("30m", 30 * MINUTE_MS),
    4: Interval("1h", HOUR_MS),
    5: Interval("4h", 4 * HOUR_MS),
    6: Interval("6h", 6 * HOUR_MS),
    7: Interval("8h", 8 * HOUR_MS),
    8: Interval("12h", 12 * HOUR_MS),
    9: Interval("1d", DAY_MS),
    10: Interval("1w", WEEK_MS, origin_ms=_MONDAY_MS),
    11: Interval("1mo", MONTH),
}


def interval_for(code: int) -> Interval:
    interval = INTERVALS.get(code)
    if interval is None:
        raise ValueError(f"unknown interval {code}; expected 0..{len(INTERVALS) - 1}")
    return interval


def requested(code: int) -> Interval | None:
    """The interval a GetRangeRequest asks for; None means the session's own bars.

    INTERVAL_1M is 0, protobuf's default, so a request cannot tell "1 minute"
    from "not set"; strategies that leave it unset expect the session's bars
    (on 1m and coarser sessions the two are the same; on a 1s session they
    get 1s bars).
    """
    return None if code == 0 else interval_for(code)


def bucket_start(time_ms: int, interval: Interval) -> int:
    if interval.width_ms == MONTH:
        moment = datetime.fromtimestamp(time_ms // 1000, tz=UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()) * 1000
    offset = time_ms - interval.origin_ms
    return time_ms - offset % interval.width_ms  # Python's % is never negative here


def spacing(bars: Sequence[Bar]) -> int | None:
    """The smallest gap between consecutive bars: the session's bar interval, gaps aside."""
    gaps = [b.time - a.time for a, b in pairwise(bars) if b.time > a.time]
    return min(gaps) if gaps else None


def aggregate(bars: Sequence[Bar], interval: Interval) -> list[Bar]:
    """Roll one symbol's bars (oldest first) up into `interval` buckets."""
    out: list[Bar] = []
    open_ = high = low = close = volume = 0.0
    key: int | None = None
    symbol = ""
    for bar in bars:
        b = bucket_start(bar.time, interval)
        if b != key:
            if key is not None:
                out.append(Bar(symbol, key, open_, high, low, close, volume))
            key, symbol = b, bar.symbol
            open_, high, low, volume = bar.open, bar.high, bar.low, 0.0
        high = max(high, bar.high)
        low = min(low, bar.low)
        close = bar.close
        volume += bar.volume
    if key is not None:
        out.append(Bar(symbol, key, open_, high, low, close, volume))
    return out


def resample(bars: Sequence[Bar], interval: Interval) -> list[Bar]:
    """`bars` at `interval`, or unchanged if that is not coarser than their own spacing."""
    native = spacing(bars)
    finer = interval.width_ms != MONTH and native is not None and interval.width_ms <= native
    if finer or not bars:
        return list(bars)
    return aggregate(bars, interval)
