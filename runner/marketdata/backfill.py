"""Which bars a live feed still owes, per symbol: the bookkeeping behind gap backfill.

A feed learns about time from the venue, never from the wall clock: the venue's
clock read after a (re)connect, a bar in progress at time t, or a closed bar at
t, each prove that every bar before t has closed at the venue. Whatever the
feed owes before t and has not delivered is a gap, fetched from the venue's
REST API before anything at t. For each symbol the feed keeps `due`, the first
bar time it may still deliver: everything before it was delivered, or fetched
and found absent (a quiet minute of a stock). It starts
- right after the newest bar handed out by `history()` for warm-up;
- otherwise at the first time the venue showed, so a session without warm-up
  owes only the bars from its first moment on.

`due` only moves forward, so it is also the feed's promise about order: no bar
of the symbol older than `due` will come (sequencer.py relies on it), and
`admit` refuses one, whatever the network did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetrade.runner.domain import Bar

__all__ = ["Cursors"]


@dataclass(slots=True)
class Cursors:
    interval_ms: int
    _due: dict[str, int] = field(default_factory=dict)  # first bar time still owed

    def due(self, symbol: str) -> int | None:
        """The first bar time owed for `symbol`, or None when nothing is known yet."""
        return self._due.get(symbol)

    def gap(self, symbol: str, before: int) -> tuple[int, int] | None:
        """The bar times [start, before) to backfill before delivering anything at `before`.

        None when nothing is missing. The first call for an unknown symbol only
        records `before` as where the stream starts owing bars.
        """
        due = self._due.get(symbol)
        if due is None:
            self._due[symbol] = before
            return None
        return (due, before) if before > due else None

    def admit(self, bar: Bar) -> bool:
        """Whether `bar` is still owed (not older than `due`); if so, record it as delivered."""
        due = self._due.get(bar.symbol)
        if due is not None and bar.time < due:
            return False
        self._due[bar.symbol] = bar.time + self.interval_ms
        return True

    def covered(self, symbol: str, end: int) -> None:
        """Every bar of `symbol` before `end` was delivered or found absent."""
        due = self._due.get(symbol)
        if due is None or end > due:
            self._due[symbol] = end

    def resume_after(self, symbol: str, time: int) -> None:
        """Warm-up history went up to the bar at `time`: the stream owes what follows it."""
        self.covered(symbol, time + self.interval_ms)
