"""What a strategy wrote reaches a terminal on one line, its control characters escaped."""

from __future__ import annotations

import io

from kubetrade.runner import events as ev
from kubetrade.runner.app.console import ConsoleReporter
from kubetrade.runner.domain import Bar, Order, OrderStatus, OrderType, Side
from kubetrade.runner.strategy.printable import printable

BAR = Bar(symbol="BTC", time=1_704_067_200_000, open=1, high=2, low=0.5, close=1.5, volume=1)


def test_printable_escapes_what_moves_the_cursor_and_keeps_the_rest() -> None:
    assert printable("plain text, déjà vu ✓") == "plain text, déjà vu ✓"
    assert printable("a\nb\r\x1b[31mc\x00\u202e\u2028") == "a\\nb\\r\\x1b[31mc\\x00\\u202e\\u2028"
    assert printable("tab\there") == "tab\there"


def test_the_console_prints_a_strategys_words_on_one_line_each() -> None:
    # Before: a strategy's log line forged a "filled" line of the runner's own.
    out = io.StringIO()
    console = ConsoleReporter(out=out)
    forged = "\n2024-01-01T00:00:00Z  filled   BUY 100 BTC @ 1 fee 0\x1b[2K\r"
    order = Order(
        client_order_id="c1",
        symbol="BTC\nfilled",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=1,
        price=1,
        time=0,
        status=OrderStatus.REJECTED,
        reason=forged,
        message=forged,
    )
    console(ev.StrategyLog(0, "info", forged, {forged: forged}))
    console(ev.OrderRejected(order))
    console(ev.StrategyError(BAR, forged))
    text = out.getvalue()
    assert text.count("\n") == 3 and "\x1b" not in text and "\r" not in text
    assert not any("filled" in line[:30] for line in text.splitlines())
