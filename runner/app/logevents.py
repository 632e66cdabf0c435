"""`kubetrade run --log-format json`: the session's events as JSON lines on stdout.

What the console reporter prints for a person (orders, fills, refusals, strategy logs and
failures, feed changes, the summary) becomes one JSON object per event, with the fields
of telemetry/logformat.py (session, namespace, epoch) and the event's own: `bar_time`,
`order_id`, `symbol`, ... Bars themselves are not logged: at replay speed a line per bar
would cost more than the bar. Text that came from the strategy or a venue passes the redactor.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from kubetrade.runner import events as ev
from kubetrade.runner.domain import Order, format_ms
from kubetrade.runner.telemetry.logformat import CONTEXT, clean, iso


def _order(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": str(order.side),
        "type": str(order.order_type),
        "quantity": order.quantity,
        "price": order.price,
        "status": str(order.status),
    }


_ROUTINE = (ev.MarketData, ev.OrderPlaced, ev.OrderFilled, ev.OrderCancelled, ev.StrategyLog)


@dataclass(slots=True)
class JsonReporter:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    quiet: bool = False  # --quiet: failures and the summary only

    def __call__(self, event: ev.Event) -> None:
        if self.quiet and isinstance(event, _ROUTINE):
            return
        match event:
            case ev.MarketData():
                return
            case ev.EngineStarted(symbols=symbols, interval=interval, strategy=strategy):
                self._line("info", "session started", symbols=list(symbols), interval=interval,
                           strategy=strategy)  # fmt: skip
            case ev.OrderPlaced(order=order):
                self._line("info", "order placed", order.time, **_order(order))
            case ev.OrderFilled(order=order, fill=fill):
                self._line(
                    "info", "order filled", fill.time, **_order(order), fill_id=fill.fill_id,
                    fill_quantity=fill.quantity, fill_price=fill.price, fee=fill.fee,
                    realized_pnl=fill.realized_pnl,
                )  # fmt: skip
            case ev.OrderRejected(order=order):
                self._line("warning", f"order {order.status.lower()}", order.updated or order.time,
                           **_order(order), reason=order.reason, detail=order.message)  # fmt: skip
            case ev.OrderCancelled(order=order):
                self._line("info", "order cancelled", order.updated, **_order(order))
            case ev.StrategyError(bar=bar, message=message):
                where = {"symbol": bar.symbol} if bar is not None else {}
                self._line("error", "strategy call failed", bar.time if bar else None,
                           detail=message, **where)  # fmt: skip
            case ev.StrategyLog(time=t, level=level, message=message, fields=fields, symbol=s):
                self._line("info", "strategy log", t, strategy_level=level.lower(),
                           detail=message, symbol=s, fields=fields)  # fmt: skip
            case ev.EngineError(message=message):
                self._line("error", message)
            case ev.ProviderStatus(provider=provider, connected=connected, last_error=why):
                self._line("info" if connected else "warning",
                           f"market data {'connected' if connected else 'disconnected'}",
                           provider=provider, reconnects=event.reconnects, lag_ms=event.lag_ms,
                           detail=why)  # fmt: skip
            case ev.EngineStopped(summary=summary, error=error):
                self._line("error" if error else "info", "session stopped",
                           summary=asdict(summary), detail=error)  # fmt: skip

    def _line(self, level: str, message: str, bar_time: int | None = None, **fields: Any) -> None:
        line: dict[str, Any] = {
            "time": iso(time.time() * 1000),
            "level": level,
            "logger": "kubetrade.events",
            "message": clean(message),
            **CONTEXT.fields,
        }
        if bar_time:
            line["bar_time"] = format_ms(bar_time)
        line.update({k: clean(v) for k, v in fields.items() if v not in (None, "")})
        self.out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self.out.flush()
