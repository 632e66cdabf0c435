"""The interface every trading provider implements.

The engine owns the session's book (orders, fills, positions, cash); a broker
only executes. It accepts orders, reports what happened to them as
OrderUpdate and Fill records, and for simulated venues advances on each bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kubetrade.runner.domain import AccountInfo, Bar, Fill, Order, OrderStatus, Position


class BrokerError(Exception):
    """The broker cannot go on (connection, configuration). Never contains secrets."""


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A status change of an order at the venue."""

    client_order_id: str
    status: OrderStatus
    time: int
    reason: str = ""
    message: str = ""


BrokerEvent = OrderUpdate | Fill


class Broker(Protocol):
    """A trading venue, as the engine uses it.

    Adapters subclass this protocol: what only some venues can do is declared here as
    a capability with a default that suits a venue without it, so the engine calls each
    one unconditionally and never probes for it.
    """

    __slots__ = ()

    name: str
    is_live: bool  # True when real money is at stake
    # Holds take-profit and stop-loss exits attached to an order; without it the risk
    # gate refuses an order that carries one.
    supports_brackets: bool = False

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, order: Order) -> list[BrokerEvent]:
        """Send an order; return what is already known of its fate (may be empty)."""
        ...

    async def cancel(self, order: Order) -> list[BrokerEvent]: ...

    async def on_bar(self, bar: Bar) -> list[BrokerEvent]:
        """A new closed bar: simulated venues match resting orders here."""
        ...

    async def lookup(self, order: Order) -> list[BrokerEvent] | None:
        """What the venue knows of an order, by client order id: its status and fills,
        or None if it never received it. Raises if the venue cannot be asked: after a
        crash the engine sends an order again only on a definite None."""
        ...

    def account(self) -> AccountInfo: ...

    def positions(self) -> dict[str, Position]: ...

    async def refresh_account(self) -> AccountInfo:
        """Read the account from the venue again (after a restart, once the orders the
        journal left open are settled); `account()` and `positions()` then return it.
        A venue whose account is always current (simulated, or pushed by the venue)
        has nothing to read."""
        return self.account()

    async def resume_market(self, bars: list[Bar]) -> list[BrokerEvent]:
        """After a restart: the last bar the session processed, per symbol. A simulated
        venue that may have forgotten it prices a resent order at it; a real venue has
        its own market and ignores it."""
        return []
