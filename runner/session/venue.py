"""The paper venue's durable state, kept in the session's journal.

A real venue remembers every order it accepted, its fills and the account,
whatever happens to the client. The paper venue keeps the same promise in the
journal's `venue_*` tables: its state and the session's records are written in
one transaction, so they can never disagree after a crash. The venue lives in
the runner's process, so this is also what makes an order bar cost one fsync:
the order's intent, the venue's acceptance and its fill become durable
together, before anything outside hears of them (Session.commit_after_send). A
crash before that commit loses the bar whole, at the venue too, and the bar is
processed again with the same result.

The venue records each step here (`VenueStore`, the only writer of these
tables besides the journal's migration), held in memory like the session's
records and written by the journal's next commit (`VenueRows.write`). Every row
carries a checksum like every journal row; `decode` turns checked rows back
into the venue's state when the journal is opened, before anything is written.

Three tables, laid out so an order bar touches few pages (each page a commit
changes is written to the WAL and synced): `venue_state` holds the account,
each position and each symbol's last bar, one row per key (a WITHOUT ROWID
table: one B-tree, where a table with a text key has two); `venue_orders` one
row per order the venue has seen, its status and its fills, numbered in the
order the venue first saw them (so a new order is appended to the last page,
where a text key would land anywhere in an index); `venue_resting` the orders
waiting at the venue, in the order they arrived.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kubetrade.runner.domain import (
    Bar,
    Bracket,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from kubetrade.runner.session import records as rec

if TYPE_CHECKING:
    import sqlite3

T = TypeVar("T")


# -- the rows' bodies ---------------------------------------------------------------------

_FIELDS: dict[type, tuple[tuple[str, ...], Any]] = {
    kind: (names, attrgetter(*names))
    for kind in (Bar, Fill, Order, Position)
    for names in [tuple(f.name for f in fields(kind))]
}


def body(obj: Bar | Fill | Position) -> str:
    """A flat dataclass as a JSON object of its fields; the text `dataclasses.asdict`
    gives, without its deep copies (this runs on every venue step)."""
    names, get = _FIELDS[type(obj)]
    return json.dumps(dict(zip(names, get(obj), strict=True)))


def order_body(order: Order) -> str:
    names, get = _FIELDS[Order]
    values = dict(zip(names, get(order), strict=True))
    for name in ("take_profit", "stop_loss"):
        bracket = values[name]
        if bracket is not None:
            values[name] = {"side": bracket.side, "price": bracket.price}
    return json.dumps(values)


def order_from(text: str) -> Order:
    values = dict(json.loads(text))
    for name in ("take_profit", "stop_loss"):
        if values.get(name):
            values[name] = Bracket(side=Side(values[name]["side"]), price=values[name]["price"])
    values["side"] = Side(values["side"])
    values["order_type"] = OrderType(values["order_type"])
    values["status"] = OrderStatus(values["status"])
    return Order(**values)


def fill_from(text: str) -> Fill:
    return _fill_of(json.loads(text))


def position_from(text: str) -> Position:
    return Position(**json.loads(text))


def bar_from(text: str) -> Bar:
    return Bar(**json.loads(text))


# -- the venue's state, as read back ---------------------------------------------------------


@dataclass(slots=True)
class VenueState:
    """What the venue held when the journal was opened, every row checked."""

    account: dict[str, float] = field(default_factory=dict)  # empty: a new venue
    positions: list[Position] = field(default_factory=list)
    resting: list[tuple[Order, float]] = field(default_factory=list)  # in the order rested
    known: dict[str, tuple[OrderStatus, str, str, int]] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    order_seqs: dict[str, int] = field(default_factory=dict)  # venue_orders' numbering


class RowSource(Protocol):
    """Yields a table's rows, checked and each parsed (verify.py's reader names a row
    that fails its checksum or does not parse)."""

    def __call__(
        self, table: rec.Table, parse: Callable[[tuple[rec.Value, ...]], T]
    ) -> Iterator[T]: ...


# venue_state's keys: the account, and per symbol its position and last bar.
ACCOUNT = "account"
_POSITION = "position/"
_BAR = "bar/"


def decode(rows: RowSource) -> VenueState:
    """The venue's state from its tables' rows."""
    state = VenueState()
    for key, text in rows(rec.VENUE_STATE, lambda v: (str(v[0]), str(v[1]))):
        if key == ACCOUNT:
            state.account = {str(k): float(v) for k, v in json.loads(text).items()}
        elif key.startswith(_POSITION):
            state.positions.append(position_from(text))
        elif key.startswith(_BAR):
            state.bars.append(bar_from(text))
        else:
            raise ValueError(f"unknown key {key[:40]!r}")
    for seq, cid, known, fills in rows(rec.VENUE_ORDERS, _order_row):
        if cid in state.order_seqs:
            raise ValueError(f"order {cid[:40]!r} is recorded twice")
        state.order_seqs[cid] = seq
        state.known[cid] = known
        state.fills.extend(fills)
    state.resting = list(rows(rec.VENUE_RESTING, lambda v: (order_from(str(v[1])), float(v[2]))))
    return state


def _order_row(
    v: tuple[rec.Value, ...],
) -> tuple[int, str, tuple[OrderStatus, str, str, int], list[Fill]]:
    fills = [_fill_of(body) for body in json.loads(str(v[6]))]
    known = (OrderStatus(str(v[2])), str(v[3]), str(v[4]), int(v[5]))
    return int(v[0]), str(v[1]), known, fills


def _fill_of(values: dict[str, Any]) -> Fill:
    values = dict(values)
    values["side"] = Side(values["side"])
    return Fill(**values)


# -- what the venue recorded since the journal's last commit -------------------------------


@dataclass(slots=True)
class VenueRows:
    """The venue's changes since the last commit, coalesced by key (the journal's)."""

    state: dict[str, str] = field(default_factory=dict)  # venue_state: key -> body
    # venue_orders, by client order id: seq, status, reason, message, time and the order's
    # fills (the venue's own list: its JSON is made when written)
    orders: dict[str, tuple[int, str, str, str, int, Sequence[Fill]]] = field(default_factory=dict)
    resting: dict[str, tuple[str, float] | None] = field(default_factory=dict)  # None: gone

    def __bool__(self) -> bool:
        return bool(self.state or self.orders or self.resting)

    def absorb(self, step: VenueRows) -> None:
        """Take a finished step's changes (later ones replace earlier ones of a key)."""
        self.state.update(step.state)
        self.orders.update(step.orders)
        for cid, resting in step.resting.items():
            if resting is None and self.resting.get(cid) is not None:
                del self.resting[cid]  # rested and gone again before any commit
                continue
            self.resting[cid] = resting

    def write(self, db: sqlite3.Connection) -> None:
        """Write them inside the journal's open transaction."""
        seal = rec.seal
        if self.state:
            db.executemany(_UPSERT_STATE, [
                seal(rec.VENUE_STATE, item) for item in self.state.items()
            ])  # fmt: skip
        if self.orders:
            db.executemany(_UPSERT_ORDERS, [
                seal(rec.VENUE_ORDERS, (seq, cid, status, reason, message, time,
                                        _fills_text(fills)))
                for cid, (seq, status, reason, message, time, fills) in self.orders.items()
            ])  # fmt: skip
        if self.resting:
            gone = [(cid,) for cid, r in self.resting.items() if r is None]
            if gone:
                db.executemany("DELETE FROM venue_resting WHERE client_order_id=?", gone)
            db.executemany(_UPSERT_RESTING, [
                seal(rec.VENUE_RESTING, (cid, text, rec.real(reserved)))
                for cid, r in self.resting.items() if r is not None
                for text, reserved in [r]
            ])  # fmt: skip

    def clear(self) -> None:
        self.state.clear()
        self.orders.clear()
        self.resting.clear()


