"""Oscillators: RSI, Williams %R, Stochastic, CCI, Awesome Oscillator, PSY.

Formulas follow TA-Lib (RSI, WILLR, STOCH, CCI; AO is TA-Lib's SMA of its
MEDPRICE); PSY has no TA-Lib counterpart and follows argo-trading.
"""

from __future__ import annotations

from collections import deque

from kubetrade.runner.domain import Bar
from kubetrade.runner.hostapi.indicators.base import (
    Answer,
    IndicatorSpec,
    IndicatorType,
    Params,
    SignalType,
    Values,
    number,
    period,
    threshold_judge,
    warming,
    whole,
)
from kubetrade.runner.hostapi.indicators.rolling import Extreme, Mean, Wilder


class Rsi:
    """Wilder's RSI: smoothed gains over smoothed gains plus losses, in percent."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._gain, self._loss = Wilder(n), Wilder(n)
        self._prev: float | None = None
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        prev, self._prev = self._prev, bar.close
        if prev is None:
            return warming(self._n + 1, self._seen)
        change = bar.close - prev
        gain = self._gain.push(change if change > 0 else 0.0)
        loss = self._loss.push(-change if change < 0 else 0.0)
        if gain is None or loss is None:
            return warming(self._n + 1, self._seen)
        total = gain + loss
        # A perfectly flat stretch has no direction: report the neutral 50
        # (TA-Lib reports 0 there, which would read as "oversold").
        return {"rsi": 100.0 * gain / total if total > 0 else 50.0}


class WilliamsR:
    """%R = -100 * (highest high - close) / (highest high - lowest low) over n bars."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._high, self._low = Extreme(n, highest=True), Extreme(n, highest=False)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        hh, ll = self._high.push(bar.high), self._low.push(bar.low)
        if hh is None or ll is None:
            return warming(self._n, self._seen)
        span = hh - ll
        return {"wr": -100.0 * (hh - bar.close) / span if span else 0.0}


class Stochastic:
    """Slow stochastic: %K = SMA(fast %K, smooth), %D = SMA(%K, signal) (TA-Lib STOCH)."""

    def __init__(self, n: int, smooth: int, signal: int) -> None:
        self._need = n + smooth + signal - 2
        self._high, self._low = Extreme(n, highest=True), Extreme(n, highest=False)
        self._k, self._d = Mean(smooth), Mean(signal)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        hh, ll = self._high.push(bar.high), self._low.push(bar.low)
        if hh is None or ll is None:
            return warming(self._need, self._seen)
        span = hh - ll
        k = self._k.push(100.0 * (bar.close - ll) / span if span else 0.0)
        d = None if k is None else self._d.push(k)
        if k is None or d is None:
            return warming(self._need, self._seen)
        return {"k": k, "d": d}


class Cci:
    """(typical price - its SMA) / (0.015 * mean absolute deviation) over n bars."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._tp: deque[float] = deque(maxlen=n)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        tp = (bar.high + bar.low + bar.close) / 3.0
        window = self._tp
        window.append(tp)
        if len(window) < self._n:
            return warming(self._n, self._seen)
        mean = sum(window) / self._n
        deviation = sum(abs(v - mean) for v in window) / self._n
        return {"cci": (tp - mean) / (0.015 * deviation) if deviation else 0.0}


class AwesomeOscillator:
    """SMA(median price, fast) - SMA(median price, slow); median price = (high + low) / 2."""

    def __init__(self, fast: int, slow: int) -> None:
        self._need = max(fast, slow)
        self._fast, self._slow = Mean(fast), Mean(slow)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        median = (bar.high + bar.low) / 2.0
        fast, slow = self._fast.push(median), self._slow.push(median)
        if fast is None or slow is None:
            return warming(self._need, self._seen)
        return {"ao": fast - slow}


class Psy:
    """Psychological line: the share of the last n closes that rose, in percent."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._ups: deque[bool] = deque(maxlen=n)
        self._prev: float | None = None
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        prev, self._prev = self._prev, bar.close
        if prev is not None:
            self._ups.append(bar.close > prev)
        if len(self._ups) < self._n:
            return warming(self._n + 1, self._seen)
        return {"psy": 100.0 * sum(self._ups) / self._n}


def _stochastic_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    k, d = values["k"], values["d"]
    if k < params["oversold"]:
        return SignalType.BUY_LONG, f"Stochastic oversold (k={k:.2f}, d={d:.2f})"
    if k > params["overbought"]:
        return SignalType.SELL_SHORT, f"Stochastic overbought (k={k:.2f}, d={d:.2f})"
    return SignalType.NO_ACTION, "No signal"


def _ao_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    # Above the zero line momentum is bullish, below bearish (as argo-trading reads MACD).
    ao = values["ao"]
    if ao > 0:
        return SignalType.BUY_LONG, f"AO bullish (value={ao:.4f})"
    if ao < 0:
        return SignalType.SELL_SHORT, f"AO bearish (value={ao:.4f})"
    return SignalType.NO_ACTION, "No signal"


RSI = IndicatorSpec(
    kind=IndicatorType.RSI,
    name="rsi",
    keys=("rsi",),
    params=(period("period", 14), number("lower", 30.0), number("upper", 70.0)),
    bars=lambda p: whole(p, "period") + 1,
    make=lambda p: Rsi(whole(p, "period")),
    judge=threshold_judge("rsi", "RSI", low="lower", high="upper"),
)

WILLIAMS_R = IndicatorSpec(
    kind=IndicatorType.WILLIAMS_R,
    name="williams_r",
    keys=("wr",),
    params=(period("period", 14), number("overbought", -20.0), number("oversold", -80.0)),
    bars=lambda p: whole(p, "period"),
    make=lambda p: WilliamsR(whole(p, "period")),
    judge=threshold_judge("wr", "Williams %R", low="oversold", high="overbought"),
)

STOCHASTIC = IndicatorSpec(
    kind=IndicatorType.STOCHASTIC_OSCILLATOR,
    name="stochastic_oscillator",
    keys=("k", "d"),
    params=(
        period("period", 14),
        period("smooth", 3),
        period("signal", 3),
        number("overbought", 80.0),
        number("oversold", 20.0),
    ),
    bars=lambda p: whole(p, "period") + whole(p, "smooth") + whole(p, "signal") - 2,
    make=lambda p: Stochastic(whole(p, "period"), whole(p, "smooth"), whole(p, "signal")),
    judge=_stochastic_judge,
)

CCI = IndicatorSpec(
    kind=IndicatorType.CCI,
    name="cci",
    keys=("cci",),
    params=(period("period", 20), number("overbought", 100.0), number("oversold", -100.0)),
    bars=lambda p: whole(p, "period"),
    make=lambda p: Cci(whole(p, "period")),
    judge=threshold_judge("cci", "CCI", low="oversold", high="overbought"),
)

AO = IndicatorSpec(
    kind=IndicatorType.AO,
    name="ao",
    keys=("ao",),
    params=(period("fast", 5), period("slow", 34)),
    bars=lambda p: max(whole(p, "fast"), whole(p, "slow")),
    make=lambda p: AwesomeOscillator(whole(p, "fast"), whole(p, "slow")),
    judge=_ao_judge,
)

PSY = IndicatorSpec(
    kind=IndicatorType.PSY,
    name="psy",
    keys=("psy",),
    params=(period("period", 12), number("upper", 75.0), number("lower", 25.0)),
    bars=lambda p: whole(p, "period") + 1,
    make=lambda p: Psy(whole(p, "period")),
    judge=threshold_judge("psy", "PSY", low="lower", high="upper"),
)
