"""RawValue text as argo-trading writes it: Go's encoding/json of a map[string]float64.

argo-trading marshals a signal's values with Go's encoding/json, which sorts a
map's keys and writes each float64 in the shortest form that reads back to the
same number: fixed notation ("100", "0.25"), or exponent notation below 1e-6
and from 1e21 on ("1e-7", "1e+21"). Writing the same bytes means a strategy
that logs or compares the text sees what it saw in argo's backtest. Go refuses
NaN and infinities (the host call fails); so do we.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

from kubetrade.runner.hostapi.indicators.base import IndicatorError

__all__ = ["go_float", "go_object"]


def go_float(value: float) -> str:
    """`value` as Go's encoding/json writes a float64."""
    if not math.isfinite(value):
        raise IndicatorError(f"json: unsupported value: {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    shortest = repr(value)  # Python's repr and Go's strconv: the shortest round-trip digits
    if "e" not in shortest:  # the common case, 1e-4 to 1e16: only Python's ".0" to drop
        return shortest[:-2] if shortest.endswith(".0") else shortest
    sign, digits, exponent = Decimal(shortest).as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exponent  # the decimal point sits after this many digits
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        power = point - 1
        # strconv writes at least two exponent digits; encoding/json trims "e-07" to "e-7".
        body = f"{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
        if -10 < power < 0:
            body = f"{mantissa}e-{-power}"
    elif point <= 0:
        body = "0." + "0" * -point + text
    elif point >= len(text):
        body = text + "0" * (point - len(text))
    else:
        body = text[:point] + "." + text[point:]
    return ("-" if sign else "") + body


def go_object(values: Mapping[str, float]) -> str:
    """A JSON object of `values` with sorted keys and Go's number text, no spaces."""
    # The keys are the specs' own names (plain ASCII): nothing to escape.
    return "{" + ",".join(f'"{key}":{go_float(values[key])}' for key in sorted(values)) + "}"
