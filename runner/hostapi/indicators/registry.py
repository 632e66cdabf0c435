"""Which definitions answer each ABI IndicatorType, under each spec.engine.indicators setting."""

from __future__ import annotations

from typing import Literal

from kubetrade.runner.hostapi.indicators import composite, momentum, trend, volatility
from kubetrade.runner.hostapi.indicators.argo import ARGO, ArgoSpec
from kubetrade.runner.hostapi.indicators.base import IndicatorSpec, IndicatorType

__all__ = ["SPECS", "specs"]

# TA-Lib's definitions, and kubetrade's own for what neither TA-Lib nor argo defines.
SPECS: dict[IndicatorType, IndicatorSpec] = {
    spec.kind: spec
    for spec in (
        momentum.RSI,
        trend.MACD,
        volatility.BOLLINGER_BANDS,
        momentum.STOCHASTIC,
        momentum.WILLIAMS_R,
        trend.ADX,
        momentum.CCI,
        momentum.AO,
        composite.RANGE_FILTER,
        trend.EMA,
        composite.WADDAH_ATTAR,
        volatility.ATR,
        trend.MA,
        momentum.PSY,
    )
}


def specs(definitions: Literal["argo", "talib"]) -> dict[IndicatorType, IndicatorSpec | ArgoSpec]:
    """The spec of every supported indicator. argo-trading's backtest answers only for the
    indicators of argo.py (its Stochastic, ADX, CCI and AO have no formula, its Range
    Filter is not registered): the others keep kubetrade's definitions either way."""
    chosen: dict[IndicatorType, IndicatorSpec | ArgoSpec] = dict(SPECS)
    if definitions == "argo":
        chosen.update(ARGO)
    return chosen
