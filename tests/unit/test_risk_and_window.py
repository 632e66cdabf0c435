"""Risk limits refuse what they should and nothing else; the window answers range queries."""

from __future__ import annotations

from kubetrade.runner.domain import Bar, Fill, Order, OrderType, Side
from kubetrade.runner.hostapi.window import Window
from kubetrade.runner.session.book import Book
from kubetrade.runner.session.ledger import Ledger
from kubetrade.runner.session.risk import RiskGate, RiskLimits

T0 = 1_700_000_000_000
MIN = 60_000


def order(side: Side, qty: float, t: int = 0, price: float = 0.0, symbol: str = "BTC") -> Order:
    otype = OrderType.LIMIT if price else OrderType.MARKET
    return Order(f"o{t}{side}{qty}", symbol, side, otype, qty, price, T0 + t * MIN)


def gate(**limits: float | int | bool | None) -> tuple[RiskGate, Book]:
    book = Book(ledger=Ledger(cash=10_000))
    g = RiskGate(limits=RiskLimits(**limits), symbols=frozenset({"BTC"}))  # type: ignore[arg-type]
    g.start_of_bar(T0, book)
    return g, book


def test_unknown_symbol_and_bad_numbers_are_refused() -> None:
    g, book = gate()
    r = g.check(order(Side.BUY, 1, symbol="ETH"), book, 100)
    assert r is not None and r.reason == "unknown_symbol" and "BTC" in r.message
    r = g.check(order(Side.BUY, 0), book, 100)
    assert r is not None and r.reason == "invalid_quantity"
    r = g.check(order(Side.BUY, 1, price=-5), book, 100)
    assert r is not None and r.reason == "invalid_price"
    assert g.check(order(Side.BUY, 1), book, 100) is None


def test_max_order_notional_boundary() -> None:
    g, book = gate(max_order_notional=1_000)
    assert g.check(order(Side.BUY, 10), book, 100) is None  # exactly at the limit
    r = g.check(order(Side.BUY, 10.01), book, 100)
    assert r is not None and "maxOrderNotional" in r.message


def test_max_position_notional_counts_holdings_and_pending_buys() -> None:
    g, book = gate(max_position_notional=1_000)
    book.ledger.apply(Fill("f", "x", "BTC", Side.BUY, 5, 100, 0, T0))
    pending = order(Side.BUY, 3, price=100)
    book.add(pending)
    assert g.check(order(Side.BUY, 2), book, 100) is None
    r = g.check(order(Side.BUY, 2.5), book, 100)
    assert r is not None and "maxPositionNotional" in r.message
    assert g.check(order(Side.SELL, 5), book, 100) is None  # reducing is always allowed


def test_orders_per_minute_uses_bar_time() -> None:
    g, book = gate(max_orders_per_minute=2)
    assert g.check(order(Side.BUY, 1, t=0), book, 1) is None
    assert g.check(order(Side.BUY, 2, t=0), book, 1) is None
    r = g.check(order(Side.BUY, 3, t=0), book, 1)
    assert r is not None and "maxOrdersPerMinute" in r.message
    assert g.check(order(Side.BUY, 4, t=1), book, 1) is None  # a minute later


def test_short_selling_refused_unless_allowed() -> None:
    g, book = gate()
    r = g.check(order(Side.SELL, 1), book, 100)
    assert r is not None and "allowShort" in r.message
    g2, book2 = gate(allow_short=True)
    assert g2.check(order(Side.SELL, 1), book2, 100) is None


def test_daily_loss_halts_entries_until_next_day_but_allows_exits() -> None:
    g, book = gate(max_daily_loss=100)
    book.ledger.apply(Fill("f", "x", "BTC", Side.BUY, 10, 100, 0, T0))
    book.marks["BTC"] = 100
    g.start_of_bar(T0 + MIN, book)
    book.marks["BTC"] = 89  # equity down 110
    r = g.check(order(Side.BUY, 1, t=1), book, 89)
    assert r is not None and "maxDailyLoss" in r.message and g.halted
    book.marks["BTC"] = 100  # recovered, but entries stay halted for the day
    assert g.check(order(Side.BUY, 1, t=2), book, 100) is not None
    assert g.check(order(Side.SELL, 1, t=2), book, 100) is None
    g.start_of_bar(T0 + 86_400_000, book)
    assert g.halted_day != g.day  # a new day lifts the halt
    assert g.check(order(Side.BUY, 1, t=24 * 60 + 1), book, 100) is None


def test_window_keeps_size_and_answers_ranges() -> None:
    w = Window(size=5)
    for i in range(23):
        w.append(Bar("BTC", T0 + i * MIN, 1, 1, 1, float(i), 1))
    w.append(Bar("ETH", T0, 1, 1, 1, 1, 1))
    assert [b.close for b in w.bars("BTC")] == [18, 19, 20, 21, 22]
    assert [b.close for b in w.range("BTC", 0, T0 + 20 * MIN)] == [18, 19, 20]
    assert [b.close for b in w.range("BTC", T0 + 19 * MIN, T0 + 21 * MIN)] == [19, 20, 21]
    assert w.range("DOGE", 0, T0) == []
    last = w.last("BTC")
    assert last is not None and last.close == 22
    assert w.count(0, T0 + 22 * MIN) == 6
