"""Seeded synthetic bars: a geometric random walk per symbol, for demos and tests.

Determinism: every symbol draws from its own `random.Random`, seeded with a SHA-256
digest of (seed, symbol, purpose), never the global RNG, so adding a symbol does not
change the others. The walk uses only `Random.random()` (Mersenne Twister, defined
bit-for-bit) and IEEE-754 +, -, *, / and `round()` (correctly rounded): no libm
function such as exp, log or cos, whose last bit may differ between platforms. The
same arguments therefore give byte-identical bars on every run and machine.

Shape of a bar: open = the previous bar's close (the first open is `start_price`);
within the bar the price takes 4 multiplicative steps of mean drift/4 and standard
deviation volatility/2 (so `drift` and `volatility` are per bar), drawn from an
approximately normal variable (a sum of 6 uniforms, bounded at about ±4.2 sd); the
high and low are the path's extremes stretched by a small random wick. Like a real
instrument each symbol has one fixed tick, set from `start_price` to give it 5
significant digits and never fewer than 2 decimals (100 trades in 0.01, 1.0716 in
0.0001, 0.05 in 0.000001); a walk that falls to the tick stays at least one tick.
Volume is positive and grows with the size of the bar's move.

`history()` generates bars before `start_time_ms` by walking backwards from
`start_price` with a separate derived RNG, so a warm-up window joins the stream
seamlessly (the last history close is the first streamed open). History never goes
before the Unix epoch; asked for bars at or after `start_time_ms`, it returns the very
bars the stream yields.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from dataclasses import dataclass
from itertools import count as counter
from itertools import islice
from typing import TYPE_CHECKING

from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.base import MarketDataError, MarketDataProvider
from kubetrade.runner.marketdata.replay import YIELD_EVERY, Pacer, check_speed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

__all__ = ["SyntheticProvider"]

_STEPS = 4  # price steps within one bar
_SQRT2 = 1.4142135623730951  # the sum of 6 uniforms has variance 1/2: scale it to 1
_WICK = 0.3  # a wick reaches up to 0.3 volatility beyond the path's extreme
_BASE_VOLUME = 1000.0
# Decimal ticks from literals (correctly rounded parses), not 10 ** -d through libm.
_TICKS = tuple(float(f"1e-{d}") for d in range(13))


def _seed(seed: int, symbol: str, purpose: str) -> int:
    # A digest rather than hash(): str hashes are salted per process.
    digest = hashlib.sha256(f"kubetrade.synthetic\0{seed}\0{purpose}\0{symbol}".encode()).digest()
    return int.from_bytes(digest[:16], "big")


def _decimals(price: float) -> int:
    """Decimals for 5 significant digits, at least 2 and at most 12."""
    decimals, scaled = 4, price
    while scaled >= 10 and decimals > 2:
        scaled /= 10
        decimals -= 1
    while scaled < 1 and decimals < 12:
        scaled *= 10
        decimals += 1
    return decimals


@dataclass(slots=True)
class _Walk:
    """One symbol's random stream: the shape of each bar relative to its open."""

    rng: random.Random
    volatility: float
    drift: float

    def shape(self) -> tuple[float, float, float, float]:
        """(high, low, close) as multiples of the open, and the bar's volume."""
        draw = self.rng.random
        step_mean, step_sd = self.drift / _STEPS, self.volatility / 2  # 2 = sqrt(_STEPS)
        level = high = low = 1.0
        for _ in range(_STEPS):
            normal = (draw() + draw() + draw() + draw() + draw() + draw() - 3.0) * _SQRT2
            level *= 1.0 + step_mean + step_sd * normal
            high = max(high, level)
            low = min(low, level)
        high *= 1.0 + self.volatility * _WICK * draw()
        low *= 1.0 - self.volatility * _WICK * draw()
        move = abs(level - 1.0) / self.volatility if self.volatility > 0 else 0.0
        volume = round(_BASE_VOLUME * (0.5 + draw()) * (1.0 + move), 2)
        return high, low, level, volume


def _forward(walk: _Walk, symbol: str, time: int, open_: float, decimals: int) -> Bar:
    """The bar that opens at `open_` (the previous close, kept exactly)."""
    rel_high, rel_low, rel_close, volume = walk.shape()
    close = max(round(open_ * rel_close, decimals), _TICKS[decimals])
    high = max(round(open_ * rel_high, decimals), open_, close)
    low = max(min(round(open_ * rel_low, decimals), open_, close), _TICKS[decimals])
    return Bar(symbol, time, open_, high, low, close, volume)


def _backward(walk: _Walk, symbol: str, time: int, close: float, decimals: int) -> Bar:
    """The bar that closes at `close` (the next bar's open, kept exactly)."""
    rel_high, rel_low, rel_close, volume = walk.shape()
    open_ = max(round(close / rel_close, decimals), _TICKS[decimals])
    high = max(round(open_ * rel_high, decimals), open_, close)
    low = max(min(round(open_ * rel_low, decimals), open_, close), _TICKS[decimals])
    return Bar(symbol, time, open_, high, low, close, volume)


