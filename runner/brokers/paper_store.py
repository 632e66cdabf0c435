"""The paper venue's own durable state, so a paper session survives a crash like a live one.

A real venue remembers every order it accepted, its fills and the account,
whatever happens to the client. The paper broker keeps the same promise with
a small SQLite file beside the session journal: each state change is written
(synchronous=FULL) before the broker reports it to the engine. (Committing on
a thread of its own, so the fsync would overlap the runner's work, measured
slower: the thread waits for the interpreter lock the bar loop holds.)

Fencing: a store opened for a runner's epoch records that epoch as the venue's
(the journal has already made it the newest), and each step's transaction then
checks it is still the venue's. A runner that a newer one replaced is refused
(Fenced) before it changes anything, orders included.

`check` reads a store back without writing to it: the runner calls it before
anything in the state directory is written, so an unreadable venue is refused
and left as it was. A full or read-only disk is a StorageError (one line).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any

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
from kubetrade.runner.session.fencing import Fenced
from kubetrade.runner.session.storage import storage_error

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resting (client_order_id TEXT PRIMARY KEY, body TEXT NOT NULL,
    reserved REAL NOT NULL);
CREATE TABLE IF NOT EXISTS known (client_order_id TEXT PRIMARY KEY, status TEXT NOT NULL,
    reason TEXT NOT NULL, message TEXT NOT NULL, time INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fills (fill_id TEXT PRIMARY KEY, client_order_id TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS last_bar (symbol TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fence (key TEXT PRIMARY KEY, epoch INTEGER NOT NULL);
"""
_EPOCH_SQL = "SELECT epoch FROM fence WHERE key='epoch'"


def _body(obj: Any) -> str:
    """A flat dataclass (Bar, Fill, Position) as a JSON object of its fields; the same
    text `dataclasses.asdict` gives, without its deep copies (this runs on every step)."""
    names, get = _FIELDS[type(obj)]
    return json.dumps(dict(zip(names, get(obj), strict=True)))


def _order_body(order: Order) -> str:
    names, get = _FIELDS[Order]
    body = dict(zip(names, get(order), strict=True))
    for name in ("take_profit", "stop_loss"):
        bracket = body[name]
        if bracket is not None:
            body[name] = {"side": bracket.side, "price": bracket.price}
    return json.dumps(body)


_FIELDS: dict[type, tuple[tuple[str, ...], Any]] = {
    kind: (names, attrgetter(*names))
    for kind in (Bar, Fill, Order, Position)
    for names in [tuple(f.name for f in fields(kind))]
}


def _order_from(body: dict[str, Any]) -> Order:
    body = dict(body)
    for name in ("take_profit", "stop_loss"):
        if body.get(name):
            body[name] = Bracket(side=Side(body[name]["side"]), price=body[name]["price"])
    body["side"] = Side(body["side"])
    body["order_type"] = OrderType(body["order_type"])
    body["status"] = OrderStatus(body["status"])
    return Order(**body)


def _fill_from(body: dict[str, Any]) -> Fill:
    body = dict(body)
    body["side"] = Side(body["side"])
    return Fill(**body)


