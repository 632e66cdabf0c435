"""The session journal: durable state in SQLite, so a crash loses nothing.

Everything the engine must not forget goes through here before it is acted
on: order intents (before they leave the process), order status changes,
fills, the processed-bar cursor per symbol, the strategy's cache, marks and
strategy logs. On start the engine reads it back and resumes.

Durability: WAL mode with `synchronous=FULL`, so a committed transaction
survives kill -9 and power loss alike. One transaction per step of the bar
loop keeps the cost to a few fsyncs per bar.

Integrity: the file carries an application id and a schema version. A file
that is not a kubetrade journal, belongs to another session, is newer than
this code, or fails SQLite's integrity check is never modified or deleted:
opening it raises JournalError naming the file and what to do.

Fencing: each `open` starts a new epoch, and every transaction first checks
that the journal's epoch is still this one's; if a newer runner has opened the
journal since, the transaction raises Fenced and writes nothing (fencing.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubetrade.runner.domain import Bracket, Fill, Mark, Order, OrderStatus, OrderType, Side
from kubetrade.runner.fencing import Fenced

APPLICATION_ID = 0x6B74726A  # "ktrj": marks the file as a kubetrade journal
SCHEMA_VERSION = 4

# Each entry migrates the schema from version i to i + 1.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE session (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL NOT NULL,
        time INTEGER NOT NULL,
        strategy_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        strategy_order_id TEXT NOT NULL,
        position_type TEXT NOT NULL,
        status TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        filled_quantity REAL NOT NULL,
        average_price REAL NOT NULL,
        fee REAL NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE TABLE fills (
        fill_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,
        time INTEGER NOT NULL,
        realized_pnl REAL NOT NULL
    );
    CREATE TABLE cursor (
        symbol TEXT PRIMARY KEY,
        time INTEGER NOT NULL
    );
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE marks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        symbol TEXT NOT NULL,
        time INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL
    );
    """,
    # v2: what reports need: the equity after each bar and each symbol's last close.
    """
    CREATE TABLE equity (
        time INTEGER PRIMARY KEY,
        equity REAL NOT NULL,
        cash REAL NOT NULL
    );
    CREATE TABLE prices (
        symbol TEXT PRIMARY KEY,
        time INTEGER NOT NULL,
        close REAL NOT NULL
    );
    """,
    # v3: take-profits and stop-losses, and the entry an exit belongs to.
    """
    ALTER TABLE orders ADD COLUMN brackets TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE orders ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
    """,
    # v4: the part of a fill's fee the venue took in the traded asset (Fill.fee_base).
    """
    ALTER TABLE fills ADD COLUMN fee_base REAL NOT NULL DEFAULT 0;
    """,
)


class JournalError(Exception):
    """The journal cannot be used; nothing in it was changed."""


@dataclass(slots=True)
class Snapshot:
    """What a journal holds, read back on start."""

    epoch: int
    orders: list[Order] = field(default_factory=list)
    unsent: set[str] = field(default_factory=set)  # intents that may not have left
    fills: list[Fill] = field(default_factory=list)
    cursor: dict[str, int] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)


_EPOCH_SQL = "SELECT value FROM session WHERE key='epoch'"  # the primary key: one index probe


