"""The per-session indicator engine behind configure_indicator and get_signal.

Configuration is per indicator type, for all symbols (as in argo-trading).
Which formulas answer is the session's choice (spec.engine.indicators):
`argo` (the default) answers with argo-trading's definitions where argo has
one (argo.py: functions of the last few bars, nothing remembered), `talib`
with TA-Lib's; the indicators argo does not define use kubetrade's own
(TA-Lib-style, below) either way. While an indicator lacks history, or the
symbol has no bar at all, the call fails (InsufficientData), as argo's does.

The TA-Lib-style indicators are state machines with one track per (indicator
type, symbol). A track remembers the last bar it consumed, so asking again on
the next bar feeds it just that bar: O(1) per call. A track starts over from
the oldest bar in the window when it is new, when its last bar has left the
window, when it is asked about an earlier bar, or when its indicator is
reconfigured. Recursive indicators (EMA, RSI, ATR, ADX, MACD, Range Filter)
therefore start from the first bar in the window when first asked. Asked once
per bar, which is how strategies use them, a track never starts over and its
values equal the reference run over every bar the session has seen.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

from kubetrade.runner.domain import Bar, format_ms
from kubetrade.runner.hostapi.indicators.argo import ArgoSpec
from kubetrade.runner.hostapi.indicators.base import (
    Answer,
    Calculator,
    IndicatorError,
    IndicatorSpec,
    IndicatorType,
    InsufficientData,
    Params,
    Reading,
    SignalType,
)
from kubetrade.runner.hostapi.indicators.gojson import go_object
from kubetrade.runner.hostapi.indicators.registry import specs
from kubetrade.runner.hostapi.window import Window

__all__ = ["Definitions", "IndicatorEngine"]

Definitions = Literal["argo", "talib"]
_FIRST = -(2**63)


@dataclass(slots=True)
class _Track:
    calc: Calculator
    time: int = _FIRST  # open time of the last bar consumed
    answer: Reading | str | None = None  # on that bar: the reading, or why there is none


def _raw_json(keys: tuple[str, ...], values: dict[str, float]) -> str:
    out: dict[str, float | None] = {}
    for key in keys:
        v = values[key]
        out[key] = v if math.isfinite(v) else None  # JSON has no NaN
    return json.dumps(out, separators=(",", ":"))


class IndicatorEngine:
    def __init__(self, window: Window, definitions: Definitions = "argo") -> None:
        self._window = window
        self._specs = specs(definitions)
        self._params: dict[IndicatorType, dict[str, float]] = {}
        self._tracks: dict[tuple[IndicatorType, str], _Track] = {}
        # argo readings by (type, symbol): (time, reading); a strategy often asks twice a bar.
        self._recent: dict[tuple[IndicatorType, str], tuple[int, Reading]] = {}

    def configure(self, kind: int, config: str) -> None:
        spec = self._spec(kind)
        params = spec.base.parse(config) if isinstance(spec, ArgoSpec) else spec.parse(config)
        need = self._bars(spec, params)
        if need > self._window.size:
            raise IndicatorError(
                f"{self._name(spec)}: config {config.strip() or '[]'} needs {need} bars but the "
                f"session keeps {self._window.size} (spec.engine.marketDataCacheSize)"
            )
        if self.settings(spec.kind) == params:
            return  # same settings: keep the warmed-up state
        self._params[spec.kind] = params
        self._recent.clear()  # Waddah Attar's argo value follows MACD's and ATR's settings
        for key in [k for k in self._tracks if k[0] is spec.kind]:
            del self._tracks[key]

    def settings(self, kind: IndicatorType) -> Params:
        """An indicator's current settings: as configured, else its defaults."""
        params = self._params.get(kind)
        if params is not None:
            return params
        spec = self._spec(kind)
        return spec.base.defaults() if isinstance(spec, ArgoSpec) else spec.defaults()

    def reading(self, kind: int, symbol: str, time: int) -> Reading:
        """The indicator on the symbol's last bar at or before `time` (no later bar is used).

        InsufficientData while the indicator lacks history; IndicatorError for a bad request.
        """
        spec = self._spec(kind)
        if isinstance(spec, ArgoSpec):
            return self._argo_reading(spec, symbol, time)
        return self._track_reading(spec, symbol, time)

    # -- argo-trading's definitions -----------------------------------------------------

    def _argo_reading(self, spec: ArgoSpec, symbol: str, time: int) -> Reading:
        key = (spec.kind, symbol)
        recent = self._recent.get(key)
        if recent is not None and recent[0] == time:
            return recent[1]
        window = self._window
        params = self.settings(spec.kind)
        try:
            values = spec.compute(
                lambda count: window.tail(symbol, time, count), time, params, self.settings
            )
        except InsufficientData as exc:
            raise InsufficientData(
                f"{spec.base.name}: {symbol} at {format_ms(time)}: {exc}"
            ) from None
        if values is None:
            # argo's Bollinger Bands answer instead of failing: no action, no values.
            reading = Reading(SignalType.NO_ACTION, spec.base.name, "", "null")
        else:
            last = window.tail(symbol, time, 1)[-1]
            signal, reason = spec.judge(values, last, params)
            reading = Reading(signal, spec.base.name, reason, go_object(values))
        self._recent[key] = (time, reading)
        return reading

    # -- TA-Lib-style state machines ----------------------------------------------------

    def _track_reading(self, spec: IndicatorSpec, symbol: str, time: int) -> Reading:
        key = (spec.kind, symbol)
        track = self._tracks.get(key)
        window = self._window
        if track is None or track.time != time or track.answer is None:
            if (
                track is not None
                and track.time < time
                and window.range(symbol, track.time, track.time)
            ):
                bars = window.range(symbol, track.time + 1, time)  # only the bars it has not seen
            else:
                track = self._tracks[key] = _Track(spec.make(self.settings(spec.kind)))
                bars = window.range(symbol, _FIRST, time)
            if bars:
                for bar in bars:
                    answer = track.calc.update(bar)
                track.time = bars[-1].time
                track.answer = self._read(spec, symbol, bars[-1], answer)
            elif track.answer is None:
                raise InsufficientData(
                    f"{spec.name}: no bars of {symbol} at or before {format_ms(time)}"
                )
        if isinstance(track.answer, str):
            raise InsufficientData(track.answer)
        assert track.answer is not None
        return track.answer

    def _read(self, spec: IndicatorSpec, symbol: str, bar: Bar, answer: Answer) -> Reading | str:
        if isinstance(answer, str):
            return f"{spec.name}: {symbol} at {format_ms(bar.time)}: {answer}"
        signal, reason = spec.judge(answer, bar, self.settings(spec.kind))
        return Reading(signal, spec.name, reason, _raw_json(spec.keys, answer))

    # -- helpers ------------------------------------------------------------------------

    def _spec(self, kind: int) -> IndicatorSpec | ArgoSpec:
        try:
            member = IndicatorType(kind)
        except ValueError:
            raise IndicatorError(f"unknown indicator type {kind}") from None
        spec = self._specs.get(member)
        if spec is None:
            # argo-trading declares TREND_STRENGTH but defines no formula for it.
            raise IndicatorError(f"indicator INDICATOR_{member.name} is not supported")
        return spec

    def _bars(self, spec: IndicatorSpec | ArgoSpec, params: Params) -> int:
        if isinstance(spec, ArgoSpec):
            return spec.bars(params, self.settings)
        return spec.bars(params)

    @staticmethod
    def _name(spec: IndicatorSpec | ArgoSpec) -> str:
        return spec.base.name if isinstance(spec, ArgoSpec) else spec.name
