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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
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
    values = dict(json.loads(text))
    values["side"] = Side(values["side"])
    return Fill(**values)


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

    @property
    def empty(self) -> bool:
        return not (self.account or self.known or self.bars)


class RowSource(Protocol):
    """Yields a table's rows, checked and each parsed (verify.py's reader names a row
    that fails its checksum or does not parse)."""

    def __call__(
        self, table: rec.Table, parse: Callable[[tuple[rec.Value, ...]], T]
    ) -> Iterator[T]: ...


def decode(rows: RowSource) -> VenueState:
    """The venue's state from its tables' rows."""
    state = VenueState()
    state.account = dict(rows(rec.VENUE_ACCOUNT, lambda v: (str(v[0]), float(v[1]))))
    state.positions = list(rows(rec.VENUE_POSITIONS, lambda v: position_from(str(v[1]))))
    state.resting = list(rows(rec.VENUE_RESTING, lambda v: (order_from(str(v[1])), float(v[2]))))
    state.known = dict(rows(rec.VENUE_KNOWN, _known))
    state.fills = list(rows(rec.VENUE_FILLS, lambda v: fill_from(str(v[2]))))
    state.bars = list(rows(rec.VENUE_BARS, lambda v: bar_from(str(v[1]))))
    return state


def _known(v: tuple[rec.Value, ...]) -> tuple[str, tuple[OrderStatus, str, str, int]]:
    return str(v[0]), (OrderStatus(str(v[1])), str(v[2]), str(v[3]), int(v[4]))


# -- what the venue recorded since the journal's last commit -------------------------------


@dataclass(slots=True)
class VenueRows:
    """The venue's changes since the last commit, coalesced by key (the journal's)."""

    account: dict[str, float] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)
    resting: dict[str, tuple[str, float] | None] = field(default_factory=dict)  # None: gone
    known: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)
    fills: dict[str, tuple[str, str]] = field(default_factory=dict)
    bars: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.account or self.positions or self.resting or self.known or self.fills
            or self.bars
        )  # fmt: skip

    def absorb(self, step: VenueRows) -> None:
        """Take a finished step's changes (later ones replace earlier ones of a key)."""
        self.account.update(step.account)
        self.positions.update(step.positions)
        for cid, resting in step.resting.items():
            if resting is None and self.resting.get(cid) is not None:
                del self.resting[cid]  # rested and gone again before any commit
                continue
            self.resting[cid] = resting
        self.known.update(step.known)
        self.fills.update(step.fills)
        self.bars.update(step.bars)

    def write(self, db: sqlite3.Connection) -> None:
        """Write them inside the journal's open transaction."""
        seal = rec.seal
        if self.account:
            db.executemany(_UPSERT[rec.VENUE_ACCOUNT], [
                seal(rec.VENUE_ACCOUNT, (k, rec.real(v))) for k, v in self.account.items()
            ])  # fmt: skip
        if self.positions:
            db.executemany(_UPSERT[rec.VENUE_POSITIONS], [
                seal(rec.VENUE_POSITIONS, item) for item in self.positions.items()
            ])  # fmt: skip
        if self.resting:
            gone = [(cid,) for cid, r in self.resting.items() if r is None]
            if gone:
                db.executemany("DELETE FROM venue_resting WHERE client_order_id=?", gone)
            db.executemany(_UPSERT[rec.VENUE_RESTING], [
                seal(rec.VENUE_RESTING, (cid, text, rec.real(reserved)))
                for cid, r in self.resting.items() if r is not None
                for text, reserved in [r]
            ])  # fmt: skip
        if self.known:
            db.executemany(_UPSERT[rec.VENUE_KNOWN], [
                seal(rec.VENUE_KNOWN, (cid, *row)) for cid, row in self.known.items()
            ])  # fmt: skip
        if self.fills:
            # A fill is written once; a restart never makes a venue fill an order again.
            db.executemany(_INSERT_NEW[rec.VENUE_FILLS], [
                seal(rec.VENUE_FILLS, (fid, *row)) for fid, row in self.fills.items()
            ])  # fmt: skip
        if self.bars:
            db.executemany(_UPSERT[rec.VENUE_BARS], [
                seal(rec.VENUE_BARS, item) for item in self.bars.items()
            ])  # fmt: skip

    def clear(self) -> None:
        for part in (self.account, self.positions, self.resting, self.known, self.fills,
                     self.bars):  # fmt: skip
            part.clear()


_UPSERT = {t: rec.upsert_sql(t) for t in rec.VENUE_TABLES}
_INSERT_NEW = {t: rec.insert_sql(t).replace("INSERT", "INSERT OR IGNORE", 1) for t in
               rec.VENUE_TABLES}  # fmt: skip


def state_rows(state: VenueState) -> VenueRows:
    """A whole venue state as rows to write (importing a venue kept in a file of its own)."""
    rows = VenueRows()
    rows.account = dict(state.account)
    rows.positions = {p.symbol: body(p) for p in state.positions}
    rows.resting = {o.client_order_id: (order_body(o), r) for o, r in state.resting}
    rows.known = {cid: (s.value, r, m, t) for cid, (s, r, m, t) in state.known.items()}
    rows.fills = {f.fill_id: (f.client_order_id, body(f)) for f in state.fills}
    rows.bars = {b.symbol: body(b) for b in state.bars}
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
        self._rows.account.update(values)

    def position(self, position: Position) -> None:
        self._rows.positions[position.symbol] = body(position)

    def rest(self, order: Order, reserved: float) -> None:
        self._rows.resting[order.client_order_id] = (order_body(order), reserved)

    def unrest(self, client_order_id: str) -> None:
        self._rows.resting[client_order_id] = None

    def known(self, client_order_id: str, status: OrderStatus, time: int, reason: str = "",
              message: str = "") -> None:  # fmt: skip
        self._rows.known[client_order_id] = (status.value, str(reason), str(message), int(time))

    def fill(self, fill: Fill) -> None:
        self._rows.fills[fill.fill_id] = (fill.client_order_id, body(fill))

    def bar(self, bar: Bar) -> None:
        self._rows.bars[bar.symbol] = body(bar)

    # -- reading back ----------------------------------------------------------------------

    def take_state(self) -> VenueState:
        """What the venue held when the journal was opened (handed over once)."""
        state, self._state = self._state, None
        assert state is not None, "the venue's state was taken already"
        return state
