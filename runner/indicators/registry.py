"""Which indicator types this runner implements, keyed by the ABI's IndicatorType."""

from __future__ import annotations

from kubetrade.runner.indicators import composite, momentum, trend, volatility
from kubetrade.runner.indicators.base import IndicatorError, IndicatorSpec, IndicatorType

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


def spec_for(kind: int) -> IndicatorSpec:
    """The spec of an ABI indicator number; IndicatorError names what is not supported."""
    try:
        member = IndicatorType(kind)
    except ValueError:
        raise IndicatorError(f"unknown indicator type {kind}") from None
    spec = SPECS.get(member)
    if spec is None:
        # argo-trading declares TREND_STRENGTH but defines no formula for it.
        raise IndicatorError(f"indicator INDICATOR_{member.name} is not supported")
    return spec