class Journal:
    def __init__(
        self, connection: sqlite3.Connection, path: Path, epoch: int, *, read_only: bool = False
    ) -> None:
        self._db = connection
        self.path = path
        self.epoch = epoch
        self._epoch_text = str(epoch)  # as stored: the check compares without converting
        self.read_only = read_only
        self.fenced = False  # a newer epoch has taken the journal: write nothing more
        self._order_seq = self._next("orders")
        self._fill_seq = self._next("fills")

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, session: str) -> Journal:
        """Open or create the journal of `session`; start a new epoch."""
        path = Path(path)
        fresh = not path.exists()
        if not fresh and path.stat().st_size == 0:
            fresh = True  # created but never written: nothing to protect
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        try:
            # Another process may have created the file since `fresh` was decided (two
            # pods on a network volume, where the state directory's flock may not reach).
            if not (fresh and cls._create(db, session)):
                cls._check(db, path, session)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            with _transaction(db):
                epoch = int(_get(db, "epoch") or "0") + 1
                _put(db, "epoch", str(epoch))
        except JournalError:
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            raise JournalError(
                f"journal {path} is unreadable ({exc}); it was left untouched. Move it aside "
                "to start the session afresh, or restore it from a backup"
            ) from exc
        return cls(db, path, epoch)

    @classmethod
    def open_existing(cls, path: Path) -> Journal:
        """Open a journal to read it (reports): never creates, never starts an epoch, never
        writes, so it reads a journal while its runner holds the state directory."""
        path = Path(path)
        if not path.is_file():
            raise JournalError(f"no journal at {path}; give the session's --state-dir")
        try:
            db = sqlite3.connect(
                path.resolve().as_uri() + "?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        try:
            session = _get(db, "session") or ""
            cls._check(db, path, session, migrate=False)
            epoch = int(_get(db, "epoch") or "0")
        except JournalError:
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            raise JournalError(f"journal {path} is unreadable ({exc})") from exc
        return cls(db, path, epoch, read_only=True)

    @staticmethod
    def _create(db: sqlite3.Connection, session: str) -> bool:
        """Lay out a new journal; False if another process already has (then check it)."""
        with _transaction(db):
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return False
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for script in _MIGRATIONS:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={len(_MIGRATIONS)}")
            _put(db, "session", session)
        return True

    @staticmethod
    def _check(db: sqlite3.Connection, path: Path, session: str, *, migrate: bool = True) -> None:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise JournalError(
                f"{path} is not a kubetrade journal (application id {app_id:#x}); it was left "
                "untouched. Point --state-dir at the session's own directory"
            )
        problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise JournalError(
                f"journal {path} is corrupt ({'; '.join(problems[:3])}); it was left untouched. "
                "Restore it from a backup, or move it aside to start the session afresh"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path} has schema version {version}, newer than this kubetrade "
                f"({SCHEMA_VERSION}); run a kubetrade release that knows it"
            )
        owner = _get(db, "session")
        if owner != session:
            raise JournalError(
                f"journal {path} belongs to session {owner!r}, not {session!r}; it was left "
                "untouched. Give each session its own state directory"
            )
        if version == SCHEMA_VERSION:
            return  # nothing to migrate: no write transaction
        if not migrate:
            raise JournalError(
                f"journal {path} has schema version {version}, older than this kubetrade's "
                f"({SCHEMA_VERSION}); run the session once with this kubetrade to upgrade it"
            )
        with _transaction(db):
            for script in _MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        # A clean close checkpoints the WAL into the main file; a reader or a fenced
        # runner leaves that to the journal's owner (a checkpoint would wait for it).
        if not (self.read_only or self.fenced):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    # -- fencing ----------------------------------------------------------------

    def fence(self) -> None:
        """Raise Fenced unless this journal's newest epoch is still ours."""
        row = self._db.execute(_EPOCH_SQL).fetchone()
        if row is None or row[0] != self._epoch_text:
            self.fenced = True
            newest = int(row[0]) if row is not None else 0
            raise Fenced("journal", self.path, ours=self.epoch, newest=newest)

    # -- writing ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes; they become durable together when the block ends. Each first
        checks the epoch inside the transaction, whose write lock keeps it ours to the end:
        the orders it journals leave only after it commits, so a stale runner sends none."""
        with _transaction(self._db):
            self.fence()
            yield

    def order_intent(self, order: Order) -> None:
        """Record an order before it may leave the process."""
        self._order_seq += 1
        brackets = {
            name: {"side": b.side.value, "price": b.price}
            for name, b in (("take_profit", order.take_profit), ("stop_loss", order.stop_loss))
            if b is not None
        }
        self._db.execute(
            "INSERT INTO orders (client_order_id, seq, symbol, side, order_type, quantity, "
            "price, time, strategy_name, reason, message, strategy_order_id, position_type, "
            "status, sent, filled_quantity, average_price, fee, updated, brackets, parent_id) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,?,?,?,?,?)",
            (
                order.client_order_id,
                self._order_seq,
                order.symbol,
                order.side.value,
                order.order_type.value,
                order.quantity,
                order.price,
                order.time,
                order.strategy_name,
                order.reason,
                order.message,
                order.strategy_order_id,
                order.position_type,
                order.status.value,
                order.filled_quantity,
                order.average_price,
                order.fee,
                order.updated,
                json.dumps(brackets, sort_keys=True),
                order.parent_id,
            ),
        )

    def order_sent(self, client_order_id: str) -> None:
        self._db.execute("UPDATE orders SET sent=1 WHERE client_order_id=?", (client_order_id,))

    def order_update(self, order: Order) -> None:
        self._db.execute(
            "UPDATE orders SET status=?, reason=?, message=?, filled_quantity=?, "
            "average_price=?, fee=?, updated=? WHERE client_order_id=?",
            (
                order.status.value,
                order.reason,
                order.message,
                order.filled_quantity,
                order.average_price,
                order.fee,
                order.updated,
                order.client_order_id,
            ),
        )

    def fill(self, fill: Fill) -> None:
        self._fill_seq += 1
        self._db.execute(
            "INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                fill.fill_id,
                self._fill_seq,
                fill.client_order_id,
                fill.symbol,
                fill.side.value,
                fill.quantity,
                fill.price,
                fill.fee,
                fill.time,
                fill.realized_pnl,
                fill.fee_base,  # the v4 column, last
            ),
        )

    def cursor(self, symbol: str, time: int) -> None:
        self._db.execute(
            "INSERT INTO cursor VALUES (?, ?) ON CONFLICT(symbol) DO UPDATE SET time=excluded.time",
            (symbol, time),
        )

    def equity(self, time: int, equity: float, cash: float) -> None:
        self._db.execute(
            "INSERT INTO equity VALUES (?, ?, ?) ON CONFLICT(time) DO UPDATE "
            "SET equity=excluded.equity, cash=excluded.cash",
            (time, equity, cash),
        )

    def price(self, symbol: str, time: int, close: float) -> None:
        self._db.execute(
            "INSERT INTO prices VALUES (?, ?, ?) ON CONFLICT(symbol) DO UPDATE "
            "SET time=excluded.time, close=excluded.close",
            (symbol, time, close),
        )

    def cache(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO cache VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def mark(self, mark: Mark) -> None:
        body = {
            "color": mark.color,
            "shape": mark.shape,
            "title": mark.title,
            "message": mark.message,
            "category": mark.category,
            "signal_type": mark.signal_type,
            "level": mark.level,
        }
        self._db.execute(
            "INSERT INTO marks (symbol, time, body) VALUES (?, ?, ?)",
            (mark.symbol, mark.time, json.dumps(body, sort_keys=True)),
        )

    def log(self, time: int, level: str, message: str, fields: dict[str, str]) -> None:
        self._db.execute(
            "INSERT INTO logs (time, level, message, fields) VALUES (?, ?, ?, ?)",
            (time, level, message, json.dumps(fields, sort_keys=True)),
        )

    # -- reading ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        db = self._db
        snap = Snapshot(epoch=self.epoch)
        columns = (
            "client_order_id, seq, symbol, side, order_type, quantity, price, time, "
            "strategy_name, reason, message, strategy_order_id, position_type, status, sent, "
            "filled_quantity, average_price, fee, updated, brackets, parent_id"
        )
        for row in db.execute(f"SELECT {columns} FROM orders ORDER BY seq"):
            brackets = {
                name: Bracket(side=Side(b["side"]), price=b["price"])
                for name, b in json.loads(row[19]).items()
            }
            order = Order(
                client_order_id=row[0],
                symbol=row[2],
                side=Side(row[3]),
                order_type=OrderType(row[4]),
                quantity=row[5],
                price=row[6],
                time=row[7],
                strategy_name=row[8],
                reason=row[9],
                message=row[10],
                strategy_order_id=row[11],
                position_type=row[12],
                status=OrderStatus(row[13]),
                filled_quantity=row[15],
                average_price=row[16],
                fee=row[17],
                updated=row[18],
                take_profit=brackets.get("take_profit"),
                stop_loss=brackets.get("stop_loss"),
                parent_id=row[20],
            )
            snap.orders.append(order)
            if not row[14] and not order.status.is_final:
                snap.unsent.add(order.client_order_id)
        for row in db.execute("SELECT * FROM fills ORDER BY seq"):
            snap.fills.append(
                Fill(
                    fill_id=row[0],
                    client_order_id=row[2],
                    symbol=row[3],
                    side=Side(row[4]),
                    quantity=row[5],
                    price=row[6],
                    fee=row[7],
                    time=row[8],
                    realized_pnl=row[9],
                    fee_base=row[10],
                )
            )
        snap.cursor = dict(db.execute("SELECT symbol, time FROM cursor").fetchall())
        snap.cache = dict(db.execute("SELECT key, value FROM cache").fetchall())
        for symbol, time, body in db.execute("SELECT symbol, time, body FROM marks ORDER BY seq"):
            snap.marks.append(Mark(symbol=symbol, time=time, **json.loads(body)))
        return snap

    def equity_curve(self) -> list[tuple[int, float]]:
        return [(int(t), float(e)) for t, e in self._db.execute(
            "SELECT time, equity FROM equity ORDER BY time")]  # fmt: skip

    def prices(self) -> dict[str, float]:
        return {s: float(c) for s, c in self._db.execute("SELECT symbol, close FROM prices")}

    def session_name(self) -> str:
        return _get(self._db, "session") or ""

    def initial_cash(self) -> float | None:
        """The cash the session started with, recorded once at its first start."""
        value = _get(self._db, "initial_cash")
        return None if value is None else float(value)

    def set_initial_cash(self, cash: float) -> None:
        with self.transaction():
            _put(self._db, "initial_cash", repr(cash))

    def logs(self) -> list[tuple[int, str, str, dict[str, str]]]:
        rows = self._db.execute("SELECT time, level, message, fields FROM logs ORDER BY seq")
        return [(t, lvl, msg, json.loads(f)) for t, lvl, msg, f in rows]

    def _next(self, table: str) -> int:
        row = self._db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()
        return int(row[0])


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _get(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM session WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _put(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO session VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, value),
    )