class SyntheticProvider(MarketDataProvider):
    """Deterministic synthetic bars for the session's symbols (see the module docstring).

    The stream yields, for each bar time start_time_ms + i * interval_ms, one bar per
    symbol in the session's order, `bars` times (None: without end). `speed` has the
    replay's meaning: 0 as fast as possible (yielding to the loop every YIELD_EVERY
    bars), N > 0 paced at N times real time. Each `stream()` call starts again from
    the first bar; `close()` ends a running stream.
    """

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        interval_ms: int,
        start_time_ms: int,
        seed: int = 1,
        start_price: float = 100.0,
        volatility: float = 0.002,
        drift: float = 0.0,
        bars: int | None = None,
        speed: float = 0.0,
    ) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise MarketDataError("synthetic market data: give one or more distinct symbols")
        if interval_ms <= 0:
            raise MarketDataError("synthetic market data: interval_ms must be positive")
        if start_time_ms % interval_ms:
            raise MarketDataError(
                f"synthetic market data: start_time_ms {start_time_ms} is not a multiple of "
                f"interval_ms {interval_ms}; start on a bar boundary"
            )
        if not (math.isfinite(start_price) and start_price > 0):
            raise MarketDataError("synthetic market data: start_price must be a positive number")
        # Bounded so that no step factor 1 + mean + sd * normal (|normal| <= 4.25) nears 0.
        if not 0 <= volatility <= 0.2:
            raise MarketDataError("synthetic market data: volatility must be in [0, 0.2] per bar")
        if not -0.05 <= drift <= 0.05:
            raise MarketDataError("synthetic market data: drift must be in [-0.05, 0.05] per bar")
        if bars is not None and bars < 0:
            raise MarketDataError("synthetic market data: bars must be 0 or more, or None")
        self._symbols = tuple(symbols)
        self._interval_ms = interval_ms
        self._start = start_time_ms
        self._seed = seed
        self._decimals = _decimals(start_price)  # the tick, fixed for the session
        self._start_price = max(round(start_price, self._decimals), _TICKS[self._decimals])
        self._volatility = float(volatility)
        self._drift = float(drift)
        self._bars = bars
        self._speed = check_speed(speed)
        self._closed = asyncio.Event()
        self._resume_until: int | None = None
        self._history: dict[str, tuple[_Walk, list[Bar]]] = {}  # backward bars, newest first

    def _walk(self, symbol: str, purpose: str) -> _Walk:
        rng = random.Random(_seed(self._seed, symbol, purpose))
        return _Walk(rng=rng, volatility=self._volatility, drift=self._drift)

    def _generate(self) -> Iterator[Bar]:
        """Every streamed bar, in stream order: time, then the session's symbol order."""
        walks = [self._walk(symbol, "forward") for symbol in self._symbols]
        closes = [self._start_price] * len(self._symbols)
        steps = range(self._bars) if self._bars is not None else counter()
        for step in steps:
            time = self._start + step * self._interval_ms
            for i, symbol in enumerate(self._symbols):
                bar = _forward(walks[i], symbol, time, closes[i], self._decimals)
                closes[i] = bar.close
                yield bar

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        if symbol not in self._symbols:
            raise MarketDataError(
                f"synthetic market data: {symbol!r} is not one of the session's symbols "
                f"{list(self._symbols)}"
            )
        if count <= 0:
            return []
        interval = self._interval_ms
        # Streamed bars before `end`: regenerated from the start (cheap, and exact).
        ahead = max(0, -((self._start - end) // interval))  # ceil((end - start) / interval)
        if self._bars is not None:
            ahead = min(ahead, self._bars)
        index = self._symbols.index(symbol)
        forward: list[Bar] = []
        if ahead:
            stride = len(self._symbols)
            generated = islice(self._generate(), index, ahead * stride, stride)
            forward = list(generated)[-count:]
        wanted = count - len(forward)
        if wanted <= 0:
            return forward
        # Bars before the start: k = 1, 2, ... back, the first one of them before `end`.
        first = 1 if end > self._start else (self._start - end) // interval + 1
        last = min(first + wanted - 1, self._start // interval)  # never before the epoch
        back = self._backward_bars(symbol, last)
        older = back[first - 1 : last]  # newest first
        older.reverse()
        return older + forward

    def _backward_bars(self, symbol: str, depth: int) -> list[Bar]:
        """The first `depth` bars before the start, newest first (cached, grown on demand)."""
        walk, bars = self._history.setdefault(symbol, (self._walk(symbol, "history"), []))
        close = bars[-1].open if bars else self._start_price
        while len(bars) < depth:
            time = self._start - (len(bars) + 1) * self._interval_ms
            bar = _backward(walk, symbol, time, close, self._decimals)
            bars.append(bar)
            close = bar.open
        return bars

    def resume_after(self, cursor: Mapping[str, int]) -> None:
        """After a restart: per symbol, the last bar processed before it. A paced stream
        passes over those bars at once instead of waiting through them again."""
        self._resume_until = max(cursor.values(), default=None)

    async def stream(self) -> AsyncIterator[Bar]:
        pacer = None
        if self._speed > 0:
            pacer = Pacer(speed=self._speed, closed=self._closed, skip_until=self._resume_until)
        closed = self._closed
        countdown = YIELD_EVERY
        for bar in self._generate():
            if pacer is not None:
                await pacer.wait(bar.time)
            else:
                countdown -= 1
                if not countdown:  # unpaced: give the loop a turn now and then
                    countdown = YIELD_EVERY
                    await asyncio.sleep(0)
            if closed.is_set():
                return  # closed by close(), possibly while we waited
            yield bar

    async def close(self) -> None:
        self._closed.set()
