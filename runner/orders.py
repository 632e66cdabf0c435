"""Orders between the book and the venue: sending, settling, recording.

Everything a venue reports (fills, status changes) enters the session here: it
is written to the journal, applied to the book and turned into events, in that
order. Orders leave here too, each marked sent in the journal with the venue's
answer. After a restart, `resolve_open` settles what the journal left open by
asking the venue, so nothing is sent twice and nothing is forgotten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from kubetrade.runner import events as ev
from kubetrade.runner.brokers.base import Broker, BrokerEvent, OrderUpdate
from kubetrade.runner.domain import Fill, Order, OrderStatus, bracket_children
from kubetrade.runner.faults import crash_point
from kubetrade.runner.journal import Journal
from kubetrade.runner.metrics import SessionMetrics
from kubetrade.runner.state import SessionState

_NO_TRANSACTION: contextlib.nullcontext[None] = contextlib.nullcontext()  # reusable
_EXIT_SUFFIXES = ("-tp", "-sl")  # a take-profit's or stop-loss's id: its entry's id plus one


@dataclass(slots=True)
class OrderRouter:
    state: SessionState
    broker: Broker
    metrics: SessionMetrics
    journal: Journal | None = None

    async def resolve_open(self, unsent: set[str]) -> list[ev.Event]:
        """Settle every order the journal left open: ask the venue, never send twice."""
        out: list[ev.Event] = []
        for order in self.state.book.open_orders():
            known = await self.broker.lookup(order)
            if known is not None:
                with self.transaction():
                    if self.journal is not None:
                        self.journal.order_sent(order.client_order_id)
                    self.apply(known, out)
            elif order.client_order_id in unsent:
                # The venue never saw it: the crash came between journal and send. Resent
                # only while this runner's epoch is the journal's newest.
                if self.journal is not None:
                    self.journal.fence()
                await self.send(order, out)
            else:
                # Sent, yet unknown to the venue: it is lost there; say so, do not resend.
                with self.transaction():
                    self.apply_update(
                        OrderUpdate(
                            order.client_order_id,
                            OrderStatus.FAILED,
                            order.updated,
                            "venue_unknown",
                            f"{self.broker.name} has no record of this order after a restart",
                        ),
                        out,
                    )
        return out

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self.journal.transaction() if self.journal else _NO_TRANSACTION

    async def send_queued(self, out: list[ev.Event]) -> None:
        state = self.state
        while state.outbox:
            order = state.outbox.pop(0)
            self.metrics.order("PLACED")
            await self.send(order, out)
        while state.cancels:
            order = state.cancels.pop(0)
            updates = await self.broker.cancel(order)
            with self.transaction():
                self.apply(updates, out)

    async def send(self, order: Order, out: list[ev.Event]) -> None:
        crash_point("before-send")
        updates = await self.broker.submit(order)
        crash_point("after-send")
        with self.transaction():
            if self.journal is not None:
                self.journal.order_sent(order.client_order_id)
            self.apply(updates, out)

    def apply(self, updates: list[BrokerEvent], out: list[ev.Event]) -> None:
        """Record what the venue reports in the book and as events."""
        book = self.state.book
        journal = self.journal
        for update in updates:
            self.adopt_exit(update.client_order_id)
            if isinstance(update, Fill):
                if book.has_fill(update.fill_id):
                    continue  # already booked (a venue may report a fill again after a restart)
                order, fill = book.apply_fill(update)
                self.metrics.fill()
                if journal is not None:
                    journal.fill(fill)
                    if order is not None:
                        journal.order_update(order)
                if order is not None:
                    out.append(ev.OrderFilled(order.copy(), fill))
                    if order.status is OrderStatus.FILLED:
                        self.metrics.order("FILLED")
                        if order.take_profit or order.stop_loss:
                            # The venue now holds the entry's exits; book them too.
                            self.adopt_exit(f"{order.client_order_id}-tp")
                continue
            self.apply_update(update, out)

    def adopt_exit(self, client_order_id: str) -> None:
        """Book the take-profit/stop-loss the venue created for a filled entry, when it
        first reports on it; both sides derive the same order from the entry."""
        book = self.state.book
        if client_order_id in book.orders or client_order_id[-3:] not in _EXIT_SUFFIXES:
            return
        parent = book.orders.get(client_order_id[:-3])
        if parent is None:
            return
        for child in bracket_children(parent):
            if child.client_order_id in book.orders:
                continue
            child.updated = parent.updated
            book.add(child)
            if self.journal is not None:
                self.journal.order_intent(child)
                self.journal.order_sent(child.client_order_id)  # the venue made it

    def apply_update(self, update: OrderUpdate, out: list[ev.Event]) -> None:
        order = self.state.book.orders.get(update.client_order_id)
        if order is None or order.status.is_final:
            return
        if update.status in (OrderStatus.PENDING, OrderStatus.FILLED):
            return  # accepted or resting: nothing changes; fills (not statuses) fill orders
        self.state.book.set_status(order, update.status, update.time, update.reason, update.message)
        if self.journal is not None:
            self.journal.order_update(order)
        self.metrics.order(update.status.value)
        event_type: Callable[..., ev.Event] = (
            ev.OrderCancelled if update.status is OrderStatus.CANCELLED else ev.OrderRejected
        )
        out.append(event_type(order.copy()))
