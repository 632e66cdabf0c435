"""The one owner of a running session's state: book, ledger, risk, cache, markers, journal.

Everything that changes what the session knows is a method here, and each
method records the change in the journal as it makes it; nobody else touches
the journal. The journal is always there (in memory without a state directory,
where its commits keep nothing), so a session with a state directory and one
without run the same code.

Host functions run synchronously inside a strategy call, so an order the
strategy places is checked and recorded at once but only queued (`outbox`); the
engine makes the bar's records durable (`commit`) and then sends the queue when
the call returns. Every venue therefore sees orders the same way, and a strategy
learns of fills on its next bar.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kubetrade.runner import events as ev
from kubetrade.runner.brokers.base import OrderUpdate
from kubetrade.runner.domain import (
    Bar,
    Fill,
    Mark,
    Order,
    OrderStatus,
    OrderType,
    Position,
    RejectReason,
    bracket_children,
)
from kubetrade.runner.hostapi.window import Window
from kubetrade.runner.session import records as rec
from kubetrade.runner.session.book import Book
from kubetrade.runner.session.commit import GroupCommit
from kubetrade.runner.session.faults import crash_point
from kubetrade.runner.session.journal import Journal
from kubetrade.runner.session.ledger import Ledger
from kubetrade.runner.session.restore import account_differences, rebuild_book
from kubetrade.runner.session.risk import RiskGate
from kubetrade.runner.telemetry.histogram import FastHistogram

_EXIT_SUFFIXES = ("-tp", "-sl")  # a take-profit's or stop-loss's id: its entry's id plus one


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


class HostCallError(Exception):
    """A host function cannot answer; the strategy call traps with this message."""


class StrategyCache(dict[str, str]):
    """The strategy's key/value cache, and how many characters its keys and values hold
    (the host caps that). The session changes it (`Session.set_cache`), which journals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chars = sum(len(k) + len(v) for k, v in self.items())

    def __setitem__(self, key: str, value: str) -> None:
        old = self.get(key)
        self.chars += len(value) - len(old) if old is not None else len(key) + len(value)
        super().__setitem__(key, value)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a restarted session picks up: per symbol, the last bar it processed."""

    cursor: dict[str, int]
    equity_missing: bool  # the last bar's closing equity did not reach the journal


class Session:
    """A session's state and every change to it (see the module docstring)."""

    __slots__ = (
        "_cancelling", "_journal", "_unsent", "book", "cache", "cancels", "epoch", "events",
        "group", "marks", "name", "now", "outbox", "peak_equity", "precision", "risk", "sequence",
        "strategy_name", "symbol", "symbols", "window",
    )  # fmt: skip

    def __init__(
        self,
        *,
        name: str,
        symbols: tuple[str, ...],
        book: Book,
        risk: RiskGate,
        window: Window,
        journal: Journal,
        precision: int = 8,
        group: GroupCommit | None = None,
    ) -> None:
        self.name = name
        self.symbols = symbols
        self.book = book
        self.risk = risk
        self.window = window
        self.precision = precision
        self.epoch = journal.epoch
        self.sequence = 0
        self.now = 0  # bar time of the bar being processed: the strategy's clock
        self.symbol = ""  # symbol of the bar being processed, for what the strategy logs
        self.strategy_name = ""
        self.cache = StrategyCache()  # the strategy's key/value cache (read it here)
        self.marks: list[Mark] = []  # the strategy's chart markers (read them here)
        self.outbox: list[Order] = []  # accepted, not yet sent
        self.cancels: list[Order] = []  # sent, cancel requested
        self.events: list[ev.Event] = []  # emitted during a strategy call
        self._unsent: set[str] = set()  # journaled intents the venue has not confirmed
        self._cancelling: set[str] = set()  # cancels asked for, not yet confirmed
        self._journal = journal
        self.group = group or GroupCommit()
        self.peak_equity = 0.0  # the highest equity after a bar: drawdown is measured from it

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
        journal: Journal | None = None,
        group: GroupCommit | None = None,
    ) -> Session:
        """A session named `session` (metadata.name); in memory unless given a journal."""
        return cls(
            name=session,
            symbols=symbols,
            book=Book(ledger=Ledger(cash=initial_cash, precision=precision)),
            risk=risk,
            window=Window(size=window_size),
            journal=journal if journal is not None else Journal.in_memory(session),
            precision=precision,
            group=group,
        )

    # -- starting -------------------------------------------------------------------

    def restore(self) -> Resume | None:
        """Take up what the journal holds; None for a new session."""
        snapshot = self._journal.take_snapshot()
        self.epoch = self._journal.epoch  # new ids never collide with journaled ones
        if not snapshot.orders and not snapshot.cursor and not snapshot.cache:
            return None
        initial = snapshot.meta.get("initial_cash")
        if initial is not None:
            self.book.ledger.cash = float(initial)  # the journal's fills replay from here
        rebuild_book(self.book, snapshot)
        self.cache = StrategyCache(snapshot.cache)
        self.marks = list(snapshot.marks)
        risk = snapshot.meta.get("risk")
        if risk is not None:
            self.risk.restore(json.loads(risk))
        self._unsent = set(snapshot.unsent)
        self._cancelling = set(snapshot.cancelling)
        last = max(snapshot.cursor.values(), default=None)
        return Resume(
            cursor=dict(snapshot.cursor),
            equity_missing=last is not None
            and (snapshot.last_equity_time is None or snapshot.last_equity_time < last),
        )

    def warm(self, bar: Bar) -> None:
        """A bar of history before the first streamed one: context, not a decision."""
        self.window.append(bar)
        self.book.marks[bar.symbol] = bar.close

    def adopt_account(
        self, cash: float, positions: dict[str, Position], *, restored: bool
    ) -> list[str]:
        """Take the venue's cash and holdings, which are the truth; after a restart, say
        where the journal's book disagreed."""
        ledger = self.book.ledger
        differences = account_differences(ledger, cash, positions) if restored else []
        ledger.cash = cash
        ledger.positions = positions
        return differences

    def open_for_bars(self, resume: Resume | None) -> None:
        """Settled and ready for the first bar: record what a later restart needs."""
        if self._journal.meta("initial_cash") is None:
            self._journal.record_meta("initial_cash", repr(self.book.ledger.cash))
        if resume is not None and resume.equity_missing:
            # The runner stopped between sending the last bar's orders and recording its
            # equity; the orders are settled now, so the figure is the one it would have had.
            self._record_equity(max(resume.cursor.values()))
        self.commit()

    # -- bars -------------------------------------------------------------------------

    def begin_bar(self, bar: Bar) -> None:
        # (This and end_bar run on every bar: written with as few calls as can be.)
        symbol, time, close = bar.symbol, bar.time, bar.close
        self.now = time
        self.symbol = symbol
        self.window.append(bar)
        self.book.marks[symbol] = close
        if self.risk.start_of_bar(time, self.book):
            self._record_risk()  # a new day: the daily-loss window moved
        self._journal.record_bar(symbol, time, close)

    def end_bar(self, bar: Bar) -> None:
        """The bar is done, its orders sent: record its closing equity; commit the group
        of quiet bars when it is due."""
        ledger = self.book.ledger
        cash = ledger.cash
        equity = cash + ledger.market_value(self.book.marks) if ledger.positions else cash
        if equity > self.peak_equity:
            self.peak_equity = equity
        self._journal.record_equity(bar.time, equity, cash)
        if self.group.bar_done():
            self.commit()

    def _record_equity(self, time: int) -> None:
        ledger = self.book.ledger
        cash = ledger.cash
        equity = cash + ledger.market_value(self.book.marks)
        if equity > self.peak_equity:
            self.peak_equity = equity
        self._journal.record_equity(time, equity, cash)

    @property
    def journal_commits(self) -> FastHistogram:
        """How long the journal's transactions took (for metrics)."""
        return self._journal.commits

    @property
    def pending(self) -> bool:
        """Something is recorded that is not durable yet."""
        return self._journal.pending

    def commit(self) -> None:
        """Make everything recorded so far durable (Fenced if a newer runner took over)."""
        if self._journal.commit_records():
            self.group.committed()
            crash_point("bar-journaled")

    # A venue of its own (a real one) remembers what it accepts whatever becomes of the
    # runner, so what the journal records must be durable before the venue moves. The
    # paper venue keeps its state in the journal instead (venue.py): its steps and the
    # session's records of them are durable together, in the commit after the send.

    def commit_before_venue(self) -> None:
        """Before the venue moves on a bar: with orders open there it may report fills,
        which a venue of its own makes durable at once; the bars before must be durable
        first, so a restart never sees a fill from the future of its journal."""
        if self.book.open_ids and not self._journal.hosts_venue:
            self.commit()

    def commit_before_send(self) -> None:
        """Before orders or cancels leave for a venue of its own: their intents must be
        durable first."""
        if (self.outbox or self.cancels) and not self._journal.hosts_venue:
            self.commit()

    def commit_after_send(self) -> None:
        """After orders or cancels went to the paper venue: the intents, the venue's
        acceptance and its fills are committed in one transaction, before the bar's
        events leave the engine (a crash before loses the bar whole, at the venue too).

        Written, not synced: a kill -9 from here on loses none of it (it is in the
        file, which the kernel keeps), and the group's next commit, due within the
        group's bounds as if this one had not been, syncs it to the disk with the bars
        since. Only a power failure before that takes the bar back, at the journal and
        the venue alike, and the bar is processed again. A venue of its own gets no
        such leeway: its intents are synced before they leave (commit_before_send)."""
        if self._journal.hosts_venue and self._journal.commit_records(sync=False):
            crash_point("bar-journaled")

    def fence(self) -> None:
        """Raise Fenced unless this runner's epoch is still the journal's newest."""
        self._journal.check_epoch()

    def close(self) -> None:
        """Commit what is pending (unless the journal failed or was taken over) and close."""
        journal = self._journal
        try:
            if not (journal.fenced or journal.failed):
                self.commit()
        finally:
            journal.close()

    # -- the strategy's requests (host functions) ---------------------------------------

    def next_client_order_id(self) -> str:
        self.sequence += 1
        return client_order_id(self.name, self.epoch, self.sequence)

    def accept(self, order: Order) -> None:
        """Check a new order; queue it for the broker or record its refusal."""
        if order.strategy_order_id and order.strategy_order_id in self.book.by_strategy_id:
            self._refuse(
                order,
                RejectReason.INVALID_ORDER,
                f"order id {order.strategy_order_id!r} was already used; ids must be unique",
            )
            return
        last = self.window.last(order.symbol)
        reference = last.close if last is not None else order.price
        if order.order_type is OrderType.MARKET:
            order.price = reference
        refusal = self.risk.check(order, self.book, reference)
        self._record_risk()  # the rate window and the halt moved
        if refusal is not None:
            self._refuse(order, refusal.reason, refusal.message, refusal.status)
            return
        self.book.add(order)
        self._unsent.add(order.client_order_id)
        self._record_order(order)  # recorded before it can leave the process
        self.outbox.append(order)
        self.events.append(ev.OrderPlaced(order.copy()))

    def cancel(self, order: Order) -> None:
        if order.status.is_final:
            return  # cancelling a finished order changes nothing
        if any(queued is order for queued in self.outbox):
            # Never sent: it can be withdrawn here without asking the venue.
            self.outbox.remove(order)
            self.book.set_status(order, OrderStatus.CANCELLED, self.now, "cancelled", "")
            self._unsent.discard(order.client_order_id)
            self._record_order(order)
            self.events.append(ev.OrderCancelled(order.copy()))
            return
        if not any(asked is order for asked in self.cancels):
            self.cancels.append(order)
            self._cancelling.add(order.client_order_id)
            self._record_order(order)

    def find(self, order_id: str) -> Order:
        order = self.book.find(order_id)
        if order is None:
            raise HostCallError(f"no order with id {order_id!r}")
        return order

    def set_cache(self, key: str, value: str) -> None:
        self.cache[key] = value
        self._journal.record_cache(key, value)

    def add_mark(self, mark: Mark) -> None:
        self.marks.append(mark)
        self._journal.record_mark(mark)

    def log(self, level: str, message: str, fields: dict[str, str]) -> None:
        self.events.append(ev.StrategyLog(self.now, level, message, fields, self.symbol))
        self._journal.record_log(self.now, level, message, fields)

    def take_events(self) -> list[ev.Event]:
        events, self.events = self.events, []
        return events

    def _refuse(
        self,
        order: Order,
        reason: str,
        message: str,
        status: OrderStatus = OrderStatus.REJECTED,
    ) -> None:
        self.book.add(order)
        self.book.set_status(order, status, self.now, reason, message)
        self._record_order(order, refused=True)
        self.events.append(ev.OrderRejected(order.copy()))

    # -- what the venue says (order routing) ----------------------------------------------

    def is_unsent(self, order: Order) -> bool:
        """Journaled, and not known to have reached the venue."""
        return order.client_order_id in self._unsent

    def is_cancelling(self, order: Order) -> bool:
        return order.client_order_id in self._cancelling

    def record_sent(self, order: Order) -> None:
        """The venue has the order (it answered, or it knows it after a restart)."""
        if order.client_order_id in self._unsent:
            self._unsent.discard(order.client_order_id)
            self._record_order(order)

    def apply_fill(self, fill: Fill) -> tuple[Order | None, Fill] | None:
        """Book a fill; None if it was booked before (a venue may report it again)."""
        self.adopt_exit(fill.client_order_id)
        book = self.book
        if book.has_fill(fill.fill_id):
            return None
        order, fill = book.apply_fill(fill)
        self._journal.record_fill(fill)
        if order is not None:
            self._record_order(order)
            if order.status is OrderStatus.FILLED and (order.take_profit or order.stop_loss):
                # The venue now holds the entry's exits; book them too.
                self.adopt_exit(f"{order.client_order_id}-tp")
        return order, fill

    def apply_update(self, update: OrderUpdate) -> Order | None:
        """A status change from the venue; the order if it changed, else None."""
        self.adopt_exit(update.client_order_id)
        order = self.book.orders.get(update.client_order_id)
        if order is None or order.status.is_final:
            return None
        if update.status in (OrderStatus.PENDING, OrderStatus.FILLED):
            return None  # accepted or resting: nothing changes; fills (not statuses) fill orders
        self.book.set_status(order, update.status, update.time, update.reason, update.message)
        self._record_order(order)
        return order

    def adopt_exit(self, client_order_id: str) -> None:
        """Book the take-profit/stop-loss the venue created for a filled entry, when it
        first reports on it; both sides derive the same order from the entry."""
        book = self.book
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
            self._record_order(child)  # sent: the venue made it

    # -- journal records ---------------------------------------------------------------

    def _record_order(self, order: Order, *, refused: bool = False) -> None:
        cid = order.client_order_id
        if order.status.is_final:
            self._cancelling.discard(cid)
        # A refused order never reached the venue (REJECTED, or FAILED where argo fails
        # it in the host); any other is sent once confirmed.
        sent = not refused and cid not in self._unsent and order.status is not OrderStatus.REJECTED
        self._journal.record_order(order, sent=sent, cancel=cid in self._cancelling)

    def _record_risk(self) -> None:
        # Every accepted order moves the risk state: it is serialized when it is written.
        self._journal.record_meta("risk", self._risk_text)

    def _risk_text(self) -> str:
        return rec.sorted_json(self.risk.state())
