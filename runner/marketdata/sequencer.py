"""Bars of several symbols put in the order a replay of the same data delivers them.

A replay delivers bars by time, then in the session's symbol order. A live
feed learns of them in another order: one symbol's backfill after a reconnect
lands before another's, one symbol's frame before another's of the same
minute. The sequencer holds each bar until no symbol can still deliver one
that comes before it, then releases it: (time, symbol order) across symbols,
whatever the network did, so the strategy's clock never runs backwards and a
live session makes the decisions a replay of its bars makes.

What a symbol can still deliver is its cursor's `due` (backfill.py): no bar of
it older than that will come. A bar (t, s) is released once every other
symbol's (due, rank) is past (t, rank of s). Dues only move forward, so the
smallest of them is kept in a heap whose stale entries are refreshed when met:
O(log symbols) per change, however many symbols the session has.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from kubetrade.runner.domain import Bar

__all__ = ["Sequencer"]

_UNKNOWN = -(2**63)  # a symbol the feed knows nothing about yet may still deliver anything


class Sequencer:
    def __init__(self, symbols: Sequence[str], due: Callable[[str], int | None]) -> None:
        self._rank = {symbol: rank for rank, symbol in enumerate(symbols)}
        self._due = due
        self._held: list[tuple[int, int, Bar]] = []  # heap by (time, rank)
        # One entry per symbol: (due as last seen, rank, symbol); a heap by (due, rank).
        self._floor = [(_UNKNOWN, rank, symbol) for symbol, rank in self._rank.items()]

    def hold(self, bar: Bar) -> None:
        """Keep `bar` until its turn; the feed has admitted it, so its symbol's due is past it."""
        heapq.heappush(self._held, (bar.time, self._rank[bar.symbol], bar))

    def release(self) -> list[Bar]:
        """The held bars whose turn has come, in order."""
        held, floor, out = self._held, self._floor, []
        while held:
            seen, rank, symbol = floor[0]
            due = self._due(symbol)
            due = _UNKNOWN if due is None else due
            if due != seen:  # that symbol moved on since: look again
                heapq.heapreplace(floor, (due, rank, symbol))
                continue
            time, turn, _ = held[0]
            if time > due or (time == due and turn > rank):
                break  # that symbol may still deliver a bar that comes first
            out.append(heapq.heappop(held)[2])
        return out

    def __len__(self) -> int:
        return len(self._held)
