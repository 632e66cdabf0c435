"""argo-trading's indicators, as its backtest computes them: the default definitions.

Each is a function of the symbol's last bars at or before the asked time (no
state), restated from argo-trading's public source (internal/indicator/*.go,
v1.24.0) so that a strategy tuned in argo's backtest trades the same here:

- RSI: the last period + 1 closes; the plain means of the period gains and of
  the period losses (no smoothing: argo's smoothing loop never runs); 100 when
  the mean loss is 0, else 100 - 100 / (1 + gain / loss).
- MA: the mean of the last `period` closes.
- EMA: argo seeds its EMA with the mean of the first `period` closes it reads,
  and it reads exactly `period` of them, so its EMA is that mean.
- MACD: EMA(fast) - EMA(slow), so the difference of two simple means.
- ATR: argo computes a true range, then passes it to its EMA as an argument
  the EMA ignores: the value is the mean of the last `period` closes. It also
  needs `period` bars within the last 24 hours.
- Williams %R: ((highest high - close) / (highest high - lowest low)) * -100
  over `period` bars; 0 for a flat range.
- PSY: (rising closes among the last `period` changes / period) * 100.
- Bollinger Bands: the mean and population deviation of the last `period`
  closes within `lookback` of the bar; too few of them answer NO_ACTION with a
  null RawValue (argo's only indicator that answers during warm-up).
- Waddah Attar: trend = MACD * multiplier and explosion = ATR * multiplier,
  where argo asks its MACD and ATR indicators with their own settings (its
  fast, slow, signal and atr parameters are accepted and unused); signal and
  histogram are always 0.

Every other indicator fails the call while it lacks bars, as argo's do. The
sums run oldest first and divide last, as argo's loops do (Python's sum() may
add differently), so the values are argo's to the last bit.

Where argo's results depend on its plumbing rather than its formulas, kubetrade
keeps each symbol apart: argo's ATR and Bollinger Bands read every symbol's bars
from the shared time range (and ATR then takes the newest bar's symbol); here
they read the asked symbol's only, which is the same for a one-symbol session.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from kubetrade.runner.domain import Bar
from kubetrade.runner.hostapi.indicators import composite, momentum, trend, volatility
from kubetrade.runner.hostapi.indicators.base import (
    IndicatorSpec,
    IndicatorType,
    InsufficientData,
    Judge,
    Param,
    Params,
    Values,
    whole,
)

__all__ = ["ARGO", "ArgoSpec", "History", "Settings"]

_DAY_MS = 86_400_000

# The last `count` bars of the symbol at or before the asked time, oldest first.
History = Callable[[int], list[Bar]]
# The current settings of another indicator (Waddah Attar reads MACD's and ATR's).
Settings = Callable[[IndicatorType], Params]


@dataclass(frozen=True, slots=True)
class ArgoSpec:
    """An argo-trading indicator: Config and judge as the TA-Lib spec, its own formula."""

    base: IndicatorSpec  # Config array, RawValue keys, name and signal rules
    bars: Callable[[Params, Settings], int]  # most bars one reading looks back
    compute: Callable[[History, int, Params, Settings], Values | None]  # None: not yet

    @property
    def kind(self) -> IndicatorType:
        return self.base.kind

    @property
    def judge(self) -> Judge:
        return self.base.judge

    @property
    def params(self) -> tuple[Param, ...]:
        return self.base.params


def _enough(bars: list[Bar], need: int, what: str) -> list[Bar]:
    if len(bars) < need:
        raise InsufficientData(f"{what} needs {need} bars, has {len(bars)}")
    return bars


def _mean_close(bars: list[Bar]) -> float:
    total = 0.0
    for bar in bars:
        total += bar.close
    return total / len(bars)


# -- the formulas ------------------------------------------------------------------------


def _rsi(history: History, time: int, p: Params, s: Settings) -> Values:
    n = whole(p, "period")
    bars = _enough(history(n + 1), n + 1, "RSI")
    gain = loss = 0.0
    for prev, bar in itertools.pairwise(bars):
        change = bar.close - prev.close
        if change > 0:
            gain += change
        else:
            loss += -change
    gain /= n
    loss /= n
    if loss == 0:
        return {"rsi": 100.0}
    return {"rsi": 100 - (100 / (1 + gain / loss))}


def _mean(key: str, what: str) -> Callable[[History, int, Params, Settings], Values]:
    def compute(history: History, time: int, p: Params, s: Settings) -> Values:
        n = whole(p, "period")
        return {key: _mean_close(_enough(history(n), n, what))}

    return compute


def macd_value(history: History, p: Params) -> float:
    fast, slow = whole(p, "fast"), whole(p, "slow")
    slow_mean = _mean_close(_enough(history(slow), slow, "MACD"))
    return _mean_close(_enough(history(fast), fast, "MACD")) - slow_mean


def atr_value(history: History, time: int, p: Params) -> float:
    n = whole(p, "period")
    bars = _enough(history(n), n, "ATR")
    if bars[0].time < time - _DAY_MS:  # argo reads the last 24 hours only
        raise InsufficientData(f"ATR needs {n} bars within the last 24 hours")
    return _mean_close(bars)


def _macd(history: History, time: int, p: Params, s: Settings) -> Values:
    return {"macd": macd_value(history, p)}


def _atr(history: History, time: int, p: Params, s: Settings) -> Values:
    return {"atr": atr_value(history, time, p)}


def _williams_r(history: History, time: int, p: Params, s: Settings) -> Values:
    n = whole(p, "period")
    bars = _enough(history(n), n, "Williams %R")
    highest, lowest = bars[0].high, bars[0].low
    for bar in bars:
        highest = max(highest, bar.high)
        lowest = min(lowest, bar.low)
    span = highest - lowest
    if span == 0:
        return {"wr": 0.0}
    return {"wr": ((highest - bars[-1].close) / span) * -100}


def _psy(history: History, time: int, p: Params, s: Settings) -> Values:
    n = whole(p, "period")
    bars = _enough(history(n + 1), n + 1, "PSY")
    ups = sum(1 for prev, bar in itertools.pairwise(bars) if bar.close > prev.close)
    return {"psy": (ups / n) * 100}


def _bollinger(history: History, time: int, p: Params, s: Settings) -> Values | None:
    n = whole(p, "period")
    bars = [b for b in history(n) if b.time >= time - p["lookback"]]
    if len(bars) < n:
        return None
    middle = _mean_close(bars)
    squares = 0.0
    for bar in bars:
        diff = bar.close - middle
        squares += diff * diff
    width = p["stdDev"] * math.sqrt(squares / n)  # sqrt, as Go's: pow may differ in the last bit
    return {"upper": middle + width, "middle": middle, "lower": middle - width}


def _waddah_attar(history: History, time: int, p: Params, s: Settings) -> Values:
    macd = macd_value(history, s(IndicatorType.MACD))
    atr = atr_value(history, time, s(IndicatorType.ATR))
    m = p["multiplier"]
    return {
        "atr": atr,
        "explosion": atr * m,
        "histogram": 0.0,
        "macd": macd,
        "signal": 0.0,
        "trend": macd * m,
    }


def _macd_bars(p: Params) -> int:
    return max(whole(p, "fast"), whole(p, "slow"))


def _period(extra: int = 0) -> Callable[[Params, Settings], int]:
    return lambda p, s: whole(p, "period") + extra


ARGO: dict[IndicatorType, ArgoSpec] = {
    spec.kind: spec
    for spec in (
        ArgoSpec(momentum.RSI, _period(1), _rsi),
        ArgoSpec(trend.MA, _period(), _mean("ma", "MA")),
        ArgoSpec(trend.EMA, _period(), _mean("ema", "EMA")),
        ArgoSpec(trend.MACD, lambda p, s: _macd_bars(p), _macd),
        ArgoSpec(volatility.ATR, _period(), _atr),
        ArgoSpec(momentum.WILLIAMS_R, _period(), _williams_r),
        ArgoSpec(momentum.PSY, _period(1), _psy),
        ArgoSpec(volatility.BOLLINGER_BANDS, _period(), _bollinger),
        ArgoSpec(
            composite.WADDAH_ATTAR,
            lambda p, s: max(
                _macd_bars(s(IndicatorType.MACD)), whole(s(IndicatorType.ATR), "period")
            ),
            _waddah_attar,
        ),
    )
}