_UPSERT_STATE = rec.upsert_sql(rec.VENUE_STATE)
_UPSERT_ORDERS = rec.upsert_sql(rec.VENUE_ORDERS)
_UPSERT_RESTING = rec.upsert_sql(rec.VENUE_RESTING)


def _fills_text(fills: Sequence[Fill]) -> str:
    if not fills:
        return "[]"
    names, get = _FIELDS[Fill]
    return json.dumps([dict(zip(names, get(f), strict=True)) for f in fills])


def _account_text(values: dict[str, float]) -> str:
    return rec.sorted_json(values)


def state_rows(state: VenueState) -> VenueRows:
    """A whole venue state as rows to write (importing a venue kept in a file of its own)."""
    rows = VenueRows()
    if state.account:
        rows.state[ACCOUNT] = _account_text(state.account)
    rows.state.update({_POSITION + p.symbol: body(p) for p in state.positions})
    rows.state.update({_BAR + b.symbol: body(b) for b in state.bars})
    fills: dict[str, list[Fill]] = {}
    for fill in state.fills:
        fills.setdefault(fill.client_order_id, []).append(fill)
    rows.orders = {
        cid: (state.order_seqs[cid], s.value, r, m, t, fills.get(cid, []))
        for cid, (s, r, m, t) in state.known.items()
    }
    rows.resting = {o.client_order_id: (order_body(o), r) for o, r in state.resting}
    return rows


