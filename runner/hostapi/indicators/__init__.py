"""Technical indicators for configure_indicator / get_signal.

Two sets of definitions, chosen per session (spec.engine.indicators):
`argo` (the default; argo.py) computes what argo-trading's backtest computes
for the nine indicators argo defines, so a strategy tuned there trades the
same here; `talib` follows TA-Lib. One module per family (momentum, trend,
volatility, composite) holds the TA-Lib-style formula and IndicatorSpec of
each indicator, which also serve the indicators argo does not define
(Stochastic, ADX, CCI, AO, Range Filter) under either setting. The registry
maps the ABI's IndicatorType numbers to specs; the engine keeps per-session
state.

Config is a JSON array read by position; missing or null entries take the
default, periods may be written 14 or 14.0 (argo-trading itself refuses a
period sent as a JSON number for most indicators: Go decodes it as a float).
RawValue is a JSON object with exactly these keys (argo's definitions write
them as Go does: sorted, numbers in Go's format).

=====================  ============================================  ==============================
indicator              Config (defaults)                             RawValue keys
=====================  ============================================  ==============================
RSI                    [period=14, lower=30, upper=70]               rsi
MACD                   [fast=12, slow=26, signal=9]                  macd
BOLLINGER_BANDS        [period=20, stdDev=2.0, lookback="24h"]       upper, middle, lower
STOCHASTIC_OSCILLATOR  [period=14, smooth=3, signal=3,               k, d (slow %K, %D)
                       overbought=80, oversold=20]
WILLIAMS_R             [period=14, overbought=-20, oversold=-80]     wr
ADX                    [period=14, threshold=25]                     adx, plus_di, minus_di
CCI                    [period=20, overbought=100, oversold=-100]    cci
AO                     [fast=5, slow=34]                             ao
RANGE_FILTER           [period=100, multiplier=3.0]                  filter, smooth_range,
                                                                     upward_count, downward_count
EMA                    [period=20]                                   ema
WADDAH_ATTAR           [fast=20, slow=40, signal=9, atr=14,          macd, signal, histogram, atr,
                       multiplier=150.0]                             trend, explosion
ATR                    [period=14]                                   atr
MA (simple)            [period=20]                                   ma
PSY                    [period=12, upper=75, lower=25]               psy
=====================  ============================================  ==============================

Signals, as argo-trading gives them (the new four follow the same pattern):
RSI, Williams %R, PSY, CCI and Stochastic (%K) below their low threshold are
BUY_LONG, above their high one SELL_SHORT; MACD, AO and Waddah Attar (trend)
above zero are BUY_LONG, below SELL_SHORT; Bollinger: close below the lower
band BUY_LONG, above the upper SELL_LONG; Range Filter: rising BUY_LONG,
falling SELL_SHORT; ADX at or above its threshold follows the larger of +DI
(BUY_LONG) and -DI (SELL_SHORT); EMA, MA and ATR only report values
(NO_ACTION). Otherwise NO_ACTION. Until an indicator has enough bars the
call fails, naming what it needs, as argo-trading's does (argo's Bollinger
Bands alone answer NO_ACTION with a null RawValue meanwhile). The
Bollinger lookback (Go duration text, or nanoseconds as Go marshals a
time.Duration) bounds how old its bars may be.
"""

from kubetrade.runner.hostapi.indicators.base import (
    IndicatorError,
    IndicatorType,
    InsufficientData,
    Reading,
    SignalType,
)
from kubetrade.runner.hostapi.indicators.engine import Definitions, IndicatorEngine
from kubetrade.runner.hostapi.indicators.registry import SPECS

__all__ = [
    "SPECS",
    "Definitions",
    "IndicatorEngine",
    "IndicatorError",
    "IndicatorType",
    "InsufficientData",
    "Reading",
    "SignalType",
]
