"""The paper broker: a local venue that fills orders against the session's bars.

Execution model (bar-based, no look-ahead), by `fill_price` (spec
trading.config.fillPrice):
- close (the default): a market order placed while the strategy handles bar t
  fills at bar t's close, moved against the order by `slippage_bps`, at bar t's
  time. The close is the last price anyone knew when the decision was made.
- midpoint: the same, at (high + low) / 2 of bar t, the price argo-trading's
  backtest fills a market order at.
- nextOpen: the order waits for the symbol's next bar and fills at its open
  (moved by the slippage), at that bar's time, before the strategy sees it; a
  buy the cash no longer covers then fails.
- A limit order that is marketable at that reference price (close or midpoint)
  fills the same way, never at a worse price than its limit. Otherwise (and
  always under nextOpen) it rests and is matched against each later bar before
  the strategy sees that bar: a buy fills when the bar's low reaches the
  limit, at the limit, or at the bar's open if the bar opened through it
  (likewise for sells with the high).
- Cash for resting buys and holdings for resting sells are reserved, so two
  orders can never spend the same money or sell the same units.
Refusals come back as FAILED with the reason strings strategies test for.

With a store (a state directory) the venue is durable: its state lives in the
session's journal (session/venue.py), each step written in the same transaction
as the session's records of it, so after a crash the venue and the journal agree
on every order; `lookup` answers what became of an order the engine is unsure
it ever sent, as a real venue answers a query by client id. A bar on which
nothing can fill changes only the venue's last price, which is recorded with
its next step rather than at once; after a restart the engine shows the venue
the last bar it processed again (`resume_market`), and bars the venue saw
already change nothing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from kubetrade.runner.brokers.base import Broker, BrokerEvent, OrderUpdate
from kubetrade.runner.domain import (
    AccountInfo,
    Bar,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    RejectReason,
    Side,
    bracket_children,
)
from kubetrade.runner.session.ledger import Ledger
from kubetrade.runner.session.venue import VenueStore


@dataclass(frozen=True, slots=True)
class FeeModel:
    """What the venue charges per fill."""

    kind: str = "percentage"  # percentage | perShare | zero
    bps: float = 0.0  # percentage: basis points of notional
    per_share: float = 0.005  # perShare: per unit ...
    minimum: float = 1.0  # ... with a minimum per order

    def fee(self, quantity: float, price: float) -> float:
        if self.kind == "percentage":
            return quantity * price * self.bps / 10_000
        if self.kind == "perShare":
            return max(quantity * self.per_share, self.minimum)
        return 0.0


FillPrice = Literal["close", "midpoint", "nextOpen"]


@dataclass(slots=True)
class _Resting:
    order: Order
    reserved_cash: float = 0.0


@dataclass(slots=True)
class PaperBroker(Broker):
    initial_cash: float = 10_000.0
    fees: FeeModel = field(default_factory=FeeModel)
    slippage_bps: float = 0.0
    fill_price: FillPrice = "close"  # what a market order fills at (see the module docstring)
    precision: int = 8
    name: str = "paper"
    is_live: bool = False
    supports_brackets = True  # take-profit and stop-loss exits rest here until they trigger
    store: VenueStore | None = None
    ledger: Ledger = field(init=False)
    last_bar: dict[str, Bar] = field(default_factory=dict)
    resting: dict[str, _Resting] = field(default_factory=dict)  # by client order id
    known: dict[str, OrderUpdate] = field(default_factory=dict)  # every order seen, latest status
    fills_of: dict[str, list[Fill]] = field(default_factory=dict)
    fill_seq: int = 0
    _unsaved_bars: set[str] = field(default_factory=set)  # last bars not written yet

    def __post_init__(self) -> None:
        self.ledger = Ledger(cash=self.initial_cash, precision=self.precision)
        if self.store is not None:
            self._restore(self.store)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the store is the journal's, which the session closes

    async def submit(self, order: Order) -> list[BrokerEvent]:
        if self.store is None:
            return self._submit(order)  # the common replay case: no transaction to open
        with self._durably():
            return self._submit(order)

    async def cancel(self, order: Order) -> list[BrokerEvent]:
        with self._durably():
            resting = self.resting.pop(order.client_order_id, None)
            if resting is None:
                return []  # already filled or never rested: nothing to cancel
            bar = self.last_bar.get(order.symbol)
            time = bar.time if bar is not None else order.time
            if self.store is not None:
                self.store.unrest(order.client_order_id)
            return [self._status(order, OrderStatus.CANCELLED, time, "cancelled", "")]

    async def on_bar(self, bar: Bar) -> list[BrokerEvent]:
        if self.store is None:
            # Nothing to save, and no restart shows it a bar again: the replay case.
            return self._on_bar(bar)
        last = self.last_bar.get(bar.symbol)
        if last is not None and bar.time <= last.time:
            return []  # seen already: a restart showing the venue its last bar again
        self._unsaved_bars.add(bar.symbol)  # written with the venue's next durable step
        if not self.resting or not self._rests(bar.symbol):
            return self._on_bar(bar)  # nothing can fill: only the last price moves
        with self._durably():
            return self._on_bar(bar)

    async def resume_market(self, bars: list[Bar]) -> list[BrokerEvent]:
        """After a restart: the last bar the session processed, per symbol. The venue may
        have forgotten it (quiet bars are written lazily); it prices a resent order at it."""
        events: list[BrokerEvent] = []
        for bar in bars:
            events += await self.on_bar(bar)
        return events

    def _rests(self, symbol: str) -> bool:
        return any(r.order.symbol == symbol for r in self.resting.values())

    def _on_bar(self, bar: Bar) -> list[BrokerEvent]:
        self.last_bar[bar.symbol] = bar
        if not self.resting:
            return []
        events: list[BrokerEvent] = []
        # Stops first: when one bar reaches both exits of an entry, assume the worse.
        waiting = sorted(self.resting.items(), key=lambda item: not _is_stop(item[1].order))
        for client_id, resting in waiting:
            order = resting.order
            if order.symbol != bar.symbol or client_id not in self.resting:
                continue
            price = self._touch_price(order, bar)
            if price is None:
                continue
            self._unrest(client_id)
            short = self._cash_short(order, price)
            if short is not None:  # a nextOpen buy the open has made too dear
                events.append(
                    self._status(
                        order,
                        OrderStatus.FAILED,
                        bar.time,
                        RejectReason.INSUFFICIENT_BUYING_POWER,
                        short,
                    )
                )
                continue
            events.append(self._fill(order, order.quantity, price, bar.time))
            events.extend(self._cancel_sibling(order, bar.time))
        return events

    async def lookup(self, order: Order) -> list[BrokerEvent] | None:
        """What the venue knows of an order: its status and fills, or None if never seen."""
        update = self.known.get(order.client_order_id)
        if update is None:
            return None
        return [update, *self.fills_of.get(order.client_order_id, [])]

    def _submit(self, order: Order) -> list[BrokerEvent]:
        if order.client_order_id in self.known:
            # A venue refuses a second order with the same client id; nothing changes.
            return [
                OrderUpdate(
                    order.client_order_id,
                    OrderStatus.FAILED,
                    order.time,
                    RejectReason.INVALID_ORDER,
                    "duplicate client order id",
                )
            ]
        refusal = self._refusal(order)
        if refusal is not None:
            reason, message = refusal
            return [self._status(order, OrderStatus.FAILED, order.time, reason, message)]
        bar = self.last_bar[order.symbol]
        price = self._execution_price(order, bar)
        if price is not None:
            return [self._fill(order, order.quantity, price, bar.time)]
        reserve = 0.0
        if order.side is Side.BUY:
            estimate = self._estimate(order, bar)
            reserve = order.quantity * estimate + self.fees.fee(order.quantity, estimate)
        self.resting[order.client_order_id] = _Resting(order, reserve)
        if self.store is not None:
            self.store.rest(order, reserve)
        self._status(order, OrderStatus.PENDING, bar.time)
        return []

    def _unrest(self, client_id: str) -> None:
        del self.resting[client_id]
        if self.store is not None:
            self.store.unrest(client_id)

    def _cancel_sibling(self, child: Order, time: int) -> list[BrokerEvent]:
        """One exit of an entry filled: the other one is cancelled (one cancels other)."""
        if not child.parent_id:
            return []
        events: list[BrokerEvent] = []
        for sibling in bracket_children_ids(child.parent_id):
            resting = self.resting.get(sibling)
            if sibling != child.client_order_id and resting is not None:
                self._unrest(sibling)
                why = f"{child.reason.replace('_', ' ')} {child.client_order_id} filled"
                events.append(
                    self._status(resting.order, OrderStatus.CANCELLED, time, "cancelled", why)
                )
        return events

    def _status(
        self, order: Order, status: OrderStatus, time: int, reason: str = "", message: str = ""
    ) -> OrderUpdate:
        cid = order.client_order_id
        update = OrderUpdate(cid, status, time, reason, message)
        self.known[cid] = update
        if self.store is not None:
            self.store.order(cid, status, time, reason, message, self.fills_of.get(cid, ()))
        return update

    @contextlib.contextmanager
    def _durably(self) -> Iterator[None]:
        """Record one venue step whole (or, if it fails, nothing of it); the journal's
        next commit makes it durable with the session's records of it."""
        store = self.store
        if store is None:
            yield
            return
        store.begin()  # Fenced if a newer runner took the journal: nothing changes
        try:
            yield
            self._save_account(store)
            store.commit()
        except BaseException:
            store.rollback()
            raise

    def _save_account(self, store: VenueStore) -> None:
        ledger = self.ledger
        store.account(
            cash=ledger.cash,
            realized_pnl=ledger.realized_pnl,
            total_fees=ledger.total_fees,
            fill_seq=float(self.fill_seq),
        )
        for position in ledger.positions.values():
            store.position(position)
        for symbol in self._unsaved_bars:
            store.bar(self.last_bar[symbol])
        self._unsaved_bars.clear()

    def _restore(self, store: VenueStore) -> None:
        state = store.take_state()
        account = state.account
        if not account:
            return  # a new venue: starts with initial_cash
        ledger = self.ledger
        ledger.cash = account["cash"]
        ledger.realized_pnl = account["realized_pnl"]
        ledger.total_fees = account["total_fees"]
        self.fill_seq = int(account["fill_seq"])
        ledger.positions = {p.symbol: p for p in state.positions}
        self.resting = {o.client_order_id: _Resting(o, r) for o, r in state.resting}
        self.last_bar = {b.symbol: b for b in state.bars}
        for cid, (status, reason, message, time) in state.known.items():
            self.known[cid] = OrderUpdate(cid, status, time, reason, message)
        for fill in state.fills:
            self.fills_of.setdefault(fill.client_order_id, []).append(fill)

    def account(self) -> AccountInfo:
        marks = {s: b.close for s, b in self.last_bar.items()}
        reserved = sum(r.reserved_cash for r in self.resting.values())
        return AccountInfo(
            balance=self.ledger.cash,
            equity=self.ledger.cash + self.ledger.market_value(marks),
            buying_power=self.ledger.cash - reserved,
            realized_pnl=self.ledger.realized_pnl,
            unrealized_pnl=self.ledger.unrealized_pnl(marks),
            total_fees=self.ledger.total_fees,
        )

    def positions(self) -> dict[str, Position]:
        return {s: p for s, p in self.ledger.positions.items() if p.quantity}

    def _refusal(self, order: Order) -> tuple[str, str] | None:
        if not (math.isfinite(order.quantity) and order.quantity > 0):
            return RejectReason.INVALID_QUANTITY, f"quantity must be > 0, got {order.quantity}"
        if order.order_type is OrderType.LIMIT and not (
            math.isfinite(order.price) and order.price > 0
        ):
            return RejectReason.INVALID_PRICE, f"limit price must be > 0, got {order.price}"
        bar = self.last_bar.get(order.symbol)
        if bar is None:
            return RejectReason.UNKNOWN_SYMBOL, f"no market price for {order.symbol} yet"
        if order.side is Side.BUY:
            price = self._execution_price(order, bar) or self._estimate(order, bar)
            cost = order.quantity * price + self.fees.fee(order.quantity, price)
            available = self.ledger.cash
            if self.resting:
                available -= sum(r.reserved_cash for r in self.resting.values())
            if cost > available + 1e-9:
                return (
                    RejectReason.INSUFFICIENT_BUYING_POWER,
                    f"order needs {cost:.2f} but only {available:.2f} is available",
                )
            return None
        held = self.ledger.quantity(order.symbol)
        promised = sum(
            r.order.quantity
            for r in self.resting.values()
            if r.order.symbol == order.symbol
            and r.order.side is Side.SELL
            and not _covered_stop(r.order, self.resting)
        )
        if order.quantity > held - promised + 10**-self.precision / 2:
            return (
                RejectReason.INSUFFICIENT_SELLING_POWER,
                f"selling {order.quantity} {order.symbol} but only {held - promised} is held",
            )
        return None

    def _reference(self, bar: Bar) -> float:
        """The price an order placed on `bar` is priced from (nextOpen: an estimate)."""
        if self.fill_price == "midpoint":
            return (bar.high + bar.low) / 2
        return bar.close

    def _slipped(self, order: Order, price: float) -> float:
        slip = self.slippage_bps / 10_000
        return price * (1 + slip) if order.side is Side.BUY else price * (1 - slip)

    def _execution_price(self, order: Order, bar: Bar) -> float | None:
        """The price an order placed on `bar` executes at now, or None if it rests."""
        if self.fill_price == "nextOpen":
            return None  # nothing fills on the bar it was decided on
        reference = self._reference(bar)
        price = self._slipped(order, reference)
        if order.order_type is OrderType.MARKET:
            return price
        if order.side is Side.BUY:
            return min(price, order.price) if reference <= order.price else None
        return max(price, order.price) if reference >= order.price else None

    def _estimate(self, order: Order, bar: Bar) -> float:
        """What a resting order will cost per unit, for the cash it reserves meanwhile."""
        if order.order_type is OrderType.LIMIT:
            return order.price
        return self._slipped(order, self._reference(bar))

    def _cash_short(self, order: Order, price: float) -> str | None:
        """Why a buy filling now at `price` is not covered by the cash, or None if it is.
        Only a market order waiting for the next open can come to that: a resting limit
        buy never pays more than the limit its reservation was made for."""
        if order.side is not Side.BUY or order.order_type is not OrderType.MARKET:
            return None
        if order.parent_id:
            return None  # a stop covering a short: an exit is never refused
        cost = order.quantity * price + self.fees.fee(order.quantity, price)
        available = self.ledger.cash - sum(r.reserved_cash for r in self.resting.values())
        if cost <= available + 1e-9:
            return None
        return f"order needs {cost:.2f} at the open but only {available:.2f} is available"

    def _touch_price(self, order: Order, bar: Bar) -> float | None:
        if order.order_type is OrderType.MARKET and not order.parent_id:
            return self._slipped(order, bar.open)  # a nextOpen market order: at the open
        if _is_stop(order):
            # A stop executes at market once traded through: at its price, or at the open
            # if the bar gapped past it.
            if order.side is Side.SELL:
                return min(order.price, bar.open) if bar.low <= order.price else None
            return max(order.price, bar.open) if bar.high >= order.price else None
        if order.side is Side.BUY:
            if bar.low > order.price:
                return None
            return min(order.price, bar.open)
        if bar.high < order.price:
            return None
        return max(order.price, bar.open)

    def _fill(self, order: Order, quantity: float, price: float, time: int) -> Fill:
        """Execute (part of) an order; records the fill and the order's status."""
        self.fill_seq += 1
        fill = Fill(
            fill_id=f"paper-{self.fill_seq}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=self.fees.fee(quantity, price),
            time=time,
        )
        fill = self.ledger.apply(fill)
        fills = self.fills_of.get(order.client_order_id)
        if fills is None:
            fills = self.fills_of[order.client_order_id] = [fill]
            filled = quantity
        else:
            fills.append(fill)
            filled = sum(f.quantity for f in fills)
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PENDING
        self._status(order, status, time)  # with its fills, this one's included
        if status is OrderStatus.FILLED and (order.take_profit or order.stop_loss):
            # The entry is in: its take-profit and stop-loss now rest at the venue.
            for child in bracket_children(order):
                self.resting[child.client_order_id] = _Resting(child, 0.0)
                if self.store is not None:
                    self.store.rest(child, 0.0)
                self._status(child, OrderStatus.PENDING, time)
        return fill


def _is_stop(order: Order) -> bool:
    return bool(order.parent_id) and order.order_type is OrderType.MARKET


def bracket_children_ids(parent_id: str) -> tuple[str, str]:
    return (f"{parent_id}-tp", f"{parent_id}-sl")


def _covered_stop(order: Order, resting: dict[str, _Resting]) -> bool:
    """A stop whose take-profit sibling also rests: the two promise the same units once."""
    return _is_stop(order) and f"{order.parent_id}-tp" in resting
