"""What every indicator shares: the ABI's enums, a config parser, the spec record.

An indicator is a small state machine (a Calculator) fed the bars of one symbol
in time order; after each bar it either has values or says why it is still
warming up. Its IndicatorSpec says how to read its Config array, how many bars
it needs and how its values become a signal. Nothing here reads a clock: the
values depend on the bars alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from kubetrade.runner.domain import Bar


class IndicatorError(Exception):
    """A bad indicator request (unknown indicator, malformed config); traps the call."""


class InsufficientData(IndicatorError):
    """The indicator lacks history for this bar; traps the call, as argo-trading's host does.

    An answer instead (WAIT with null values) would reach a Go strategy as zeros,
    which it would act on.
    """


class IndicatorType(IntEnum):
    """The ABI's IndicatorType numbers (strategy.proto); a test checks they match."""

    RSI = 0
    MACD = 1
    BOLLINGER_BANDS = 2
    STOCHASTIC_OSCILLATOR = 3
    WILLIAMS_R = 4
    ADX = 5
    CCI = 6
    AO = 7
    TREND_STRENGTH = 8
    RANGE_FILTER = 9
    EMA = 10
    WADDAH_ATTAR = 11
    ATR = 12
    MA = 13
    PSY = 14


class SignalType(IntEnum):
    """The ABI's SignalType numbers (strategy.proto)."""

    BUY_LONG = 0
    SELL_LONG = 1
    BUY_SHORT = 2
    SELL_SHORT = 3
    NO_ACTION = 4
    CLOSE_POSITION = 5
    WAIT = 6
    ABORT = 7


@dataclass(frozen=True, slots=True)
class Reading:
    """One indicator's answer for one symbol at one bar."""

    signal: SignalType
    name: str
    reason: str
    raw_value: str  # the GetSignalResponse.rawValue text: a JSON object, or null


Values = dict[str, float]
# A calculator's answer after a bar: its values, or why it cannot answer yet.
Answer = Values | str
# Parsed Config array, by parameter name. Periods are whole numbers, durations ms.
Params = Mapping[str, float]
Judge = Callable[[Values, Bar, Params], tuple[SignalType, str]]


class Calculator(Protocol):
    def update(self, bar: Bar) -> Answer:
        """Consume the next bar of the symbol (strictly later than the last one)."""
        ...


def warming(need: int, seen: int) -> str:
    return f"needs {need} bars, has {seen}"


# -- parameters ----------------------------------------------------------------


class Kind(IntEnum):
    PERIOD = 0  # a whole number >= 1; 14 and 14.0 are both accepted (Go sends float64)
    NUMBER = 1  # any finite number (thresholds)
    POSITIVE = 2  # a finite number > 0 (multipliers, deviations)
    DURATION = 3  # "24h", "1h30m", or a number of nanoseconds (Go's time.Duration)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: float
    kind: Kind = Kind.NUMBER


def period(name: str, default: int) -> Param:
    return Param(name, default, Kind.PERIOD)


def positive(name: str, default: float) -> Param:
    return Param(name, default, Kind.POSITIVE)


def number(name: str, default: float) -> Param:
    return Param(name, default, Kind.NUMBER)


def duration(name: str, default_ms: int) -> Param:
    return Param(name, default_ms, Kind.DURATION)


_MAX_PERIOD = 1_000_000
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration_ms(text: str) -> int:
    """Go's time.ParseDuration syntax ("24h", "1h30m", "90s"), in milliseconds."""
    rest = text.strip()
    if not rest:
        raise ValueError("empty duration")
    total_ns = 0.0
    while rest:
        match = _DURATION_PART.match(rest)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: use e.g. 24h, 90m, 1h30m")
        total_ns += float(match.group(1)) * _DURATION_NS[match.group(2)]
        rest = rest[match.end() :]
    return round(total_ns / 1_000_000)


def _value(param: Param, raw: object, where: str) -> float:
    if param.kind is Kind.DURATION:
        if isinstance(raw, str):
            try:
                ms = parse_duration_ms(raw)
            except ValueError as exc:
                raise IndicatorError(f"{where}: {exc}") from None
        elif isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            ms = round(raw / 1_000_000)  # Go marshals time.Duration as integer nanoseconds
        else:
            raise IndicatorError(f'{where}: expected a duration such as "24h", got {raw!r}')
        if ms <= 0:
            raise IndicatorError(f"{where}: must be a positive duration, got {raw!r}")
        return ms
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise IndicatorError(f"{where}: expected a number, got {json.dumps(raw)}")
    if param.kind is Kind.PERIOD:
        if raw != int(raw) or not 1 <= raw <= _MAX_PERIOD:
            raise IndicatorError(
                f"{where}: must be a whole number from 1 to {_MAX_PERIOD}, got {raw}"
            )
        return int(raw)
    if param.kind is Kind.POSITIVE and raw <= 0:
        raise IndicatorError(f"{where}: must be greater than 0, got {raw}")
    return float(raw)


def parse_config(name: str, params: tuple[Param, ...], config: str) -> dict[str, float]:
    """Read a Config JSON array by position; missing or null entries take their default."""
    if not config.strip():
        items: list[object] = []  # an empty config means "all defaults"
    else:
        try:
            decoded = json.loads(config)
        except (ValueError, RecursionError) as exc:
            raise IndicatorError(f"{name}: config is not valid JSON ({exc}): {config!r}") from None
        if not isinstance(decoded, list):
            raise IndicatorError(
                f"{name}: config must be a JSON array such as [14], got {config!r}"
            )
        items = decoded
    if len(items) > len(params):
        names = ", ".join(p.name for p in params)
        raise IndicatorError(f"{name}: config takes at most {len(params)} values ({names})")
    parsed: dict[str, float] = {}
    for i, param in enumerate(params):
        raw = items[i] if i < len(items) else None
        where = f"{name}: config[{i}] ({param.name})"
        parsed[param.name] = param.default if raw is None else _value(param, raw, where)
    return parsed


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """Everything the engine needs to know about one indicator type."""

    kind: IndicatorType
    name: str  # GetSignalResponse.name, as argo-trading names it
    keys: tuple[str, ...]  # RawValue keys, in the order they are written
    params: tuple[Param, ...]  # the Config array, by position
    bars: Callable[[Params], int]  # bars needed before the first value
    make: Callable[[Params], Calculator]
    judge: Judge

    def parse(self, config: str) -> dict[str, float]:
        return parse_config(self.name, self.params, config)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}


def whole(params: Params, name: str) -> int:
    return int(params[name])


def threshold_judge(key: str, label: str, *, low: str, high: str, fmt: str = ".2f") -> Judge:
    """The oscillator rule argo-trading uses: below `low` buys long, above `high` sells short."""

    def judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
        value = values[key]
        if value < params[low]:
            return SignalType.BUY_LONG, f"{label} oversold (value={value:{fmt}})"
        if value > params[high]:
            return SignalType.SELL_SHORT, f"{label} overbought (value={value:{fmt}})"
        return SignalType.NO_ACTION, "No signal"

    return judge


def no_signal(reason: str) -> Judge:
    """For indicators that only report values (EMA, MA): never a trading signal."""

    def judge(values: Values, bar: Bar, params: Params) -> tuple[SignalType, str]:
        return SignalType.NO_ACTION, reason

    return judge
