"""argo-trading's indicator definitions, the default (spec.engine.indicators: argo).

The definitions are restated from argo-trading's public source
(internal/indicator/*.go): each is a function of the symbol's last few bars.
Here each is checked three ways: on tiny series worked out by hand; on every
bar of the 5,000 sample bars against a second, vectorized restatement written
with numpy in this file; and for its warm-up (the call fails until the
indicator has its bars, as argo's does; Bollinger Bands answer NO_ACTION with
a null value instead, as argo's do). RawValue is the text Go's encoding/json
writes: sorted keys, Go's number format.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache

import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from helpers import SAMPLE_CSV

from kubetrade.runner.domain import Bar, datetime_to_ms
from kubetrade.runner.hostapi.indicators import (
    IndicatorEngine,
    InsufficientData,
    Reading,
    SignalType,
)
from kubetrade.runner.hostapi.indicators import IndicatorType as K
from kubetrade.runner.hostapi.indicators.gojson import go_float, go_object
from kubetrade.runner.hostapi.window import Window
from kubetrade.runner.session import HostCallError, Session
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

MINUTE = 60_000
HOUR = 60 * MINUTE


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


def bars_of(closes: Sequence[float], *, step: int = MINUTE, spread: float = 1.0) -> list[Bar]:
    """Bars with the given closes; high/low `spread` above/below the close."""
    return [Bar("X", i * step, c, c + spread, c - spread, c, 1.0) for i, c in enumerate(closes)]


def engine_with(bars: Sequence[Bar], *configs: tuple[K, str]) -> IndicatorEngine:
    window = Window(size=10_000)
    engine = IndicatorEngine(window)  # the default: argo-trading's definitions
    for kind, config in configs:
        engine.configure(kind, config)
    for bar in bars:
        window.append(bar)
    return engine


def value(engine: IndicatorEngine, kind: K, at: Bar) -> dict[str, float]:
    values: dict[str, float] = json.loads(engine.reading(kind, at.symbol, at.time).raw_value)
    return values


def raw(engine: IndicatorEngine, kind: K, at: Bar) -> str:
    return engine.reading(kind, at.symbol, at.time).raw_value


# -- by hand ---------------------------------------------------------------------------------


def test_rsi_is_the_plain_mean_of_gains_over_losses() -> None:
    # Changes +1 +1 -1 +2: mean gain 4/4, mean loss 1/4, RS 4, RSI 100 - 100/5 = 80.
    bars = bars_of([10, 11, 12, 11, 13])
    engine = engine_with(bars, (K.RSI, "[4]"))
    assert value(engine, K.RSI, bars[-1]) == {"rsi": 80.0}
    # Only the last period + 1 closes count: an older crash changes nothing.
    crash = bars_of([50, 10, 11, 12, 11, 13])
    assert value(engine_with(crash, (K.RSI, "[4]")), K.RSI, crash[-1]) == {"rsi": 80.0}


def test_rsi_is_100_without_losses_even_when_flat() -> None:
    for closes in ([1, 2, 3, 4, 5], [5, 5, 5, 5, 5]):
        bars = bars_of(closes)
        reading = engine_with(bars, (K.RSI, "[4]")).reading(K.RSI, "X", bars[-1].time)
        assert reading.raw_value == '{"rsi":100}'  # Go writes 100, not 100.0
        assert (reading.signal, reading.reason) == (
            SignalType.SELL_SHORT,
            "RSI overbought (value=100.00)",
        )


def test_ema_macd_and_atr_are_simple_means_of_closes() -> None:
    bars = bars_of([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], spread=3.0)
    engine = engine_with(bars, (K.EMA, "[4]"), (K.MA, "[4]"), (K.MACD, "[2, 4, 9]"), (K.ATR, "[5]"))
    last = bars[-1]
    assert value(engine, K.EMA, last) == {"ema": 8.5}  # (7 + 8 + 9 + 10) / 4
    assert value(engine, K.MA, last) == {"ma": 8.5}
    assert value(engine, K.MACD, last) == {"macd": 9.5 - 8.5}
    assert value(engine, K.ATR, last) == {"atr": 8.0}  # not the range of 6: the closes' mean


def test_williams_r_and_psy() -> None:
    closes = [10, 12, 11, 13, 12]  # highs close + 1, lows close - 1
    bars = bars_of(closes)
    engine = engine_with(bars, (K.WILLIAMS_R, "[4]"), (K.PSY, "[4]"))
    # Highest high 14, lowest low 10, close 12: ((14 - 12) / 4) * -100.
    assert raw(engine, K.WILLIAMS_R, bars[-1]) == '{"wr":-50}'
    assert raw(engine, K.PSY, bars[-1]) == '{"psy":50}'  # 12 and 13 rose, 11 and 12 fell
    flat = [Bar("X", i * MINUTE, 5, 5, 5, 5, 1) for i in range(4)]
    assert raw(engine_with(flat, (K.WILLIAMS_R, "[4]")), K.WILLIAMS_R, flat[-1]) == '{"wr":0}'


def test_bollinger_bands_use_the_population_deviation() -> None:
    bars = bars_of([2, 4, 4, 4, 5, 5, 7, 9])  # mean 5, population deviation 2
    reading = engine_with(bars, (K.BOLLINGER_BANDS, "[8, 2]")).reading(
        K.BOLLINGER_BANDS, "X", bars[-1].time
    )
    assert reading.raw_value == '{"lower":1,"middle":5,"upper":9}'
    assert (reading.name, reading.signal, reading.reason) == (
        "Bollinger Bands",
        SignalType.NO_ACTION,
        "Price within bands",
    )


def test_waddah_attar_reads_the_macd_and_atr_settings_not_its_own() -> None:
    bars = bars_of([float(c) for c in range(1, 41)])
    engine = engine_with(
        bars, (K.MACD, "[2, 4, 9]"), (K.ATR, "[5]"), (K.WADDAH_ATTAR, "[20, 40, 9, 14, 10]")
    )
    reading = engine.reading(K.WADDAH_ATTAR, "X", bars[-1].time)
    # MACD (2, 4): 39.5 - 38.5 = 1; ATR (5): mean of 36..40 = 38; multiplier 10.
    assert reading.raw_value == (
        '{"atr":38,"explosion":380,"histogram":0,"macd":1,"signal":0,"trend":10}'
    )
    assert reading.signal is SignalType.BUY_LONG
    assert reading.reason == "Waddah Attar bullish explosion (explosion=380.0000, trend=10.0000)"
    engine.configure(K.MACD, "[4, 2, 9]")  # fast above slow: the value turns
    assert json.loads(engine.reading(K.WADDAH_ATTAR, "X", bars[-1].time).raw_value)["macd"] == -1


def test_defaults_are_argos() -> None:
    bars = sample()[:60]
    engine = engine_with(bars)
    closes = [b.close for b in bars]
    assert value(engine, K.MA, bars[-1])["ma"] == pytest.approx(np.mean(closes[-20:]), rel=1e-13)
    assert value(engine, K.EMA, bars[-1])["ema"] == value(engine, K.MA, bars[-1])["ma"]
    macd = np.mean(closes[-12:]) - np.mean(closes[-26:])
    assert value(engine, K.MACD, bars[-1])["macd"] == pytest.approx(macd, rel=1e-9)
    assert value(engine, K.ATR, bars[-1])["atr"] == pytest.approx(np.mean(closes[-14:]), rel=1e-13)


# -- every bar of the sample, against a vectorized restatement --------------------------------


def windows(x: np.ndarray, n: int) -> np.ndarray:
    """Row i holds x[i - n + 1 .. i] (rows before that are padded with NaN)."""
    out = np.full((len(x), n), np.nan)
    view = np.lib.stride_tricks.sliding_window_view(x, n)
    out[n - 1 :] = view
    return out


def ref_rsi(c: np.ndarray, n: int) -> np.ndarray:
    changes = windows(np.concatenate([[np.nan], np.diff(c)]), n)
    gain = np.where(changes > 0, changes, 0.0).mean(axis=1)
    loss = np.where(changes < 0, -changes, 0.0).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(loss == 0, 100.0, 100 - 100 / (1 + gain / loss))
    rsi[:n] = np.nan
    return rsi


def ref_mean(c: np.ndarray, n: int) -> np.ndarray:
    means: np.ndarray = windows(c, n).mean(axis=1)
    return means


def ref_williams(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    hh, ll = windows(h, n).max(axis=1), windows(lo, n).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        wr: np.ndarray = np.where(hh == ll, 0.0, (hh - c) / (hh - ll) * -100)
    return wr


def ref_psy(c: np.ndarray, n: int) -> np.ndarray:
    ups = windows(np.concatenate([[np.nan], (np.diff(c) > 0).astype(float)]), n)
    out: np.ndarray = ups.sum(axis=1) / n * 100
    out[:n] = np.nan
    return out


def ref_bands(c: np.ndarray, n: int, k: float) -> dict[str, np.ndarray]:
    rows = windows(c, n)
    middle, deviation = rows.mean(axis=1), rows.std(axis=1)  # numpy's std: population
    return {"upper": middle + k * deviation, "middle": middle, "lower": middle - k * deviation}


Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

SAMPLE_CASES: list[tuple[str, K, str, Reference]] = [
    ("rsi", K.RSI, "[]", lambda a: {"rsi": ref_rsi(a["c"], 14)}),
    ("rsi-5", K.RSI, "[5]", lambda a: {"rsi": ref_rsi(a["c"], 5)}),
    ("ma", K.MA, "[]", lambda a: {"ma": ref_mean(a["c"], 20)}),
    ("ema", K.EMA, "[9]", lambda a: {"ema": ref_mean(a["c"], 9)}),
    (
        "macd",
        K.MACD,
        "[]",
        lambda a: {"macd": ref_mean(a["c"], 12) - ref_mean(a["c"], 26)},
    ),
    ("atr", K.ATR, "[]", lambda a: {"atr": ref_mean(a["c"], 14)}),
    ("wr", K.WILLIAMS_R, "[]", lambda a: {"wr": ref_williams(a["h"], a["l"], a["c"], 14)}),
    ("psy", K.PSY, "[]", lambda a: {"psy": ref_psy(a["c"], 12)}),
    ("bollinger", K.BOLLINGER_BANDS, "[]", lambda a: ref_bands(a["c"], 20, 2.0)),
    ("bollinger-10", K.BOLLINGER_BANDS, '[10, 1.5, "1h"]', lambda a: ref_bands(a["c"], 10, 1.5)),
]


@pytest.mark.parametrize(
    ("kind", "config", "reference"),
    [case[1:] for case in SAMPLE_CASES],
    ids=[case[0] for case in SAMPLE_CASES],
)
def test_every_bar_of_the_sample_matches_the_restatement(
    kind: K, config: str, reference: Reference
) -> None:
    bars = sample()
    window = Window(size=300)  # a small window: every reading reads only the last bars
    engine = IndicatorEngine(window)
    engine.configure(kind, config)
    got: dict[str, list[float]] = {}
    for bar in bars:
        window.append(bar)
        try:
            values = json.loads(engine.reading(kind, bar.symbol, bar.time).raw_value)
        except InsufficientData:
            values = None
        for key, v in (values or {}).items():
            got.setdefault(key, []).append(v)
        if values is None:
            for key in got:
                got[key].append(np.nan)
    arrays = {k: np.array([getattr(b, name) for b in bars]) for k, name in (
        ("h", "high"), ("l", "low"), ("c", "close")
    )}  # fmt: skip
    expected = reference(arrays)
    assert set(got) == set(expected)
    for key, ref in expected.items():
        ours = np.array(got[key])
        ours = np.concatenate([np.full(len(ref) - len(ours), np.nan), ours])
        first = int(np.argmax(~np.isnan(ref)))
        assert np.isnan(ours[:first]).all() and not np.isnan(ours[first:]).any()
        np.testing.assert_allclose(ours[first:], ref[first:], rtol=1e-12, atol=1e-9)


# -- warm-up -----------------------------------------------------------------------------------

# The first bar (1-based) with a value under the default settings.
WARM_UP = {
    K.RSI: 15,
    K.MA: 20,
    K.EMA: 20,
    K.MACD: 26,
    K.ATR: 14,
    K.WILLIAMS_R: 14,
    K.PSY: 13,
    K.WADDAH_ATTAR: 26,  # MACD's 26, ATR's 14
    # Not argo's: kubetrade's own, which fail the call alike.
    K.STOCHASTIC_OSCILLATOR: 18,
    K.ADX: 28,
    K.CCI: 20,
    K.AO: 34,
    K.RANGE_FILTER: 299,
}


@pytest.mark.parametrize("kind", list(WARM_UP), ids=[k.name for k in WARM_UP])
def test_the_call_fails_until_the_indicator_has_its_bars(kind: K) -> None:
    first = WARM_UP[kind]
    bars = sample()[:first]
    window = Window(size=1000)
    engine = IndicatorEngine(window)
    for i, bar in enumerate(bars, start=1):
        window.append(bar)
        if i < first:
            with pytest.raises(InsufficientData, match=r"BTCUSDT at .*needs"):
                engine.reading(kind, bar.symbol, bar.time)
        else:
            reading = engine.reading(kind, bar.symbol, bar.time)
            assert reading.signal is not SignalType.WAIT
            assert None not in json.loads(reading.raw_value).values()


def test_bollinger_bands_answer_no_action_with_null_while_warming_up() -> None:
    bars = sample()[:20]
    window = Window(size=1000)
    engine = IndicatorEngine(window)
    for bar in bars[:19]:
        window.append(bar)
        assert engine.reading(K.BOLLINGER_BANDS, "BTCUSDT", bar.time) == Reading(
            SignalType.NO_ACTION, "Bollinger Bands", "", "null"
        )
    window.append(bars[19])
    assert engine.reading(K.BOLLINGER_BANDS, "BTCUSDT", bars[19].time).raw_value != "null"


def test_bollinger_bands_count_only_bars_within_the_lookback() -> None:
    bars = bars_of([float(c) for c in range(30)])
    late = [Bar("X", b.time + HOUR, b.open, b.high, b.low, b.close, b.volume) for b in bars[25:]]
    engine = engine_with([*bars[:25], *late], (K.BOLLINGER_BANDS, '[5, 2, "30m"]'))
    assert engine.reading(K.BOLLINGER_BANDS, "X", late[3].time).raw_value == "null"  # 4 bars
    assert engine.reading(K.BOLLINGER_BANDS, "X", late[4].time).raw_value != "null"  # 5


def test_atr_needs_its_bars_within_the_last_24_hours() -> None:
    # 4-hour bars: the last 24 hours hold 7 of them, so ATR(14) never answers, ATR(7) does.
    bars = bars_of([float(c) for c in range(40)], step=4 * HOUR)
    engine = engine_with(bars, (K.ATR, "[14]"))
    with pytest.raises(InsufficientData, match="14 bars within the last 24 hours"):
        engine.reading(K.ATR, "X", bars[-1].time)
    engine.configure(K.ATR, "[7]")
    assert value(engine, K.ATR, bars[-1]) == {"atr": 36.0}


def test_no_later_bar_is_read() -> None:
    bars = bars_of([float(c) for c in range(30)])
    engine = engine_with(bars, (K.MA, "[5]"))
    assert raw(engine, K.MA, bars[9]) == '{"ma":7}'  # bars 5..9, not the newest


# -- the RawValue text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (100.0, "100"),
        (0.25, "0.25"),
        (-3.5, "-3.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (1e-5, "0.00001"),  # Python writes 1e-05
        (1e16, "10000000000000000"),  # Python writes 1e+16
        (1.2345678901234568e20, "123456789012345680000"),
        (2.5e-10, "2.5e-10"),
        (5e-324, "5e-324"),
        (123456.789, "123456.789"),
        (83.33333333333333, "83.33333333333333"),
    ],
)
def test_numbers_are_written_as_go_writes_them(number: float, text: str) -> None:
    assert go_float(number) == text
    assert float(text) == number


def test_keys_are_sorted_as_go_sorts_a_map() -> None:
    assert go_object({"upper": 3.0, "middle": 2.0, "lower": 1.0}) == (
        '{"lower":1,"middle":2,"upper":3}'
    )


# -- the two settings, through the host functions ------------------------------------------------


def host(**kw: str) -> tuple[HostFunctions, Session]:
    state = Session.create(
        session="t",
        symbols=("BTCUSDT",),
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset({"BTCUSDT"})),
        window_size=1000,
        precision=8,
    )
    return HostFunctions(state, **kw), state  # type: ignore[arg-type]


def signal(functions: HostFunctions, kind: pb.IndicatorType, bar: Bar) -> pb.GetSignalResponse:
    ts = timestamp_pb2.Timestamp(seconds=bar.time // 1000)
    data = pb.MarketData(symbol=bar.symbol, close=bar.close, time=ts)
    return functions.get_signal(pb.GetSignalRequest(indicator_type=kind, market_data=data))


def test_the_host_answers_with_argo_by_default_and_talib_when_asked() -> None:
    (argo, argo_state), (talib, talib_state) = host(), host(indicators="talib")
    bars = sample()[:60]
    for bar in bars:
        argo_state.begin_bar(bar)
        talib_state.begin_bar(bar)
    closes = [b.close for b in bars]
    argo_ema = json.loads(signal(argo, pb.INDICATOR_EMA, bars[-1]).rawValue)["ema"]
    talib_ema = json.loads(signal(talib, pb.INDICATOR_EMA, bars[-1]).rawValue)["ema"]
    assert argo_ema == pytest.approx(np.mean(closes[-20:]), rel=1e-13)
    assert talib_ema != pytest.approx(argo_ema, rel=1e-6)  # a true EMA weighs the newest more


def test_the_host_call_fails_while_the_indicator_warms_up() -> None:
    functions, state = host()
    bars = sample()[:15]
    for bar in bars[:3]:
        state.begin_bar(bar)
    with pytest.raises(HostCallError, match=r"get_signal: rsi: BTCUSDT at .*needs 15 bars, has 3"):
        signal(functions, pb.INDICATOR_RSI, bars[2])
