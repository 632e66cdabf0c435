"""get_range interval aggregation, count's open bounds, checked against plain arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import timestamp_pb2

from kubetrade.runner.domain import Bar, datetime_to_ms
from kubetrade.runner.hostapi import rollup
from kubetrade.runner.session import HostCallError, Session
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

MIN = 60_000
T0 = datetime_to_ms(datetime(2024, 3, 4, tzinfo=UTC))  # a Monday, 00:00 UTC


def minute_bars(n: int, *, start: int = T0, symbol: str = "BTC", step: int = MIN) -> list[Bar]:
    # Distinct, easy numbers: bar i opens at 100+i, high 200+i, low i, close 100+i+0.5.
    return [
        Bar(symbol, start + i * step, 100 + i, 200 + i, i, 100 + i + 0.5, 1 + i) for i in range(n)
    ]


def test_interval_table_matches_the_abi() -> None:
    names = {0: "1m", 1: "5m", 4: "1h", 5: "4h", 9: "1d", 10: "1w", 11: "1mo"}
    for code, name in names.items():
        assert rollup.INTERVALS[code].name == name
    assert set(rollup.INTERVALS) == set(pb.Interval.values())


def test_five_minute_buckets_roll_up_ohlcv() -> None:
    out = rollup.resample(minute_bars(12), rollup.interval_for(pb.INTERVAL_5M))
    assert [b.time for b in out] == [T0, T0 + 5 * MIN, T0 + 10 * MIN]
    first = out[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        100,
        204,
        0,
        104.5,
        1 + 2 + 3 + 4 + 5,
    )
    last = out[-1]  # the forming bucket: two of its five bars so far, kept (as argo-trading)
    assert (last.open, last.high, last.low, last.close, last.volume) == (110, 211, 10, 111.5, 23)


def test_buckets_align_to_utc_not_to_the_first_bar() -> None:
    bars = minute_bars(10, start=T0 + 3 * MIN)  # 00:03 .. 00:12
    out = rollup.resample(bars, rollup.interval_for(pb.INTERVAL_5M))
    assert [b.time for b in out] == [T0, T0 + 5 * MIN, T0 + 10 * MIN]
    assert [round(b.volume) for b in out] == [1 + 2, 3 + 4 + 5 + 6 + 7, 8 + 9 + 10]
    hours = minute_bars(3, start=T0 + 5 * 3_600_000 + 17 * MIN, step=3_600_000)  # 05:17 ...
    four = rollup.resample(hours, rollup.interval_for(pb.INTERVAL_4H))
    assert [b.time for b in four] == [T0 + 4 * 3_600_000]


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    sunday = datetime_to_ms(datetime(2024, 3, 10, 23, 0, tzinfo=UTC))
    week = rollup.interval_for(pb.INTERVAL_1W)
    assert rollup.bucket_start(sunday, week) == T0  # Monday 2024-03-04
    assert rollup.bucket_start(T0 + 7 * 86_400_000, week) == T0 + 7 * 86_400_000
    month = rollup.interval_for(pb.INTERVAL_1MONTH)
    feb29 = datetime_to_ms(datetime(2024, 2, 29, 13, 0, tzinfo=UTC))
    assert rollup.bucket_start(feb29, month) == datetime_to_ms(datetime(2024, 2, 1, tzinfo=UTC))
    days = minute_bars(43, start=datetime_to_ms(datetime(2024, 1, 20, tzinfo=UTC)), step=86_400_000)
    out = rollup.resample(days, month)
    assert [datetime.fromtimestamp(b.time / 1000, UTC).month for b in out] == [1, 2, 3]
    assert [round(b.volume) for b in out] == [sum(range(1, 13)), sum(range(13, 42)), 42 + 43]


def test_a_finer_or_equal_interval_returns_the_session_bars() -> None:
    hourly = minute_bars(5, start=T0 + 30 * MIN, step=3_600_000)  # bars at :30, not aligned
    for code in (pb.INTERVAL_5M, pb.INTERVAL_30M, pb.INTERVAL_1H):
        assert rollup.resample(hourly, rollup.interval_for(code)) == hourly
    assert rollup.requested(pb.INTERVAL_1M) is None  # the default: the session's own bars
    with pytest.raises(ValueError, match="unknown interval 42"):
        rollup.requested(42)


def test_gaps_do_not_change_the_spacing_or_invent_bars() -> None:
    bars = [b for i, b in enumerate(minute_bars(20)) if not 5 <= i < 15]
    assert rollup.spacing(bars) == MIN
    out = rollup.resample(bars, rollup.interval_for(pb.INTERVAL_5M))
    assert [b.time for b in out] == [T0, T0 + 15 * MIN]  # 00:05 and 00:10 had no bars


# -- through the host functions ------------------------------------------------


def ts(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def host(*symbols: str, size: int = 1000) -> tuple[HostFunctions, Session]:
    state = Session.create(
        session="t",
        symbols=symbols,
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset(symbols)),
        window_size=size,
        precision=8,
    )
    return HostFunctions(state), state


def test_get_range_aggregates_within_the_requested_range() -> None:
    functions, state = host("BTC")
    for bar in minute_bars(30):
        state.begin_bar(bar)
    request = pb.GetRangeRequest(
        symbol="BTC",
        start_time=ts(T0 + 2 * MIN),
        end_time=ts(T0 + 21 * MIN),
        interval=pb.INTERVAL_15M,
    )
    data = functions.get_range(request).data
    assert [d.time.seconds * 1000 for d in data] == [T0, T0 + 15 * MIN]
    assert (data[0].open, data[0].close, data[0].volume) == (102, 114.5, sum(range(3, 16)))
    assert (data[1].open, data[1].close, data[1].volume) == (115, 121.5, sum(range(16, 23)))
    native = functions.get_range(pb.GetRangeRequest(symbol="BTC", end_time=ts(T0 + 4 * MIN)))
    assert len(native.data) == 5  # unset start: from the first bar; 1M (unset): the session's bars


def test_get_range_without_symbol_returns_every_symbol_in_time_order() -> None:
    functions, state = host("BTC", "ETH")
    for btc, eth in zip(minute_bars(10), minute_bars(10, symbol="ETH"), strict=True):
        state.begin_bar(btc)
        state.begin_bar(eth)
    data = functions.get_range(pb.GetRangeRequest(interval=pb.INTERVAL_5M)).data
    assert [(d.symbol, d.time.seconds * 1000) for d in data] == [
        ("BTC", T0),
        ("ETH", T0),
        ("BTC", T0 + 5 * MIN),
        ("ETH", T0 + 5 * MIN),
    ]


def test_get_range_refuses_an_unknown_interval() -> None:
    functions, _ = host("BTC")
    with pytest.raises(HostCallError, match="get_range: unknown interval 77"):
        functions.get_range(pb.GetRangeRequest(symbol="BTC", interval=77))  # type: ignore[arg-type]


def test_count_counts_all_symbols_and_leaves_unset_bounds_open() -> None:
    functions, state = host("BTC", "ETH", size=8)
    for btc, eth in zip(minute_bars(10), minute_bars(10, symbol="ETH"), strict=True):
        state.begin_bar(btc)
        state.begin_bar(eth)
    assert functions.count(pb.CountRequest()).count == 16  # the window keeps 8 per symbol
    assert functions.count(pb.CountRequest(start_time=ts(T0 + 8 * MIN))).count == 4
    both = pb.CountRequest(start_time=ts(T0 + 3 * MIN), end_time=ts(T0 + 4 * MIN))
    assert functions.count(both).count == 4
    assert functions.count(pb.CountRequest(end_time=ts(T0 + 2 * MIN))).count == 2  # 00:02 only
    inverted = pb.CountRequest(start_time=ts(T0 + 5 * MIN), end_time=ts(T0))
    assert functions.count(inverted).count == 0
