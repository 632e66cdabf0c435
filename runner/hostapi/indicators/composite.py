"""Composite indicators built from the blocks above: Waddah Attar Explosion, Range Filter.

Neither exists in TA-Lib. Both keep argo-trading's Config, RawValue keys and
signal rules, computed from correct parts (argo-trading's own EMA and ATR
inside these two are not the textbook ones).
"""

from __future__ import annotations

from kubetrade.runner.domain import Bar
from kubetrade.runner.hostapi.indicators.base import (
    Answer,
    IndicatorSpec,
    IndicatorType,
    Params,
    SignalType,
    Values,
    period,
    positive,
    warming,
    whole,
)
from kubetrade.runner.hostapi.indicators.rolling import Ema
from kubetrade.runner.hostapi.indicators.trend import MacdLines
from kubetrade.runner.hostapi.indicators.volatility import Atr


class WaddahAttar:
    """argo-trading's Waddah Attar variant: trend = MACD * m, explosion = ATR * m.

    LazyBear's original compares the change of MACD with a Bollinger width;
    argo-trading's Config has no Bollinger parameters, so, as there, the MACD
    line is the trend and the ATR the explosion, both scaled by the multiplier.
    """

    def __init__(self, fast: int, slow: int, signal: int, atr: int, multiplier: float) -> None:
        self._need = max(max(fast, slow) + signal - 1, atr + 1)
        self._macd = MacdLines(fast, slow, signal)
        self._atr = Atr(atr)
        self._m = multiplier
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        self._macd.push(bar.close)
        atr = self._atr.push(bar)
        macd, signal = self._macd.macd, self._macd.signal
        if macd is None or signal is None or atr is None:
            return warming(self._need, self._seen)
        return {
            "macd": macd,
            "signal": signal,
            "histogram": macd - signal,
            "atr": atr,
            "trend": macd * self._m,
            "explosion": atr * self._m,
        }


class RangeFilter:
    """Donovan Wall's range filter.

    smooth_range = EMA(EMA(|close - previous close|, n), 2n - 1) * multiplier.
    The filter follows the close but moves only when the close leaves the band
    filter +/- smooth_range; upward_count / downward_count count the bars the
    filter has been rising / falling. The filter starts at the close of the
    first bar that has a smooth range (argo-trading starts it there too).
    """

    def __init__(self, n: int, multiplier: float) -> None:
        self._need = 3 * n - 1
        self._avg_range, self._smooth = Ema(n), Ema(2 * n - 1)
        self._m = multiplier
        self._prev_close: float | None = None
        self._filter: float | None = None
        self._up = self._down = 0.0
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        x = bar.close
        prev, self._prev_close = self._prev_close, x
        if prev is None:
            return warming(self._need, self._seen)
        avg = self._avg_range.push(abs(x - prev))
        smooth = None if avg is None else self._smooth.push(avg)
        if smooth is None:
            return warming(self._need, self._seen)
        r = smooth * self._m
        last = self._filter
        if last is None:
            filt = x
        elif x > last:
            filt = last if x - r < last else x - r
        else:
            filt = last if x + r > last else x + r
        if last is not None and filt > last:
            self._up, self._down = self._up + 1, 0.0
        elif last is not None and filt < last:
            self._up, self._down = 0.0, self._down + 1
        self._filter = filt
        return {
            "filter": filt,
            "smooth_range": r,
            "upward_count": self._up,
            "downward_count": self._down,
        }


def _waddah_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    explosion, trend = values["explosion"], values["trend"]
    detail = f"explosion={explosion:.4f}, trend={trend:.4f}"
    if explosion > 0 and trend > 0:
        return SignalType.BUY_LONG, f"Waddah Attar bullish explosion ({detail})"
    if explosion > 0 and trend < 0:
        return SignalType.SELL_SHORT, f"Waddah Attar bearish explosion ({detail})"
    return SignalType.NO_ACTION, "No trend detected"


def _range_filter_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    if values["upward_count"] > 0:
        return SignalType.BUY_LONG, f"Range Filter upward trend (filter={values['filter']:.4f})"
    if values["downward_count"] > 0:
        return SignalType.SELL_SHORT, f"Range Filter downward trend (filter={values['filter']:.4f})"
    return SignalType.NO_ACTION, "No trend detected"


WADDAH_ATTAR = IndicatorSpec(
    kind=IndicatorType.WADDAH_ATTAR,
    name="waddah_attar",
    keys=("macd", "signal", "histogram", "atr", "trend", "explosion"),
    params=(
        period("fast", 20),
        period("slow", 40),
        period("signal", 9),
        period("atr", 14),
        positive("multiplier", 150.0),
    ),
    bars=lambda p: max(
        max(whole(p, "fast"), whole(p, "slow")) + whole(p, "signal") - 1, whole(p, "atr") + 1
    ),
    make=lambda p: WaddahAttar(
        whole(p, "fast"), whole(p, "slow"), whole(p, "signal"), whole(p, "atr"), p["multiplier"]
    ),
    judge=_waddah_judge,
)

RANGE_FILTER = IndicatorSpec(
    kind=IndicatorType.RANGE_FILTER,
    name="range_filter",
    keys=("filter", "smooth_range", "upward_count", "downward_count"),
    params=(period("period", 100), positive("multiplier", 3.0)),
    bars=lambda p: 3 * whole(p, "period") - 1,
    make=lambda p: RangeFilter(whole(p, "period"), p["multiplier"]),
    judge=_range_filter_judge,
)
