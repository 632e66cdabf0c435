"""What a running session knows, and the rules for changing it.

The engine and the strategy's host functions share one SessionState. Host
functions run synchronously inside a strategy call, so an order the strategy
places is checked and recorded at once but only queued for the broker; the
engine sends the queue when the strategy call returns. Every venue therefore
sees orders the same way, and a strategy learns of fills on its next bar.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kubetrade.runner import events as ev
from kubetrade.runner.book import Book
from kubetrade.runner.domain import Bar, Mark, Order, OrderStatus, OrderType, RejectReason
from kubetrade.runner.journal import Journal
from kubetrade.runner.ledger import Ledger
from kubetrade.runner.risk import RiskGate
from kubetrade.runner.window import Window


def client_order_id(session: str, epoch: int, sequence: int) -> str:
    """A deterministic id: the same (session, epoch, sequence) always gives the same id.

    A resend after a crash carries the same id, so the venue can refuse the
    duplicate. Venues cap ids (Binance: 36 characters of [A-Za-z0-9._:/-]), so
    the session name is folded into a short hash.
    """
    return f"kt{_session_digest(session)}-{epoch}-{sequence}"


@lru_cache(maxsize=64)
def _session_digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()[:8]


class StrategyCache(dict[str, str]):
    """The strategy's key/value cache; remembers which keys changed since the last flush,
    and how many characters its keys and values hold (the host caps that)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dirty: set[str] = set()
        self.chars = sum(len(k) + len(v) for k, v in self.items())

    def __setitem__(self, key: str, value: str) -> None:
        old = self.get(key)
        self.chars += len(value) - len(old) if old is not None else len(key) + len(value)
        super().__setitem__(key, value)
        self.dirty.add(key)


class HostCallError(Exception):
    """A host function cannot answer; the strategy call traps with this message."""


@dataclass(slots=True)
class SessionState:
    session: str
    symbols: tuple[str, ...]
    book: Book
    risk: RiskGate
    window: Window
    precision: int = 8
    epoch: int = 1
    sequence: int = 0
    now: int = 0  # bar time of the bar being processed: the strategy's clock
    strategy_name: str = ""
    cache: StrategyCache = field(default_factory=StrategyCache)
    marks: list[Mark] = field(default_factory=list)
    marks_journaled: int = 0
    outbox: list[Order] = field(default_factory=list)  # accepted, not yet sent
    cancels: list[Order] = field(default_factory=list)  # sent, cancel requested
    events: list[ev.Event] = field(default_factory=list)  # emitted during a call
    journal: Journal | None = None

    @classmethod
    def create(
        cls,
        *,
        session: str,
        symbols: tuple[str, ...],
        initial_cash: float,
        risk: RiskGate,
        window_size: int,
        precision: int,
    ) -> SessionState:
        return cls(
            session=session,
            symbols=symbols,
            book=Book(ledger=Ledger(cash=initial_cash, precision=precision)),
            risk=risk,
            window=Window(size=window_size),
            precision=precision,
        )

    def next_client_order_id(self) -> str:
        self.sequence += 1
        return client_order_id(self.session, self.epoch, self.sequence)

    def accept(self, order: Order) -> None:
        """Check a new order; queue it for the broker or record its refusal."""
        if order.strategy_order_id and order.strategy_order_id in self.book.by_strategy_id:
            self._refuse(
                order,
                OrderStatus.REJECTED,
                RejectReason.INVALID_ORDER,
                f"order id {order.strategy_order_id!r} was already used; ids must be unique",
            )
            return
        last = self.window.last(order.symbol)
        reference = last.close if last is not None else order.price
        if order.order_type is OrderType.MARKET:
            order.price = reference
        refusal = self.risk.check(order, self.book, reference)
        if refusal is not None:
            self._refuse(order, OrderStatus.REJECTED, refusal.reason, refusal.message)
            return
        self.book.add(order)
        if self.journal is not None:
            self.journal.order_intent(order)  # recorded before it can leave the process
        self.outbox.append(order)
        self.events.append(ev.OrderPlaced(order.copy()))

    def cancel(self, order: Order) -> None:
        if order.status.is_final:
            return  # cancelling a finished order changes nothing
        if order in self.outbox:
            # Never sent: it can be withdrawn here without asking the venue.
            self.outbox.remove(order)
            self.book.set_status(order, OrderStatus.CANCELLED, self.now, "cancelled", "")
            if self.journal is not None:
                self.journal.order_update(order)
            self.events.append(ev.OrderCancelled(order.copy()))
            return
        if order not in self.cancels:
            self.cancels.append(order)

    def find(self, order_id: str) -> Order:
        order = self.book.find(order_id)
        if order is None:
            raise HostCallError(f"no order with id {order_id!r}")
        return order

    def begin_bar(self, bar: Bar) -> None:
        self.now = bar.time
        self.window.append(bar)
        self.book.marks[bar.symbol] = bar.close
        self.risk.start_of_bar(bar.time, self.book)

    def _refuse(self, order: Order, status: OrderStatus, reason: str, message: str) -> None:
        self.book.add(order)
        self.book.set_status(order, status, self.now, reason, message)
        if self.journal is not None:
            self.journal.order_intent(order)
        self.events.append(ev.OrderRejected(order.copy()))
