"""Which bars a live feed still owes, per symbol: the bookkeeping behind gap backfill.

A feed learns about time from the venue's messages, never from the wall clock:
seeing a bar in progress at time t (or a closed bar at t) proves that every bar
before t has closed at the venue. Whatever the feed owes before t and has not
delivered is a gap, fetched from the venue's REST API and delivered, in order,
before anything at t. What is owed starts
- after the newest bar delivered (or handed out by `history()` for warm-up);
- otherwise at the first time the venue showed, so a session without warm-up
  owes only the bars from its first moment on, and a disconnect before its
  first bar still gets backfilled.

`admit` is the last gate before the engine: a bar not newer than the newest
delivered for its symbol is refused, so a repeat or a late frame never reaches
the strategy, whatever the network did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetrade.runner.domain import Bar

__all__ = ["Cursors"]


@dataclass(slots=True)
class Cursors:
    interval_ms: int
    _last: dict[str, int] = field(default_factory=dict)  # newest bar time delivered
    _origin: dict[str, int] = field(default_factory=dict)  # first time owed, nothing delivered

    def due(self, symbol: str) -> int | None:
        """The first bar time owed for `symbol`, or None when nothing is known yet."""
        last = self._last.get(symbol)
        if last is not None:
            return last + self.interval_ms
        return self._origin.get(symbol)

    def gap(self, symbol: str, before: int) -> tuple[int, int] | None:
        """The bar times [start, before) to backfill before delivering anything at `before`.

        None when nothing is missing. The first call for an unknown symbol only
        records `before` as where the stream starts owing bars.
        """
        due = self.due(symbol)
        if due is None:
            self._origin[symbol] = before
            return None
        return (due, before) if before > due else None

    def admit(self, bar: Bar) -> bool:
        """Whether `bar` is newer than every bar delivered for its symbol; if so, record it."""
        last = self._last.get(bar.symbol)
        if last is not None and bar.time <= last:
            return False
        self._last[bar.symbol] = bar.time
        return True

    def resume_after(self, symbol: str, time: int) -> None:
        """Warm-up history went up to the bar at `time`: the stream owes what follows it."""
        last = self._last.get(symbol)
        if last is None or time > last:
            self._last[symbol] = time
