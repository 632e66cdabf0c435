"""Live progress of a session on a terminal: orders as they happen, a status line, a summary.

Per-bar output would cost more than the engine itself at replay speed, so the
status line is redrawn at most a few times per second.

Much of what is printed comes from the strategy: its log lines and their
fields, its error strings, the symbols, reasons and messages of its orders.
Every line goes through ``printable`` on its way out, so a newline or an ANSI
escape in any of them prints as an escape, never as a forged line of ours.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from kubetrade.runner import events as ev
from kubetrade.runner.domain import Order, format_ms
from kubetrade.runner.strategy.printable import printable


def _order_text(order: Order) -> str:
    price = f" @ {order.price:.8g}" if order.price else ""
    return f"{order.side} {order.quantity:g} {order.symbol} {order.order_type}{price}"


@dataclass(slots=True)
class ConsoleReporter:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    quiet: bool = False
    equity: Callable[[], float] | None = None  # read when the status line is drawn
    refresh_s: float = 0.25
    bars: int = 0
    orders: int = 0
    fills: int = 0
    last_bar: str = ""
    _next_draw: float = 0.0
    _status_shown: bool = False

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.MarketData(bar=bar):
                self.bars += 1
                self.last_bar = format_ms(bar.time)
                self._maybe_draw()
            case ev.EngineStarted():
                self._line(
                    f"session started: strategy {event.strategy!r} on "
                    f"{', '.join(event.symbols)} every {event.interval}"
                )
            case ev.OrderPlaced(order=order):
                self.orders += 1
                self._line(f"{format_ms(order.time)}  placed   {_order_text(order)}")
            case ev.OrderFilled(order=order, fill=fill):
                self.fills += 1
                self._line(
                    f"{format_ms(fill.time)}  filled   {fill.side} {fill.quantity:g} "
                    f"{fill.symbol} @ {fill.price:.8g} fee {fill.fee:.4g}"
                    + (f" pnl {fill.realized_pnl:+.2f}" if fill.realized_pnl else "")
                )
            case ev.OrderRejected(order=order):
                self._line(
                    f"{format_ms(order.time)}  {order.status.lower():8} {_order_text(order)}: "
                    f"{order.reason}: {order.message}"
                )
            case ev.OrderCancelled(order=order):
                self._line(f"{format_ms(order.updated)}  cancelled {_order_text(order)}")
            case ev.StrategyError(bar=bar, message=message):
                # A failed call: not to be mistaken for the strategy's own ERROR log line.
                where = f"{format_ms(bar.time)}  {bar.symbol}" if bar is not None else "-  -"
                self._line(f"{where}  strategy call failed: {message}")
            case ev.StrategyLog(time=t, level=level, message=message, fields=fields, symbol=symbol):
                extra = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
                where = f"{format_ms(t)}  {symbol or '-'}"
                self._line(f"{where}  strategy log {level.upper()}: {message} {extra}".rstrip())
            case ev.EngineError(message=message):
                self._line(f"error: {message}")
            case ev.ProviderStatus(provider=provider, connected=connected, last_error=why):
                state = "connected" if connected else f"disconnected ({why or 'no reason given'})"
                self._line(f"market data {provider}: {state}")
            case ev.EngineStopped(summary=summary, error=error):
                self._print_summary(summary, error)

    def _maybe_draw(self) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if now < self._next_draw:
            return
        if self.out.isatty():
            self._next_draw = now + self.refresh_s
            self.out.write(f"\r{self._status()}")
            self.out.flush()
            self._status_shown = True
        else:
            # A log file or pipe gets a plain progress line now and then.
            self._next_draw = now + 40 * self.refresh_s
            self.out.write(self._status() + "\n")
            self.out.flush()

    def _status(self) -> str:
        equity = f"  equity {self.equity():.2f}" if self.equity is not None else ""
        return (
            f"bars {self.bars}  orders {self.orders}  fills {self.fills}{equity}  "
            f"last bar {self.last_bar}"
        )

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self._status_shown:
            self.out.write("\r\x1b[2K")
            self._status_shown = False
        self.out.write(printable(text) + "\n")
        self.out.flush()

    def _print_summary(self, s: ev.Summary, error: str | None) -> None:
        if self._status_shown:
            self.out.write("\r\x1b[2K")
            self._status_shown = False
        rows = [
            ("bars", f"{s.bars}"),
            ("orders", f"{s.orders}"),
            ("fills", f"{s.fills}"),
            ("rejected", f"{s.rejected}"),
            ("realized PnL", f"{s.realized_pnl:+.2f}"),
            ("unrealized PnL", f"{s.unrealized_pnl:+.2f}"),
            ("equity", f"{s.equity:.2f}"),
            ("strategy errors", f"{s.strategy_errors}"),
            ("duration", f"{s.duration_s:.2f}s"),
        ]
        self.out.write("\nsummary\n")
        for name, value in rows:
            self.out.write(f"  {name:<16}{value:>16}\n")
        if error:
            self.out.write(f"stopped with an error: {printable(error)}\n")
        self.out.flush()
