"""Trend followers: SMA (INDICATOR_MA), EMA, MACD, ADX, as TA-Lib defines them."""

from __future__ import annotations

from kubetrade.runner.domain import Bar
from kubetrade.runner.hostapi.indicators.base import (
    Answer,
    IndicatorSpec,
    IndicatorType,
    Params,
    SignalType,
    Values,
    no_signal,
    number,
    period,
    warming,
    whole,
)
from kubetrade.runner.hostapi.indicators.rolling import Ema, Mean, true_range


class MovingAverage:
    def __init__(self, n: int) -> None:
        self._n = n
        self._mean = Mean(n)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        value = self._mean.push(bar.close)
        return warming(self._n, self._seen) if value is None else {"ma": value}


class ExponentialAverage:
    def __init__(self, n: int) -> None:
        self._n = n
        self._ema = Ema(n)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        value = self._ema.push(bar.close)
        return warming(self._n, self._seen) if value is None else {"ema": value}


class MacdLines:
    """MACD line, signal line and histogram of closes, the way TA-Lib seeds them.

    TA-Lib starts both EMAs on the same bar: the slow one from the mean of the
    first `slow` closes, the fast one from the mean of the `fast` closes ending
    there. The signal EMA then starts from the mean of the first `signal` MACD
    values. This is why TA-Lib's MACD differs from EMA(fast) - EMA(slow) for a
    while after the start of a series.
    """

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        fast, slow = min(fast, slow), max(fast, slow)  # TA-Lib swaps them too
        self._skip_fast = slow - fast
        self._fast, self._slow, self._signal = Ema(fast), Ema(slow), Ema(signal)
        self._count = 0
        self.macd: float | None = None
        self.signal: float | None = None

    def push(self, close: float) -> None:
        self._count += 1
        slow = self._slow.push(close)
        fast = self._fast.push(close) if self._count > self._skip_fast else None
        if slow is None or fast is None:
            return
        self.macd = fast - slow
        self.signal = self._signal.push(self.macd)


class Macd:
    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self._need = max(fast, slow)
        self._lines = MacdLines(fast, slow, signal)
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        self._lines.push(bar.close)
        macd = self._lines.macd
        return warming(self._need, self._seen) if macd is None else {"macd": macd}


def _is_zero(x: float) -> bool:
    return -1e-8 < x < 1e-8  # TA-Lib's TA_IS_ZERO: guards the divisions below


class Adx:
    """Wilder's ADX with +DI and -DI, following TA-Lib's ADX step by step.

    Directional movement and true range are summed over the first n - 1 moves,
    then smoothed with Wilder's running sum (s - s/n + x). The first ADX is
    the mean of the first n DX values; after that it is Wilder-smoothed.
    """

    def __init__(self, n: int) -> None:
        self._n = n
        self._prev: Bar | None = None
        self._moves = 0
        self._plus_dm = self._minus_dm = self._tr = 0.0
        self._dx_sum = 0.0
        self._adx: float | None = None
        self._seen = 0

    def update(self, bar: Bar) -> Answer:
        self._seen += 1
        prev, self._prev = self._prev, bar
        if prev is None:
            return warming(2 * self._n, self._seen)
        n = self._n
        self._moves += 1
        up, down = bar.high - prev.high, prev.low - bar.low
        plus = up if up > 0 and up > down else 0.0
        minus = down if down > 0 and down > up else 0.0
        tr = true_range(bar.high, bar.low, prev.close)
        if self._moves < n:
            self._plus_dm += plus
            self._minus_dm += minus
            self._tr += tr
            return warming(2 * n, self._seen)
        self._plus_dm = self._plus_dm - self._plus_dm / n + plus
        self._minus_dm = self._minus_dm - self._minus_dm / n + minus
        self._tr = self._tr - self._tr / n + tr
        plus_di = minus_di = 0.0
        dx: float | None = None
        if not _is_zero(self._tr):
            plus_di = 100.0 * self._plus_dm / self._tr
            minus_di = 100.0 * self._minus_dm / self._tr
            if not _is_zero(plus_di + minus_di):
                dx = 100.0 * abs(plus_di - minus_di) / (plus_di + minus_di)
        if self._moves < 2 * n - 1:
            self._dx_sum += dx or 0.0
            return warming(2 * n, self._seen)
        if self._adx is None:
            self._adx = (self._dx_sum + (dx or 0.0)) / n
        elif dx is not None:  # TA-Lib keeps the previous ADX when DX is undefined
            self._adx = (self._adx * (n - 1) + dx) / n
        return {"adx": self._adx, "plus_di": plus_di, "minus_di": minus_di}


def _macd_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    macd = values["macd"]
    if macd > 0:
        return SignalType.BUY_LONG, f"MACD bullish (value={macd:.4f})"
    if macd < 0:
        return SignalType.SELL_SHORT, f"MACD bearish (value={macd:.4f})"
    return SignalType.NO_ACTION, "No signal"


def _adx_judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
    adx, plus, minus = values["adx"], values["plus_di"], values["minus_di"]
    detail = f"adx={adx:.2f}, +di={plus:.2f}, -di={minus:.2f}"
    if adx < params["threshold"]:
        return SignalType.NO_ACTION, f"ADX weak trend ({detail})"
    if plus > minus:
        return SignalType.BUY_LONG, f"ADX strong uptrend ({detail})"
    if minus > plus:
        return SignalType.SELL_SHORT, f"ADX strong downtrend ({detail})"
    return SignalType.NO_ACTION, f"ADX no direction ({detail})"


MA = IndicatorSpec(
    kind=IndicatorType.MA,
    name="ma",
    keys=("ma",),
    params=(period("period", 20),),
    bars=lambda p: whole(p, "period"),
    make=lambda p: MovingAverage(whole(p, "period")),
    judge=no_signal("MA indicator calculated"),
)

EMA = IndicatorSpec(
    kind=IndicatorType.EMA,
    name="ema",
    keys=("ema",),
    params=(period("period", 20),),
    bars=lambda p: whole(p, "period"),
    make=lambda p: ExponentialAverage(whole(p, "period")),
    judge=no_signal("EMA indicator calculated"),
)

MACD = IndicatorSpec(
    kind=IndicatorType.MACD,
    name="macd",
    keys=("macd",),
    # The signal period is part of argo-trading's Config; RawValue carries only
    # the MACD line, so it does not change the value reported.
    params=(period("fast", 12), period("slow", 26), period("signal", 9)),
    bars=lambda p: max(whole(p, "fast"), whole(p, "slow")),
    make=lambda p: Macd(whole(p, "fast"), whole(p, "slow"), whole(p, "signal")),
    judge=_macd_judge,
)

ADX = IndicatorSpec(
    kind=IndicatorType.ADX,
    name="adx",
    keys=("adx", "plus_di", "minus_di"),
    params=(period("period", 14), number("threshold", 25.0)),
    bars=lambda p: 2 * whole(p, "period"),
    make=lambda p: Adx(whole(p, "period")),
    judge=_adx_judge,
)
