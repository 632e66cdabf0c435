"""The per-session indicator engine behind configure_indicator and get_signal.

Configuration is per indicator type, for all symbols (as in argo-trading);
state is per (indicator type, symbol). A track remembers the last bar it
consumed, so asking again on the next bar feeds it just that bar: O(1) per
call. A track starts over from the oldest bar in the window when it is new,
when its last bar has left the window, when it is asked about an earlier bar,
or when its indicator is reconfigured.

Recursive indicators (EMA, RSI, ATR, ADX, MACD, Range Filter) therefore start
from the first bar in the window when first asked. Asked once per bar, which is
how strategies use them, a track never starts over and its values equal the
reference run over every bar the session has seen. Restarted tracks differ
from that by a term that shrinks geometrically with the bars in the window.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from kubetrade.runner.domain import Bar, format_ms
from kubetrade.runner.indicators.base import (
    Answer,
    Calculator,
    IndicatorError,
    IndicatorSpec,
    IndicatorType,
    SignalType,
)
from kubetrade.runner.indicators.registry import spec_for
from kubetrade.runner.window import Window

_FIRST = -(2**63)


@dataclass(frozen=True, slots=True)
class Reading:
    """One indicator's answer for one symbol at one bar."""

    signal: SignalType
    name: str
    reason: str
    raw_value: str  # a JSON object with the indicator's keys; null while warming up


@dataclass(slots=True)
class _Track:
    calc: Calculator
    time: int = _FIRST  # open time of the last bar consumed
    reading: Reading | None = None


def _raw_json(keys: tuple[str, ...], values: dict[str, float] | None) -> str:
    out: dict[str, float | None] = {}
    for key in keys:
        v = None if values is None else values[key]
        out[key] = v if v is not None and math.isfinite(v) else None  # JSON has no NaN
    return json.dumps(out, separators=(",", ":"))


class IndicatorEngine:
    def __init__(self, window: Window) -> None:
        self._window = window
        self._params: dict[IndicatorType, dict[str, float]] = {}
        self._tracks: dict[tuple[IndicatorType, str], _Track] = {}

    def configure(self, kind: int, config: str) -> None:
        spec = spec_for(kind)
        params = spec.parse(config)
        need = spec.bars(params)
        if need > self._window.size:
            raise IndicatorError(
                f"{spec.name}: config {config.strip() or '[]'} needs {need} bars but the "
                f"session keeps {self._window.size} (spec.engine.marketDataCacheSize)"
            )
        if self._params.get(spec.kind, spec.defaults()) == params:
            return  # same settings: keep the warmed-up state
        self._params[spec.kind] = params
        for key in [k for k in self._tracks if k[0] is spec.kind]:
            del self._tracks[key]

    def reading(self, kind: int, symbol: str, time: int) -> Reading:
        """The indicator on the symbol's last bar at or before `time` (no later bar is used)."""
        spec = spec_for(kind)
        key = (spec.kind, symbol)
        track = self._tracks.get(key)
        window = self._window
        if track is not None and track.time == time and track.reading is not None:
            return track.reading  # asked twice on the same bar
        if track is not None and track.time < time and window.range(symbol, track.time, track.time):
            bars = window.range(symbol, track.time + 1, time)  # only the bars it has not seen
        else:
            track = self._tracks[key] = _Track(spec.make(self._params_of(spec)))
            bars = window.range(symbol, _FIRST, time)
        if bars:
            for bar in bars:
                answer = track.calc.update(bar)
            track.time = bars[-1].time
            track.reading = self._read(spec, symbol, bars[-1], answer)
        elif track.reading is None:
            return self._waiting(spec, f"no bars of {symbol} at or before {format_ms(time)}")
        return track.reading

    def _params_of(self, spec: IndicatorSpec) -> dict[str, float]:
        params = self._params.get(spec.kind)
        return params if params is not None else spec.defaults()

    def _read(self, spec: IndicatorSpec, symbol: str, bar: Bar, answer: Answer) -> Reading:
        if isinstance(answer, str):
            return self._waiting(spec, f"{symbol} at {format_ms(bar.time)}: {answer}")
        signal, reason = spec.judge(answer, bar, self._params_of(spec))
        return Reading(signal, spec.name, reason, _raw_json(spec.keys, answer))

    @staticmethod
    def _waiting(spec: IndicatorSpec, detail: str) -> Reading:
        # Not enough data is no fault of the strategy: answer WAIT instead of trapping.
        return Reading(
            SignalType.WAIT, spec.name, f"insufficient data: {detail}", _raw_json(spec.keys, None)
        )
