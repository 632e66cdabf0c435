"""Bringing a session back from its journal, and feeding the journal each bar.

The engine calls these around its loop: `restore_state` rebuilds the book,
the cache and the marks from a snapshot after a restart; `journal_effects`
writes what a strategy call changed; `account_differences` compares the book
rebuilt from the journal with what the venue says after a restart (the venue
wins; the differences are reported).
"""

from __future__ import annotations

from kubetrade.runner import events as ev
from kubetrade.runner.domain import Position
from kubetrade.runner.journal import Journal, Snapshot
from kubetrade.runner.ledger import Ledger
from kubetrade.runner.state import SessionState, StrategyCache

_TOLERANCE = 1e-6


def restore_state(state: SessionState, snapshot: Snapshot) -> None:
    book = state.book
    for order in snapshot.orders:
        book.add(order)  # with its journaled status; final orders do not count as open
    for fill in snapshot.fills:
        # The orders already carry their filled quantities: move only the ledger.
        book.fill_ids.add(fill.fill_id)
        book.fills.append(book.ledger.apply(fill))
    state.cache = StrategyCache(snapshot.cache)
    state.cache.dirty.clear()
    state.marks = list(snapshot.marks)
    state.marks_journaled = len(state.marks)


def journal_effects(journal: Journal, state: SessionState, events: list[ev.Event]) -> None:
    """Write what the strategy changed during a call: cache entries, marks, logs."""
    cache = state.cache
    for key in cache.dirty:
        journal.cache(key, cache[key])
    cache.dirty.clear()
    for mark in state.marks[state.marks_journaled :]:
        journal.mark(mark)
    state.marks_journaled = len(state.marks)
    for event in events:
        if isinstance(event, ev.StrategyLog):
            journal.log(event.time, event.level, event.message, event.fields)


def account_differences(
    ledger: Ledger, venue_cash: float, venue_positions: dict[str, Position]
) -> list[str]:
    """What the journal's book and the venue disagree about, in words."""
    out: list[str] = []
    if abs(ledger.cash - venue_cash) > _TOLERANCE * max(1.0, abs(venue_cash)):
        out.append(f"cash: journal {ledger.cash:.8g}, venue {venue_cash:.8g}")
    symbols = {s for s, p in ledger.positions.items() if p.quantity} | set(venue_positions)
    for symbol in sorted(symbols):
        mine = ledger.quantity(symbol)
        theirs = venue_positions[symbol].quantity if symbol in venue_positions else 0.0
        if abs(mine - theirs) > _TOLERANCE:
            out.append(f"{symbol} position: journal {mine:g}, venue {theirs:g}")
    return out
