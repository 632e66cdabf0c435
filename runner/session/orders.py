"""Orders between the session and the venue: sending, settling, reporting.

Everything a venue reports (fills, status changes) enters the session here: the
session books and records it, this module turns it into events and metrics.
Orders leave here too, after the session made their intents durable. After a
restart, `resolve_open` settles what the journal left open by asking the venue,
so nothing is sent twice and nothing is forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kubetrade.runner import events as ev
from kubetrade.runner.brokers.base import Broker, BrokerEvent, OrderUpdate
from kubetrade.runner.domain import Fill, Order, OrderStatus
from kubetrade.runner.session import Session
from kubetrade.runner.session.faults import crash_point
from kubetrade.runner.telemetry.metrics import SessionMetrics


@dataclass(slots=True)
class OrderRouter:
    session: Session
    broker: Broker
    metrics: SessionMetrics

    async def resolve_open(self) -> list[ev.Event]:
        """Settle every order the journal left open: ask the venue, never send twice."""
        session = self.session
        out: list[ev.Event] = []
        for order in session.book.open_orders():
            known = await self.broker.lookup(order)
            if known is not None:
                session.record_sent(order)
                self.apply(known, out)
                if session.is_cancelling(order) and not order.status.is_final:
                    # The strategy asked for a cancel the venue may never have received.
                    self.apply(await self.broker.cancel(order), out)
            elif session.is_unsent(order):
                # The venue never saw it: the crash came between journal and send. Resent
                # only while this runner's epoch is the journal's newest.
                session.fence()
                await self.send(order, out)
            else:
                # Sent, yet unknown to the venue: it is lost there; say so, do not resend.
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

    async def send_queued(self, out: list[ev.Event], *, tick: float | None = None) -> None:
        """Send what the strategy queued on this bar; `tick` (perf_counter() when the bar
        was handed to the strategy) times each order's way to the broker."""
        session = self.session
        while session.outbox:
            order = session.outbox.pop(0)
            self.metrics.order(order, "PLACED")
            await self.send(order, out, tick=tick)
        while session.cancels:
            order = session.cancels.pop(0)
            self.apply(await self.broker.cancel(order), out)

    async def send(self, order: Order, out: list[ev.Event], *, tick: float | None = None) -> None:
        crash_point("before-send")
        if tick is not None:
            self.metrics.tick_to_order.observe(time.perf_counter() - tick)
        updates = await self.broker.submit(order)
        crash_point("after-send")
        self.session.record_sent(order)
        self.apply(updates, out)

    def apply(self, updates: list[BrokerEvent], out: list[ev.Event]) -> None:
        """Take what the venue reports into the session, and report it as events."""
        session = self.session
        for update in updates:
            if isinstance(update, Fill):
                booked = session.apply_fill(update)
                if booked is None:
                    continue  # already booked (a venue may report a fill again after a restart)
                order, fill = booked
                self.metrics.fill(fill)
                if order is not None:
                    out.append(ev.OrderFilled(order.copy(), fill))
                    if order.status is OrderStatus.FILLED:
                        self.metrics.order(order, "FILLED")
                continue
            self.apply_update(update, out)

    def apply_update(self, update: OrderUpdate, out: list[ev.Event]) -> None:
        order = self.session.apply_update(update)
        if order is None:
            return
        self.metrics.order(order, update.status.value)
        event_type: Callable[..., ev.Event] = (
            ev.OrderCancelled if update.status is OrderStatus.CANCELLED else ev.OrderRejected
        )
        out.append(event_type(order.copy()))
