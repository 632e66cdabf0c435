"""Bringing a session's book back from its journal, and comparing it with the venue.

`rebuild_book` replays the journal's orders and fills into a fresh book (the
ledger moves exactly as it did the first time, fill by fill);
`account_differences` says where that book and the venue's account disagree
after a restart (the venue wins; the differences are reported).
"""

from __future__ import annotations

from kubetrade.runner.domain import Position
from kubetrade.runner.session.book import Book
from kubetrade.runner.session.ledger import Ledger
from kubetrade.runner.session.verify import Snapshot

_TOLERANCE = 1e-6


def rebuild_book(book: Book, snapshot: Snapshot) -> None:
    for order in snapshot.orders:
        book.add(order)  # with its journaled status; final orders do not count as open
    for fill in snapshot.fills:
        # The orders already carry their filled quantities: move only the ledger.
        book.fill_ids.add(fill.fill_id)
        book.fills.append(book.ledger.apply(fill))
    for symbol, (_, close) in snapshot.prices.items():
        book.marks[symbol] = close  # the last closes, until warm-up brings the window back


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