class PaperStore:
    def __init__(self, path: Path, *, epoch: int | None = None) -> None:
        """`epoch`: the runner's epoch, its fencing token here (None: no fencing)."""
        self.path = path
        self.epoch = epoch
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            if epoch is not None:
                # The journal made this epoch the newest; the venue follows it from now on.
                # Claimed before the broker reads the venue back, so a stale runner's later
                # steps are refused and its earlier ones are in what is read.
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO fence VALUES ('epoch', ?) "
                    "ON CONFLICT(key) DO UPDATE SET epoch=excluded.epoch",
                    (epoch,),
                )
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            problem = storage_error(exc, path)
            if problem is None:
                raise
            raise problem from exc

    @classmethod
    def check(cls, path: Path) -> None:
        """Read a venue's whole file over a read-only connection; ValueError naming the
        problem if any of it is unreadable (the file is left as it was)."""
        if not path.is_file() or path.stat().st_size == 0:
            return  # a new venue
        wal = path.with_name(path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"  # immutable: no files made
        store = cls.__new__(cls)
        store.path, store.epoch = path, None
        try:
            store._db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
            try:
                problems = [row[0] for row in store._db.execute("PRAGMA integrity_check")]
                if problems != ["ok"]:
                    raise ValueError("; ".join(problems[:3]))
                store.load_account()
                store.load_positions()
                store.load_resting()
                store.load_known()
                store.load_fills()
                store.load_bars()
            finally:
                store._db.close()
        except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"paper venue {path} is unreadable ({exc})") from exc

    def close(self) -> None:
        self._db.close()

    def begin(self) -> None:
        """Open a step's transaction, refusing it (Fenced) if a newer epoch has the venue."""
        self._db.execute("BEGIN IMMEDIATE")
        if self.epoch is not None:
            row = self._db.execute(_EPOCH_SQL).fetchone()
            if row is None or row[0] != self.epoch:
                self._db.execute("ROLLBACK")
                newest = int(row[0]) if row is not None else 0
                raise Fenced("paper venue", self.path, ours=self.epoch, newest=newest)

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:  # SQLite may have rolled back already (a full disk)
            self._db.execute("ROLLBACK")

    # -- writes (inside begin/commit) --------------------------------------------

    def account(self, **values: float) -> None:
        self._db.executemany(
            "INSERT INTO account VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            values.items(),
        )

    def position(self, position: Position) -> None:
        self._db.execute(
            "INSERT INTO positions VALUES (?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET body=excluded.body",
            (position.symbol, _body(position)),
        )

    def rest(self, order: Order, reserved: float) -> None:
        self._db.execute(
            "INSERT INTO resting VALUES (?, ?, ?)",
            (order.client_order_id, _order_body(order), reserved),
        )

    def unrest(self, client_order_id: str) -> None:
        self._db.execute("DELETE FROM resting WHERE client_order_id=?", (client_order_id,))

    def known(self, client_order_id: str, status: OrderStatus, time: int, reason: str = "",
              message: str = "") -> None:  # fmt: skip
        self._db.execute(
            "INSERT INTO known VALUES (?, ?, ?, ?, ?) ON CONFLICT(client_order_id) DO UPDATE "
            "SET status=excluded.status, reason=excluded.reason, message=excluded.message, "
            "time=excluded.time",
            (client_order_id, status.value, reason, message, time),
        )

    def fill(self, fill: Fill) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO fills VALUES (?, ?, ?)",
            (fill.fill_id, fill.client_order_id, _body(fill)),
        )

    def bar(self, bar: Bar) -> None:
        self._db.execute(
            "INSERT INTO last_bar VALUES (?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET body=excluded.body",
            (bar.symbol, _body(bar)),
        )

    # -- reads -------------------------------------------------------------------

    def load_account(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._db.execute("SELECT key, value FROM account")}

    def load_positions(self) -> list[Position]:
        return [
            Position(**json.loads(b)) for (b,) in self._db.execute("SELECT body FROM positions")
        ]

    def load_resting(self) -> list[tuple[Order, float]]:
        rows = self._db.execute("SELECT body, reserved FROM resting ORDER BY rowid")
        return [(_order_from(json.loads(body)), reserved) for body, reserved in rows]

    def load_known(self) -> dict[str, tuple[OrderStatus, str, str, int]]:
        rows = self._db.execute("SELECT client_order_id, status, reason, message, time FROM known")
        return {cid: (OrderStatus(s), r, m, t) for cid, s, r, m, t in rows}

    def load_fills(self) -> list[Fill]:
        return [_fill_from(json.loads(b)) for (b,) in self._db.execute(
            "SELECT body FROM fills ORDER BY rowid")]  # fmt: skip

    def load_bars(self) -> list[Bar]:
        return [Bar(**json.loads(b)) for (b,) in self._db.execute("SELECT body FROM last_bar")]
