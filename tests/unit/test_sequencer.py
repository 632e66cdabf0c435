"""The sequencer releases bars of several symbols in replay order, and not before their turn."""

from __future__ import annotations

import random

from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.backfill import Cursors
from kubetrade.runner.marketdata.sequencer import Sequencer

MINUTE = 60_000


def bar(symbol: str, minute: int) -> Bar:
    return Bar(symbol, minute * MINUTE, 1, 1, 1, 1, 1)


def test_a_bar_waits_while_an_earlier_symbol_may_still_deliver_the_same_minute() -> None:
    cursors = Cursors(MINUTE)
    sequencer = Sequencer(("A", "B"), cursors.due)
    for symbol in "AB":
        cursors.covered(symbol, 5 * MINUTE)
    late = bar("B", 5)
    assert cursors.admit(late)
    sequencer.hold(late)
    assert sequencer.release() == []  # A may still deliver minute 5, which comes first
    first = bar("A", 5)
    assert cursors.admit(first)
    sequencer.hold(first)
    assert sequencer.release() == [first, late]


def test_a_later_symbol_does_not_hold_an_earlier_one_back() -> None:
    cursors = Cursors(MINUTE)
    sequencer = Sequencer(("A", "B"), cursors.due)
    for symbol in "AB":
        cursors.covered(symbol, 5 * MINUTE)
    early = bar("A", 5)
    assert cursors.admit(early)
    sequencer.hold(early)
    assert sequencer.release() == [early]  # B's minute 5 comes after A's anyway


def test_a_symbol_known_to_have_nothing_lets_the_others_pass() -> None:
    cursors = Cursors(MINUTE)
    sequencer = Sequencer(("A", "B"), cursors.due)
    for symbol in "AB":
        cursors.covered(symbol, 5 * MINUTE)
    held = [bar("B", 5), bar("B", 6), bar("B", 7)]
    for b in held:
        assert cursors.admit(b)
        sequencer.hold(b)
    assert sequencer.release() == []
    cursors.covered("A", 7 * MINUTE)  # REST: A had no trade in minutes 5 and 6
    assert sequencer.release() == held[:2]


def test_an_unknown_symbol_holds_everything() -> None:
    cursors = Cursors(MINUTE)
    sequencer = Sequencer(("A", "B"), cursors.due)
    b = bar("B", 5)
    assert cursors.admit(b)
    sequencer.hold(b)
    assert sequencer.release() == []
    assert len(sequencer) == 1


def test_any_arrival_order_of_many_symbols_comes_out_in_replay_order() -> None:
    rng = random.Random(5)
    symbols = tuple(f"S{i:03d}" for i in range(200))
    cursors = Cursors(MINUTE)
    sequencer = Sequencer(symbols, cursors.due)
    for symbol in symbols:
        cursors.covered(symbol, 0)
    # Each symbol's bars arrive in its own order, but the symbols interleave at random.
    pending = {s: [bar(s, m) for m in range(10) if rng.random() < 0.8] for s in symbols}
    out: list[Bar] = []
    while any(pending.values()):
        symbol = rng.choice([s for s, bars in pending.items() if bars])
        b = pending[symbol].pop(0)
        assert cursors.admit(b)
        sequencer.hold(b)
        out += sequencer.release()
    for symbol in symbols:
        cursors.covered(symbol, 10 * MINUTE)  # the stream moved on for everyone
    out += sequencer.release()
    rank = {s: i for i, s in enumerate(symbols)}
    assert out == sorted(out, key=lambda b: (b.time, rank[b.symbol]))
    assert len(sequencer) == 0
