"""TA-Lib definitions (spec.engine.indicators: talib): parity with TA-Lib, signals, config.

argo-trading's definitions, the default, are tested in test_argo_indicators.py.

The reference is TA-Lib's Python package (`ta-lib` on PyPI, which bundles the
C library). Every value of every indicator over the 5,000 sample bars is
compared with it, from the first bar the indicator has a value; the tolerance
(relative 1e-9, absolute 1e-8) only absorbs summation order, e.g. TA-Lib's
running sums against our re-summed windows. Where TA-Lib's definition has a
choice, ours follows it: EMAs start from the simple mean of the first
`period` values; RSI, ATR and ADX use Wilder's smoothing, seeded the same way;
MACD seeds its fast EMA on the slow EMA's first bar; Bollinger Bands and the
CCI use the population deviation. Known differences:
- MACD: TA-Lib shows the MACD line only once its signal line exists (bar
  slow + signal - 2); ours reports it from bar slow - 1. The values agree.
- ADX: TA-Lib's PLUS_DI/MINUS_DI start at bar n; ours report them with the
  ADX, from bar 2n - 1. The values agree.
- RSI of a perfectly flat stretch: TA-Lib 0, ours 50 (not in this data).
PSY, Waddah Attar (argo-trading's variant) and the Range Filter are not in
TA-Lib: PSY is checked against a vectorized numpy definition, the other two
against TA-Lib's MACD/ATR/EMA plus a plain re-statement of the filter rule.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import numpy as np
import pytest
import talib
from google.protobuf import timestamp_pb2
from helpers import SAMPLE_CSV
from talib._ta_lib import MA_Type

from kubetrade.runner.domain import Bar, datetime_to_ms
from kubetrade.runner.hostapi.indicators import (
    SPECS,
    IndicatorEngine,
    IndicatorError,
    InsufficientData,
    Reading,
    SignalType,
)
from kubetrade.runner.hostapi.indicators import IndicatorType as K
from kubetrade.runner.hostapi.indicators.base import parse_duration_ms
from kubetrade.runner.hostapi.window import Window
from kubetrade.runner.session import HostCallError, Session
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

Arrays = dict[str, np.ndarray]
SMA = MA_Type.SMA


@cache
def sample() -> tuple[Bar, ...]:
    with SAMPLE_CSV.open() as f:
        return tuple(
            Bar(
                r["symbol"],
                datetime_to_ms(datetime.fromisoformat(r["time"].replace("Z", "+00:00"))),
                float(r["open"]),
                float(r["high"]),
                float(r["low"]),
                float(r["close"]),
                float(r["volume"]),
            )
            for r in csv.DictReader(f)
        )


@cache
def columns() -> Arrays:
    bars = sample()
    return {k: np.array([getattr(b, k) for b in bars]) for k in ("high", "low", "close")}


def run(
    kind: K, config: str = "[]", *, bars: tuple[Bar, ...] | None = None, size: int = 10_000
) -> list[Reading | None]:
    """Feed the bars one by one and ask for the indicator on each: the strategy's pattern.
    None where the call failed for want of history."""
    bars = sample() if bars is None else bars
    window = Window(size=size)
    engine = IndicatorEngine(window, "talib")
    engine.configure(kind, config)
    out: list[Reading | None] = []
    for bar in bars:
        window.append(bar)
        try:
            out.append(engine.reading(kind, bar.symbol, bar.time))
        except InsufficientData:
            out.append(None)
    return out


def series(readings: list[Reading | None], key: str) -> np.ndarray:
    return np.array(
        [
            np.nan if r is None or (v := json.loads(r.raw_value)[key]) is None else v
            for r in readings
        ]
    )


def answered(readings: list[Reading | None]) -> list[Reading]:
    out = [r for r in readings if r is not None]
    assert out, "the indicator never answered"
    return out


# -- references ------------------------------------------------------------


def psy_model(c: np.ndarray, n: int) -> np.ndarray:
    ups = np.concatenate([[np.nan], (np.diff(c) > 0).astype(float)])
    out = np.full(len(c), np.nan)
    for i in range(n, len(c)):
        out[i] = 100.0 * ups[i - n + 1 : i + 1].sum() / n
    return out


def range_filter_model(c: np.ndarray, n: int, m: float) -> Arrays:
    diffs = np.concatenate([[np.nan], np.abs(np.diff(c))])
    smooth = talib.EMA(talib.EMA(diffs, n), 2 * n - 1) * m
    out = {k: np.full(len(c), np.nan) for k in ("filter", "up", "down")}
    filt: float | None = None
    up = down = 0
    for i in range(len(c)):
        if np.isnan(smooth[i]):
            continue
        x, r = float(c[i]), float(smooth[i])
        if filt is None:
            new = x
        else:
            new = max(filt, x - r) if x > filt else min(filt, x + r)
            if new > filt:
                up, down = up + 1, 0
            elif new < filt:
                up, down = 0, down + 1
        filt = new
        out["filter"][i], out["up"][i], out["down"][i] = filt, up, down
    out["smooth_range"] = smooth
    return out


@dataclass(frozen=True)
class Case:
    id: str
    kind: K
    config: str
    reference: Callable[[Arrays], Arrays]  # our RawValue key -> reference series
    starts_with_reference: bool = True  # False: our first value comes earlier (documented)


def _macd(a: Arrays, f: int, s: int, g: int) -> Arrays:
    return {"macd": talib.MACD(a["close"], f, s, g)[0]}


def _wae(a: Arrays) -> Arrays:
    macd, signal, hist = talib.MACD(a["close"], 20, 40, 9)
    atr = talib.ATR(a["high"], a["low"], a["close"], 14)
    atr[np.isnan(macd)] = np.nan  # WAE reports all its values together
    return {
        "macd": macd,
        "signal": signal,
        "histogram": hist,
        "atr": atr,
        "trend": macd * 150,
        "explosion": atr * 150,
    }


def _bands(a: Arrays, n: int, k: float) -> Arrays:
    upper, middle, lower = talib.BBANDS(a["close"], n, k, k, SMA)
    return {"upper": upper, "middle": middle, "lower": lower}


def _stoch(a: Arrays, n: int, sk: int, sd: int) -> Arrays:
    k, d = talib.STOCH(a["high"], a["low"], a["close"], n, sk, SMA, sd, SMA)
    return {"k": k, "d": d}


def _adx(a: Arrays, n: int) -> Arrays:
    h, lo, c = a["high"], a["low"], a["close"]
    adx = talib.ADX(h, lo, c, n)
    plus, minus = talib.PLUS_DI(h, lo, c, n), talib.MINUS_DI(h, lo, c, n)
    plus[np.isnan(adx)] = minus[np.isnan(adx)] = np.nan
    return {"adx": adx, "plus_di": plus, "minus_di": minus}


def _ao(a: Arrays) -> Arrays:
    median = talib.MEDPRICE(a["high"], a["low"])
    return {"ao": talib.SMA(median, 5) - talib.SMA(median, 34)}


def _range_filter(a: Arrays, n: int, m: float) -> Arrays:
    model = range_filter_model(a["close"], n, m)
    return {
        "filter": model["filter"],
        "smooth_range": model["smooth_range"],
        "upward_count": model["up"],
        "downward_count": model["down"],
    }


CASES = [
    Case("rsi", K.RSI, "[]", lambda a: {"rsi": talib.RSI(a["close"], 14)}),
    Case("rsi-7.0", K.RSI, "[7.0, 20, 80]", lambda a: {"rsi": talib.RSI(a["close"], 7)}),
    Case("macd", K.MACD, "[]", lambda a: _macd(a, 12, 26, 9), starts_with_reference=False),
    Case("macd-5-35-5", K.MACD, "[5, 35, 5]", lambda a: _macd(a, 5, 35, 5), False),
    Case("bollinger", K.BOLLINGER_BANDS, "[]", lambda a: _bands(a, 20, 2.0)),
    Case("bollinger-10", K.BOLLINGER_BANDS, '[10, 1.5, "1h"]', lambda a: _bands(a, 10, 1.5)),
    Case("stochastic", K.STOCHASTIC_OSCILLATOR, "[]", lambda a: _stoch(a, 14, 3, 3)),
    Case("stochastic-fast", K.STOCHASTIC_OSCILLATOR, "[5, 1, 3]", lambda a: _stoch(a, 5, 1, 3)),
    Case(
        "williams-r",
        K.WILLIAMS_R,
        "[]",
        lambda a: {"wr": talib.WILLR(a["high"], a["low"], a["close"], 14)},
    ),
    Case("adx", K.ADX, "[]", lambda a: _adx(a, 14)),
    Case("adx-5", K.ADX, "[5.0, 20]", lambda a: _adx(a, 5)),
    Case("cci", K.CCI, "[]", lambda a: {"cci": talib.CCI(a["high"], a["low"], a["close"], 20)}),
    Case("ao", K.AO, "[]", _ao),
    Case("range-filter", K.RANGE_FILTER, "[]", lambda a: _range_filter(a, 100, 3.0)),
    Case("range-filter-20", K.RANGE_FILTER, "[20, 2.5]", lambda a: _range_filter(a, 20, 2.5)),
    Case("ema", K.EMA, "[]", lambda a: {"ema": talib.EMA(a["close"], 20)}),
    Case("ema-9.0", K.EMA, "[9.0]", lambda a: {"ema": talib.EMA(a["close"], 9)}),
    Case("waddah-attar", K.WADDAH_ATTAR, "[]", _wae),
    Case("atr", K.ATR, "[]", lambda a: {"atr": talib.ATR(a["high"], a["low"], a["close"], 14)}),
    Case("ma", K.MA, "[]", lambda a: {"ma": talib.SMA(a["close"], 20)}),
    Case("ma-50", K.MA, "[50]", lambda a: {"ma": talib.SMA(a["close"], 50)}),
    Case("psy", K.PSY, "[]", lambda a: {"psy": psy_model(a["close"], 12)}),
]


def assert_matches(ours: np.ndarray, ref: np.ndarray, *, first: int, same_start: bool) -> None:
    ref_first = int(np.argmax(~np.isnan(ref)))
    assert np.isnan(ours[:first]).all() and not np.isnan(ours[first:]).any()
    if same_start:
        assert ref_first == first
    else:
        assert ref_first >= first
    np.testing.assert_allclose(ours[ref_first:], ref[ref_first:], rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parity_with_reference_on_every_bar(case: Case) -> None:
    spec = SPECS[case.kind]
    first = spec.bars(spec.parse(case.config)) - 1  # the warm-up the spec announces
    readings = run(case.kind, case.config)
    expected = case.reference(columns())
    assert set(expected) == set(spec.keys)
    for key, ref in expected.items():
        assert_matches(
            series(readings, key), ref, first=first, same_start=case.starts_with_reference
        )


def test_every_supported_indicator_has_a_parity_case() -> None:
    assert {c.kind for c in CASES} == set(SPECS)


@pytest.mark.parametrize("kind", [K.RSI, K.ADX, K.MACD, K.RANGE_FILTER])
def test_a_small_window_gives_the_full_history_values_when_asked_every_bar(kind: K) -> None:
    # The track consumes each new bar; it never restarts, so a 300-bar window
    # still yields the values computed over all 5,000 bars.
    spec = SPECS[kind]
    key = spec.keys[0]
    full = series(run(kind), key)
    small = series(run(kind, size=300), key)
    np.testing.assert_array_equal(small, full)


def test_a_restarted_track_starts_from_the_window_and_never_looks_ahead() -> None:
    bars = sample()
    window = Window(size=500)
    for bar in bars[:3000]:
        window.append(bar)
    engine = IndicatorEngine(window, "talib")
    t = bars[2800].time  # later bars are in the window; they must not be used
    got = json.loads(engine.reading(K.EMA, "BTCUSDT", t).raw_value)["ema"]
    visible = np.array([b.close for b in bars[2500:2801]])  # the window's bars up to t
    assert got == pytest.approx(talib.EMA(visible, 20)[-1], rel=1e-12)
    # Asking about an earlier bar afterwards starts over from the window again.
    earlier = json.loads(engine.reading(K.EMA, "BTCUSDT", bars[2700].time).raw_value)["ema"]
    assert earlier == pytest.approx(talib.EMA(visible[:201], 20)[-1], rel=1e-12)


def test_warming_up_fails_the_call_with_what_is_missing() -> None:
    # Not WAIT with null values: a Go strategy would decode them as 0 and act on them.
    bars = sample()[:15]
    window = Window(size=100)
    engine = IndicatorEngine(window, "talib")
    for i, bar in enumerate(bars):
        window.append(bar)
        if i < 14:
            with pytest.raises(
                InsufficientData, match=rf"rsi: BTCUSDT at .*needs 15 bars, has {i + 1}"
            ):
                engine.reading(K.RSI, "BTCUSDT", bar.time)
            with pytest.raises(InsufficientData):  # asked again on the same bar: the same
                engine.reading(K.RSI, "BTCUSDT", bar.time)
    assert engine.reading(K.RSI, "BTCUSDT", bars[14].time).signal is not SignalType.WAIT


def test_no_bars_for_the_symbol_fails_the_call() -> None:
    engine = IndicatorEngine(Window(size=100), "talib")
    with pytest.raises(InsufficientData, match="no bars of ETHUSDT"):
        engine.reading(K.MA, "ETHUSDT", 0)


def test_bollinger_fails_when_its_bars_are_older_than_the_lookback() -> None:
    bars = sample()[:30]
    gap = [*bars[:25], *(Bar(b.symbol, b.time + 3_600_000, *_ohlcv(b)) for b in bars[25:])]
    window = Window(size=100)
    engine = IndicatorEngine(window, "talib")
    engine.configure(K.BOLLINGER_BANDS, '[20, 2, "30m"]')
    for bar in gap[:25]:
        window.append(bar)
    assert engine.reading(K.BOLLINGER_BANDS, "BTCUSDT", gap[24].time).signal is not SignalType.WAIT
    window.append(gap[25])
    with pytest.raises(InsufficientData, match="lookback"):
        engine.reading(K.BOLLINGER_BANDS, "BTCUSDT", gap[25].time)


def _ohlcv(b: Bar) -> tuple[float, float, float, float, float]:
    return b.open, b.high, b.low, b.close, b.volume


def test_raw_value_keys_follow_the_proto_comments() -> None:
    documented = {
        K.RSI: ("rsi",),
        K.MACD: ("macd",),
        K.BOLLINGER_BANDS: ("upper", "middle", "lower"),
        K.WILLIAMS_R: ("wr",),
        K.RANGE_FILTER: ("filter", "smooth_range", "upward_count", "downward_count"),
        K.EMA: ("ema",),
        K.WADDAH_ATTAR: ("macd", "signal", "histogram", "atr", "trend", "explosion"),
        K.ATR: ("atr",),
        K.MA: ("ma",),
        K.PSY: ("psy",),
        # Not in argo-trading: chosen by kubetrade (runner/hostapi/indicators/__init__.py).
        K.STOCHASTIC_OSCILLATOR: ("k", "d"),
        K.ADX: ("adx", "plus_di", "minus_di"),
        K.CCI: ("cci",),
        K.AO: ("ao",),
    }
    for kind, keys in documented.items():
        assert SPECS[kind].keys == keys
        last = run(kind, bars=sample()[:400])[-1]
        assert last is not None
        assert tuple(json.loads(last.raw_value)) == keys


# -- signals -----------------------------------------------------------------


def last_signal(kind: K, config: str) -> SignalType:
    last = run(kind, config, bars=sample()[:400])[-1]
    assert last is not None
    return last.signal


@pytest.mark.parametrize(
    ("kind", "config", "expected"),
    [
        (K.RSI, "[14, 101, 102]", SignalType.BUY_LONG),  # always below "lower"
        (K.RSI, "[14, -2, -1]", SignalType.SELL_SHORT),  # always above "upper"
        (K.RSI, "[14, -1, 101]", SignalType.NO_ACTION),
        (K.WILLIAMS_R, "[14, 1, 0.5]", SignalType.BUY_LONG),  # %R <= 0 < oversold
        (K.WILLIAMS_R, "[14, -101, -102]", SignalType.SELL_SHORT),
        (K.PSY, "[12, 101, 100.5]", SignalType.BUY_LONG),
        (K.PSY, "[12, -1, -2]", SignalType.SELL_SHORT),
        (K.CCI, "[20, 1e9, 1e8]", SignalType.BUY_LONG),
        (K.CCI, "[20, -1e9, -1e8]", SignalType.SELL_SHORT),
        (K.STOCHASTIC_OSCILLATOR, "[14, 3, 3, 200, 150]", SignalType.BUY_LONG),
        (K.STOCHASTIC_OSCILLATOR, "[14, 3, 3, -2, -1]", SignalType.SELL_SHORT),
        (K.ADX, "[14, 101]", SignalType.NO_ACTION),  # never a "strong" trend
        (K.EMA, "[]", SignalType.NO_ACTION),
        (K.MA, "[]", SignalType.NO_ACTION),
        (K.ATR, "[]", SignalType.NO_ACTION),
    ],
)
def test_threshold_rules(kind: K, config: str, expected: SignalType) -> None:
    assert last_signal(kind, config) is expected


def test_direction_rules_agree_with_the_values() -> None:
    for kind, key in [(K.MACD, "macd"), (K.AO, "ao"), (K.WADDAH_ATTAR, "trend")]:
        for r in answered(run(kind, bars=sample()[:600])[100:]):
            v = json.loads(r.raw_value)[key]
            assert r.signal is (SignalType.BUY_LONG if v > 0 else SignalType.SELL_SHORT)
    for r in answered(run(K.BOLLINGER_BANDS, bars=sample()[:600])[100:]):
        v = json.loads(r.raw_value)
        assert v["lower"] < v["middle"] < v["upper"]
        assert (r.signal, r.reason) in {
            (SignalType.BUY_LONG, "Price below lower band"),
            (SignalType.SELL_LONG, "Price above upper band"),
            (SignalType.NO_ACTION, "Price within bands"),
        }
    for r in answered(run(K.ADX, "[14, 0]", bars=sample()[:600])[100:]):
        v = json.loads(r.raw_value)
        up = v["plus_di"] > v["minus_di"]
        assert r.signal is (SignalType.BUY_LONG if up else SignalType.SELL_SHORT)
    for r in answered(run(K.RANGE_FILTER, "[20]", bars=sample()[:600])[100:]):
        v = json.loads(r.raw_value)
        assert (v["upward_count"] > 0) + (v["downward_count"] > 0) <= 1
        if v["upward_count"] > 0:
            assert r.signal is SignalType.BUY_LONG
        elif v["downward_count"] > 0:
            assert r.signal is SignalType.SELL_SHORT


# -- configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        (K.RSI, "[14.5]", "whole number"),
        (K.RSI, "[0]", "whole number"),
        (K.RSI, '["14"]', "expected a number"),
        (K.RSI, "[true]", "expected a number"),
        (K.RSI, "[14, 30, 70, 1]", "at most 3 values"),
        (K.RSI, "{", "not valid JSON"),
        (K.RSI, '{"period": 14}', "must be a JSON array"),
        (K.BOLLINGER_BANDS, "[20, 0]", "greater than 0"),
        (K.BOLLINGER_BANDS, '[20, 2, "soon"]', "invalid duration"),
        (K.RANGE_FILTER, "[400]", "needs 1199 bars but the session keeps 1000"),
        (K.TREND_STRENGTH, "[]", "INDICATOR_TREND_STRENGTH is not supported"),
        (99, "[]", "unknown indicator type 99"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(kind: int, config: str, message: str) -> None:
    engine = IndicatorEngine(Window(size=1000), "talib")
    with pytest.raises(IndicatorError, match=message):
        engine.configure(kind, config)


def test_config_defaults_nulls_and_durations() -> None:
    bb = SPECS[K.BOLLINGER_BANDS]
    assert bb.parse("") == bb.parse("[]") == {"period": 20, "stdDev": 2.0, "lookback": 86_400_000}
    assert bb.parse("[null, 3]") == {"period": 20, "stdDev": 3.0, "lookback": 86_400_000}
    assert bb.parse("[20, 2, 5400000000000]")["lookback"] == 5_400_000  # Go's Duration: ns
    assert parse_duration_ms("1h30m") == parse_duration_ms("90m") == 5_400_000
    assert parse_duration_ms("1.5s") == 1500


def test_reconfiguring_resets_state_but_the_same_config_keeps_it() -> None:
    bars = sample()[:60]
    window = Window(size=100)
    engine = IndicatorEngine(window, "talib")
    for bar in bars:
        window.append(bar)
    t = bars[-1].time
    engine.configure(K.MA, "[5]")
    five = json.loads(engine.reading(K.MA, "BTCUSDT", t).raw_value)["ma"]
    assert five == pytest.approx(np.mean([b.close for b in bars[-5:]]))
    engine.configure(K.MA, "[5.0]")  # the same settings
    engine.configure(K.MA, "[10]")
    ten = json.loads(engine.reading(K.MA, "BTCUSDT", t).raw_value)["ma"]
    assert ten == pytest.approx(np.mean([b.close for b in bars[-10:]]))


# -- through the host functions -------------------------------------------------


def host(window_size: int = 1000) -> tuple[HostFunctions, Session]:
    state = Session.create(
        session="t",
        symbols=("BTCUSDT",),
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset({"BTCUSDT"})),
        window_size=window_size,
        precision=8,
    )
    return HostFunctions(state, indicators="talib"), state


def test_host_get_signal_answers_with_talib_when_asked() -> None:
    functions, state = host()
    for bar in sample()[:30]:
        state.begin_bar(bar)
    functions.configure_indicator(
        pb.ConfigureRequest(indicator_type=pb.INDICATOR_RSI, config="[14]")
    )
    bar = sample()[29]
    ts = timestamp_pb2.Timestamp(seconds=bar.time // 1000)
    data = pb.MarketData(symbol="BTCUSDT", close=bar.close, time=ts)
    response = functions.get_signal(
        pb.GetSignalRequest(indicator_type=pb.INDICATOR_RSI, market_data=data)
    )
    assert response.timestamp == ts
    assert response.symbol == "BTCUSDT" and response.name == "rsi"
    assert response.indicatorType == pb.INDICATOR_RSI
    rsi = json.loads(response.rawValue)["rsi"]
    closes = np.array([b.close for b in sample()[:30]])
    assert rsi == pytest.approx(talib.RSI(closes, 14)[-1], rel=1e-12)
    expected = "BUY_LONG" if rsi < 30 else "SELL_SHORT" if rsi > 70 else "NO_ACTION"
    assert response.type == pb.SignalType.Value(f"SIGNAL_TYPE_{expected}")


def test_host_indicator_errors_trap_the_call() -> None:
    functions, state = host()
    state.begin_bar(sample()[0])
    with pytest.raises(HostCallError, match="configure_indicator: rsi: config is not valid JSON"):
        functions.configure_indicator(
            pb.ConfigureRequest(indicator_type=pb.INDICATOR_RSI, config="[")
        )
    with pytest.raises(HostCallError, match="not supported"):
        functions.get_signal(
            pb.GetSignalRequest(
                indicator_type=pb.INDICATOR_TREND_STRENGTH,
                market_data=pb.MarketData(symbol="BTCUSDT"),
            )
        )
    with pytest.raises(HostCallError, match="not traded by this session"):
        functions.get_signal(pb.GetSignalRequest(market_data=pb.MarketData(symbol="DOGE")))
    with pytest.raises(HostCallError, match="market_data with a symbol is required"):
        functions.get_signal(pb.GetSignalRequest())


def test_enums_mirror_the_abi() -> None:
    for member in K:
        assert pb.IndicatorType.Value(f"INDICATOR_{member.name}") == member.value
    assert len(K) == len(pb.IndicatorType.keys())
    for signal in SignalType:
        assert pb.SignalType.Value(f"SIGNAL_TYPE_{signal.name}") == signal.value
    assert len(SignalType) == len(pb.SignalType.keys())
