"""Reading a journal back, every row checked, before anything may write to it.

`read_snapshot` is the only way the runner and `kubetrade report` read a
journal: it checks the file is a kubetrade journal of the expected session and
schema, runs SQLite's own structure check, then reads every row of every table
and checks its types and checksum (records.py), and that no row of the
append-only tables went missing (the row counts the writer keeps in the
`tally` entry). Any problem raises JournalError naming the file, the table, the
row and what is wrong. It reads over a read-only connection, so a journal it
refuses is left exactly as it was.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kubetrade.runner.domain import Fill, Mark, Order
from kubetrade.runner.session import records as rec
from kubetrade.runner.session import venue
from kubetrade.runner.session.records import RecordError, Table, Value
from kubetrade.runner.session.schema import APPLICATION_ID, SCHEMA_VERSION
from kubetrade.runner.session.venue import VenueState

T = TypeVar("T")

# Rows counted in the tally: the tables that only ever grow.
COUNTED = ("orders", "fills", "marks", "logs")
# Columns added after version 1, and what an older row holds in their place.
_ADDED = {"brackets": "'{}'", "parent_id": "''", "fee_base": "0.0", "cancel": "0"}
# Tables added after version 1, and since when.
_SINCE = {"equity": 2, "prices": 2, **{t.name: 6 for t in rec.VENUE_TABLES}}

MOVE_ASIDE = (
    "Restore it from a backup, or move the whole state directory aside to start the session afresh"
)


class JournalError(Exception):
    """The journal cannot be used; nothing in it was changed."""


@dataclass(slots=True)
class Snapshot:
    """What a journal holds, every row checked."""

    path: Path
    version: int
    meta: dict[str, str] = field(default_factory=dict)  # the session table
    orders: list[Order] = field(default_factory=list)
    order_seqs: dict[str, int] = field(default_factory=dict)
    unsent: set[str] = field(default_factory=set)  # intents that may not have left
    cancelling: set[str] = field(default_factory=set)  # cancels that may not have left
    fills: list[Fill] = field(default_factory=list)
    cursor: dict[str, int] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    prices: dict[str, tuple[int, float]] = field(default_factory=dict)
    equity: list[tuple[int, float, float]] = field(default_factory=list)  # if asked for
    last_equity_time: int | None = None
    counts: dict[str, int] = field(default_factory=dict)  # rows of the COUNTED tables
    last_seq: dict[str, int] = field(default_factory=dict)  # the COUNTED tables' last seq
    venue: VenueState = field(default_factory=VenueState)  # the paper venue's (venue.py)

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", "0"))

    @property
    def session(self) -> str:
        return self.meta.get("session", "")


def read_snapshot(
    db: sqlite3.Connection, path: Path, *, session: str | None, keep_equity: bool = False
) -> Snapshot:
    """Check and read the whole journal; JournalError on the first problem found."""
    try:
        # One read transaction: a runner committing meanwhile is seen before or after.
        db.execute("BEGIN")
        try:
            return _read(db, path, session=session, keep_equity=keep_equity)
        finally:
            if db.in_transaction:
                db.execute("COMMIT")  # a read: nothing to keep or undo
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"journal {path} is unreadable ({exc}); it was left untouched. " + MOVE_ASIDE
        ) from exc


def _read(
    db: sqlite3.Connection, path: Path, *, session: str | None, keep_equity: bool
) -> Snapshot:
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        raise JournalError(
            f"{path} is not a kubetrade journal (application id {app_id:#x}); it was left "
            "untouched. Point --state-dir at the session's own directory"
        )
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}, newer than this kubetrade "
            f"({SCHEMA_VERSION}); run a kubetrade release that knows it"
        )
    problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise JournalError(
            f"journal {path} is corrupt ({'; '.join(problems[:3])}); it was left untouched. "
            + MOVE_ASIDE
        )
    snap = Snapshot(path=path, version=version)
    rows = _Reader(db, path, version)
    snap.meta = {str(k): str(v) for k, v in rows(rec.SESSION, _pair)}
    if session is not None and snap.session != session:
        raise JournalError(
            f"journal {path} belongs to session {snap.session!r}, not {session!r}; it was left "
            "untouched. Give each session its own state directory"
        )
    if not snap.meta.get("epoch", "0").isdigit():
        raise _corrupt(path, rec.SESSION, "the row with key 'epoch'", "holds no epoch number")
    last = 0
    for order, seq, sent, cancel in rows(rec.ORDERS, rec.order_from):
        if seq <= last:
            raise _corrupt(path, rec.ORDERS, f"the row with seq {seq}", "is out of order")
        last = seq
        if order.client_order_id in snap.order_seqs:
            raise _corrupt(path, rec.ORDERS, f"the row with seq {seq}", "repeats an order id")
        snap.orders.append(order)
        snap.order_seqs[order.client_order_id] = seq
        if not order.status.is_final:
            if not sent:
                snap.unsent.add(order.client_order_id)
            if cancel:
                snap.cancelling.add(order.client_order_id)
    snap.last_seq["orders"] = last
    fill_ids: set[str] = set()
    for fill, seq in rows(rec.FILLS, _fill):
        if fill.fill_id in fill_ids:
            raise _corrupt(path, rec.FILLS, f"the row with seq {seq}", "repeats a fill id")
        fill_ids.add(fill.fill_id)
        snap.fills.append(fill)
        snap.last_seq["fills"] = seq
    snap.cursor = {str(s): int(t) for s, t in rows(rec.CURSOR, _pair)}
    snap.cache = {str(k): str(v) for k, v in rows(rec.CACHE, _pair)}
    for mark, seq in rows(rec.MARKS, _mark):
        snap.marks.append(mark)
        snap.last_seq["marks"] = seq
    logs = 0
    for seq in rows(rec.LOGS, _log):
        logs += 1
        snap.last_seq["logs"] = seq
    for time, equity, cash in rows(rec.EQUITY, _same):
        snap.last_equity_time = int(time)  # in time order: the primary key
        if keep_equity:
            snap.equity.append((int(time), float(equity), float(cash)))
    for symbol, time, close in rows(rec.PRICES, _same):
        snap.prices[str(symbol)] = (int(time), float(close))
    snap.venue = venue.decode(rows)
    snap.counts = {
        "orders": len(snap.orders), "fills": len(snap.fills), "marks": len(snap.marks),
        "logs": logs,
    }  # fmt: skip
    if version >= 5:
        _check_tally(snap)
    return snap


def _same(values: tuple[Value, ...]) -> tuple[Value, ...]:
    return values


def _pair(values: tuple[Value, ...]) -> tuple[Value, Value]:
    return values[0], values[1]


def _fill(values: tuple[Value, ...]) -> tuple[Fill, int]:
    return rec.fill_from(values), int(values[1])


def _mark(values: tuple[Value, ...]) -> tuple[Mark, int]:
    return rec.mark_from(values), int(values[0])


def _log(values: tuple[Value, ...]) -> int:
    json.loads(str(values[4]))  # the fields parse
    return int(values[0])


class _Reader:
    """Yields a table's rows, checked and parsed; a bad one raises JournalError."""

    def __init__(self, db: sqlite3.Connection, path: Path, version: int) -> None:
        self.db, self.path, self.version = db, path, version

    def __call__(self, table: Table, parse: Callable[[tuple[Value, ...]], T]) -> Iterator[T]:
        if self.version < _SINCE.get(table.name, 1):
            return
        present = {row[1] for row in self.db.execute(f"PRAGMA table_info({table.name})")}
        if not present:
            raise JournalError(
                f"journal {self.path} is corrupt: table {table.name} is missing; it was left "
                "untouched. " + MOVE_ASIDE
            )
        checked = self.version >= 5
        if checked:
            sql = table.select_sql
        else:  # an old journal: no checksums yet (migrate.py adds them), only types
            columns = [c if c in present else _ADDED.get(c, "NULL") for c in table.columns]
            sql = f"SELECT rowid, {', '.join(columns)}, NULL FROM {table.name} ORDER BY rowid"
        cursor = self.db.execute(sql)
        number = 0
        while True:
            number += 1
            try:
                row = cursor.fetchone()
            except sqlite3.OperationalError as exc:  # e.g. text that is not UTF-8
                raise _corrupt(
                    self.path, table, f"row {number}", f"is unreadable ({exc})"
                ) from None
            if row is None:
                return
            try:
                values = rec.unseal(table, row) if checked else _typed(table, row)
                parsed = parse(values)
            except (RecordError, ValueError, TypeError, KeyError) as exc:
                what = str(exc) if isinstance(exc, RecordError) else f"holds a bad value ({exc})"
                raise _corrupt(self.path, table, rec.name_of(table, row), what) from None
            yield parsed


def _typed(table: Table, row: tuple[object, ...]) -> tuple[Value, ...]:
    return tuple(rec.typed(k, v) for k, v in zip(table.kinds, row[1:-1], strict=True))


def _check_tally(snap: Snapshot) -> None:
    text = snap.meta.get("tally")
    if text is None:
        raise _corrupt(snap.path, rec.SESSION, "the row with key 'tally'", "is missing")
    try:
        tally = json.loads(text)
        expected = {name: int(tally[name]) for name in COUNTED}
    except (ValueError, TypeError, KeyError):
        raise _corrupt(
            snap.path, rec.SESSION, "the row with key 'tally'", "is unreadable"
        ) from None
    for name in COUNTED:
        if snap.counts[name] != expected[name]:
            raise JournalError(
                f"journal {snap.path} is corrupt: table {name} has {snap.counts[name]} rows "
                f"where {expected[name]} were written; it was left untouched. " + MOVE_ASIDE
            )


def _corrupt(path: Path, table: Table, row: str, what: str) -> JournalError:
    return JournalError(
        f"journal {path} is corrupt: table {table.name}, {row} {what}; it was left untouched. "
        + MOVE_ASIDE
    )