# -- the venue's side ---------------------------------------------------------------------


class Committer(Protocol):
    """The journal as the venue sees it: where finished steps go, and the fence."""

    venue_rows: VenueRows

    def venue_step_done(self) -> None: ...

    def check_epoch(self) -> None: ...


class VenueStore:
    """The paper venue's handle on its tables: it records each step's changes between
    `begin` and `commit`; the journal writes them with its next commit."""

    def __init__(self, journal: Committer, state: VenueState) -> None:
        self._journal = journal
        self._state: VenueState | None = state
        self._step: VenueRows | None = None
        self._seqs = dict(state.order_seqs)  # venue_orders' row of each order

    # -- a step -----------------------------------------------------------------------

    def begin(self) -> None:
        """Open a step, refusing it (Fenced) if a newer runner has taken the journal, so
        a stale runner's venue changes nothing, orders included."""
        self._journal.check_epoch()
        self._step = VenueRows()

    def commit(self) -> None:
        """The step is whole: it goes into the journal's next commit."""
        assert self._step is not None, "commit without begin"
        self._journal.venue_rows.absorb(self._step)
        self._journal.venue_step_done()
        self._step = None

    def rollback(self) -> None:
        self._step = None

    @property
    def _rows(self) -> VenueRows:
        assert self._step is not None, "a venue write outside a step"
        return self._step

    def account(self, **values: float) -> None:
        self._rows.state[ACCOUNT] = _account_text(values)

    def position(self, position: Position) -> None:
        self._rows.state[_POSITION + position.symbol] = body(position)

    def bar(self, bar: Bar) -> None:
        self._rows.state[_BAR + bar.symbol] = body(bar)

    def order(self, client_order_id: str, status: OrderStatus, time: int, reason: str,
              message: str, fills: Sequence[Fill]) -> None:  # fmt: skip
        """An order's status at the venue and its fills so far (the venue's own list)."""
        seq = self._seqs.get(client_order_id)
        if seq is None:
            seq = self._seqs[client_order_id] = len(self._seqs) + 1
        self._rows.orders[client_order_id] = (
            seq, status.value, str(reason), str(message), int(time), fills
        )  # fmt: skip

    def rest(self, order: Order, reserved: float) -> None:
        self._rows.resting[order.client_order_id] = (order_body(order), reserved)

    def unrest(self, client_order_id: str) -> None:
        self._rows.resting[client_order_id] = None

    # -- reading back ----------------------------------------------------------------------

    def take_state(self) -> VenueState:
        """What the venue held when the journal was opened (handed over once)."""
        state, self._state = self._state, None
        assert state is not None, "the venue's state was taken already"
        return state
