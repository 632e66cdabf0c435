"""Volatility: Bollinger Bands and ATR, as TA-Lib defines them."""

from __future__ import annotations

from collections import deque

from kubetrade.runner.domain import Bar, format_ms
from kubetrade.runner.hostapi.indicators.base import (
    Answer,
    IndicatorSpec,
    IndicatorType,
    Params,
    SignalType,
    Values,
    duration,
    period,
    positive,
    warming,
    whole,
)
from kubetrade.runner.hostapi.indicators.rolling import Mean, Wilder, population_std, true_range

_DAY_MS = 86_400_000


class Bollinger:
    """SMA of n closes plus/minus k population standard deviations.

    Like argo-trading, the n bars must all lie within `lookback` of the current
    bar: after a gap in the data the bands wait rather than mix stale prices in.
    """

    def __init__(self, n: int, k: float, lookback_ms: int) -> None:
        self._n, self._k, self._lookback = n, k, lookback_ms
        self._mean = Mean(n)
        self._times: deque[int] = deque(maxlen=n)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        self._times.append(bar.time)
        middle = self._mean.push(bar.close)
        if middle is None:
            return warming(self._n, self._seen)
        oldest = self._times[0]
        if bar.time - oldest > self._lookback:
            return (
                f"the last {self._n} bars go back to {format_ms(oldest)}, "
                f"beyond the lookback of {self._lookback} ms"
            )
        width = self._k * population_std(self._mean.window, middle)
        return {"upper": middle + width, "middle": middle, "lower": middle - width}


class Atr:
    """Wilder's average of the true range; the first bar has no previous close."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._avg = Wilder(n)
        self._prev_close: float | None = None
        self._seen = 0

    def push(self, bar: Bar) -> float | None:
        self._seen += 1
        prev, self._prev_close = self._prev_close, bar.close
        if prev is None:
            return None
        return self._avg.push(true_range(bar.high, bar.low, prev))

    def update(self, bar: Bar) -> Answer:
        value = self.push(bar)
        return warming(self._n + 1, self._seen) if value is None else {"atr": value}


def _bollinger_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    if bar.close < values["lower"]:
        return SignalType.BUY_LONG, "Price below lower band"
    if bar.close > values["upper"]:
        return SignalType.SELL_LONG, "Price above upper band"
    return SignalType.NO_ACTION, "Price within bands"


def _atr_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    return SignalType.NO_ACTION, f"ATR value: {values['atr']:.4f}"


BOLLINGER_BANDS = IndicatorSpec(
    kind=IndicatorType.BOLLINGER_BANDS,
    name="Bollinger Bands",  # argo-trading's name for it, unlike the others
    keys=("upper", "middle", "lower"),
    params=(period("period", 20), positive("stdDev", 2.0), duration("lookback", _DAY_MS)),
    bars=lambda p: whole(p, "period"),
    make=lambda p: Bollinger(whole(p, "period"), p["stdDev"], whole(p, "lookback")),
    judge=_bollinger_judge,
)

ATR = IndicatorSpec(
    kind=IndicatorType.ATR,
    name="atr",
    keys=("atr",),
    params=(period("period", 14),),
    bars=lambda p: whole(p, "period") + 1,
    make=lambda p: Atr(whole(p, "period")),
    judge=_atr_judge,
)
