"""The session journal: durable state in SQLite, so a crash loses nothing.

Only the Session (core.py) writes here. It records each change as it happens
(`record_*`, held in memory) and makes what it recorded durable with
`commit_records`: one transaction, one fsync, for any number of bars. Records
of one key coalesce (an order's latest state, a symbol's cursor), so a group of
bars costs a few rows, not a few rows per bar.

Durability: WAL mode with `synchronous=FULL`, so a committed transaction
survives kill -9 and power loss alike. One kind of commit is written without
waiting for the disk (`commit_records(sync=False)`): an order bar's on the paper
venue, whose state is in this file too (Session.commit_after_send). It survives
kill -9 at once and a power failure from the group's next commit on.

Without a state directory the journal lives in memory: the session records
into it through the same calls, and its commits drop what they would write
(there is no disk to make it durable on, and nobody reads it back), so a bar
costs its records, not rows built, checksummed and inserted.

Integrity: every row carries a checksum (records.py). Opening reads the whole
journal back over a read-only connection and checks every row (verify.py)
before the first write, so a journal that fails any check is refused
(JournalError) and left byte for byte as it was. An empty journal beside other
state of the session is refused too: starting it afresh would reuse epoch 1.

Fencing: each `open` starts a new epoch, and every commit first checks, inside
its transaction, that the journal's epoch is still this one's; if a newer
runner has opened the journal since, the commit raises Fenced and writes
nothing (fencing.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubetrade.runner.domain import Fill, Mark, Order
from kubetrade.runner.session import records as rec
from kubetrade.runner.session.fencing import Fenced
from kubetrade.runner.session.legacy_venue import (
    LEGACY_VENUE_FILE,
    LegacyVenueError,
    read_legacy_venue,
    set_aside,
)
from kubetrade.runner.session.migrate import upgrade
from kubetrade.runner.session.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    statements,
)
from kubetrade.runner.session.storage import storage_error
from kubetrade.runner.session.venue import VenueRows, VenueState, VenueStore
from kubetrade.runner.session.verify import COUNTED, JournalError, Snapshot, read_snapshot
from kubetrade.runner.telemetry.histogram import LATENCY_BUCKETS, FastHistogram

__all__ = ["JOURNAL_FILE", "Journal", "JournalError", "JournalReader", "Snapshot", "open_journal"]

_EPOCH_SQL = "SELECT value FROM session WHERE key='epoch'"  # the primary key: one index probe
_UPSERT = {t.name: rec.upsert_sql(t) for t in rec.TABLES}
_INSERT = {t.name: rec.insert_sql(t) for t in rec.TABLES}


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write. Without a WAL file (the journal was closed
    cleanly) the file is opened immutable, so not even an empty WAL is created."""
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None,
        check_same_thread=False,
    )  # fmt: skip


class JournalReader:
    """A journal opened to read it (reports): checked in full, never written, so it
    reads a journal while its runner holds the state directory."""

    def __init__(self, db: sqlite3.Connection, path: Path, snapshot: Snapshot) -> None:
        self._db = db
        self.path = path
        self._snapshot = snapshot

    @classmethod
    def open(cls, path: Path) -> JournalReader:
        path = Path(path)
        if not path.is_file():
            raise JournalError(f"no journal at {path}; give the session's --state-dir")
        if path.stat().st_size == 0:
            raise JournalError(f"journal {path} is empty (0 bytes): the session recorded nothing")
        try:
            db = _connect_read_only(path)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        try:
            snapshot = read_snapshot(db, path, session=None, keep_equity=True)
        except JournalError:
            db.close()
            raise
        if snapshot.version < SCHEMA_VERSION:
            db.close()
            raise JournalError(
                f"journal {path} has schema version {snapshot.version}, older than this "
                f"kubetrade's ({SCHEMA_VERSION}); run the session once with this kubetrade to "
                "upgrade it"
            )
        return cls(db, path, snapshot)

    @property
    def epoch(self) -> int:
        return self._snapshot.epoch

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def session_name(self) -> str:
        return self._snapshot.session

    def meta(self, key: str) -> str | None:
        """A session-wide value: session, epoch, initial_cash, risk."""
        return self._snapshot.meta.get(key)

    def initial_cash(self) -> float | None:
        """The cash the session started with, recorded once at its first start."""
        value = self.meta("initial_cash")
        return None if value is None else float(value)

    def equity_curve(self) -> list[tuple[int, float]]:
        return [(t, e) for t, e, _ in self._snapshot.equity]

    def prices(self) -> dict[str, float]:
        return {s: close for s, (_, close) in self._snapshot.prices.items()}

    def logs(self) -> list[tuple[int, str, str, dict[str, str]]]:
        rows = self._db.execute(rec.LOGS.select_sql)
        out = []
        for row in rows:
            _, time, level, message, fields = rec.unseal(rec.LOGS, row)
            out.append((int(time), str(level), str(message), json.loads(str(fields))))
        return out

    def close(self) -> None:
        self._db.close()


class Journal(JournalReader):
    """The writer. The Session is its only user."""

    def __init__(self, db: sqlite3.Connection, path: Path, snapshot: Snapshot) -> None:
        super().__init__(db, path, snapshot)
        self._epoch_text = snapshot.meta["epoch"]  # as stored: the check compares text
        self.fenced = False  # a newer epoch has taken the journal: write nothing more
        self.failed = False  # a commit failed (disk full, fenced): write nothing more
        self._order_seqs = dict(snapshot.order_seqs)
        self._last = {name: snapshot.last_seq.get(name, 0) for name in COUNTED}
        self._counts = {name: snapshot.counts.get(name, 0) for name in COUNTED}
        self._meta: dict[str, str | Callable[[], str]] = {
            k: v for k, v in snapshot.meta.items() if k not in ("tally", "epoch")
        }
        # What was recorded since the last commit, coalesced by key. Rows are built and
        # checksummed only when they are written (`_write`): recording is on the bar path.
        self._orders: dict[str, tuple[Order, bool, bool]] = {}
        self._fills: list[tuple[rec.Value, ...]] = []
        self._cursor: dict[str, int] = {}
        self._prices: dict[str, tuple[int, float]] = {}
        self._equity: dict[int, tuple[float, float]] = {}
        self._cache: dict[str, str] = {}
        self._marks: list[tuple[rec.Value, ...]] = []
        self._logs: list[tuple[int, int, str, str, dict[str, str]]] = []
        self._new_meta: dict[str, str | Callable[[], str]] = {}
        self.venue_rows = VenueRows()  # the paper venue's steps since (session/venue.py)
        self._venue: VenueState | None = snapshot.venue  # until the venue takes it
        self.pending = False
        self._unsynced = False  # a commit was written without a sync (commit_records)
        self.commits = FastHistogram(LATENCY_BUCKETS)  # seconds per transaction written
        # A journal in memory has nothing to make durable and nobody reads it back: its
        # commits count and coalesce what was recorded as a file's do, then drop it.
        self._durable = str(path) != ":memory:"

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(  # type: ignore[override]  # a writer needs its session's name
        cls,
        path: Path,
        *,
        session: str,
        companions: Sequence[Path] = (),
        epochs_used: int = 0,
        legacy_venue: Path | None = None,
    ) -> Journal:
        """Open or create the journal of `session` and start a new epoch. `companions`:
        other files of the session's state (a paper venue kept in a file of its own),
        which an empty journal must not be started beside. `epochs_used`: the newest
        epoch of the session's other journals; a new one starts above it.
        `legacy_venue`: where a runner before schema 6 kept the paper venue; a journal
        of that schema takes it in when it is upgraded (legacy_venue.py)."""
        path = Path(path)
        fresh = not path.exists() or path.stat().st_size == 0
        snapshot = None
        if fresh:
            _refuse_empty_beside_state(path, companions)
        else:
            snapshot = _check_read_only(path, session)
        imported = None
        if snapshot is not None and snapshot.version < 6 and legacy_venue is not None:
            try:  # read in full before anything is written, like the journal
                imported = read_legacy_venue(legacy_venue)
            except LegacyVenueError as exc:
                raise JournalError(str(exc)) from None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise storage_error(exc, path) or JournalError(
                f"cannot open journal {path}: {exc}"
            ) from exc
        try:
            # Another process may have created the file since `fresh` was decided (two
            # pods on a network volume, where the state directory's flock may not reach).
            if snapshot is None and not _create(db, session):
                snapshot = read_snapshot(db, path, session=session)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if snapshot is None:
                snapshot = read_snapshot(db, path, session=session)
            elif snapshot.version < SCHEMA_VERSION:
                upgrade(db, snapshot, venue=imported)  # only now: every row was checked
                if imported is not None and legacy_venue is not None:
                    set_aside(legacy_venue)  # in the journal now; kept, renamed
            _new_epoch(db, snapshot, above=epochs_used)
        except JournalError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            problem = storage_error(exc, path)
            if problem is not None:
                raise problem from exc
            raise JournalError(
                f"journal {path} is unreadable ({exc}); it was left untouched"
            ) from exc
        return cls(db, path, snapshot)

    @classmethod
    def in_memory(cls, session: str) -> Journal:
        """A journal that lives as long as the process: a session without a state
        directory records every change through the very same calls, and keeps nothing.
        Since nothing in it can be made durable and nothing reads it back, its commits
        write no rows (see commit_records)."""
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        _create(db, session)
        snapshot = read_snapshot(db, Path(":memory:"), session=session)
        _new_epoch(db, snapshot)
        return cls(db, Path(":memory:"), snapshot)

    def take_snapshot(self) -> Snapshot:
        """What the journal held when opened; handed over once (it can be large)."""
        snapshot = self._snapshot
        self._snapshot = Snapshot(path=self.path, version=snapshot.version, meta=snapshot.meta)
        return snapshot

    def close(self) -> None:
        # A clean close checkpoints the WAL into the main file; a fenced or failed runner
        # leaves that to the journal's owner (a checkpoint would wait for it, or fail).
        if not (self.fenced or self.failed):
            # (If it fails, the next open reads the WAL: nothing is lost.)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    # -- fencing ----------------------------------------------------------------

    def check_epoch(self) -> None:
        """Raise Fenced unless this journal's newest epoch is still ours."""
        row = self._db.execute(_EPOCH_SQL).fetchone()
        if row is None or row[0] != self._epoch_text:
            self.fenced = True
            newest = int(row[0]) if row is not None and str(row[0]).isdigit() else 0
            raise Fenced("journal", self.path, ours=self.epoch, newest=newest)

    # -- recording (held until the next commit) -------------------------------------

    def record_order(self, order: Order, *, sent: bool, cancel: bool) -> None:
        """An order's current state (the live object: its state at commit is written)."""
        cid = order.client_order_id
        if cid not in self._order_seqs:
            self._last["orders"] += 1
            self._counts["orders"] += 1
            self._order_seqs[cid] = self._last["orders"]
        self._orders[cid] = (order, sent, cancel)
        self.pending = True

    def record_fill(self, fill: Fill) -> None:
        self._last["fills"] += 1
        self._counts["fills"] += 1
        self._fills.append(rec.fill_values(fill, seq=self._last["fills"]))
        self.pending = True

    def record_bar(self, symbol: str, time: int, close: float) -> None:
        """A bar begun: its symbol's cursor and last price (one call: it runs every bar)."""
        self._cursor[symbol] = time
        self._prices[symbol] = (time, close)
        self.pending = True

    def record_cursor(self, symbol: str, time: int) -> None:
        self._cursor[symbol] = time
        self.pending = True

    def record_price(self, symbol: str, time: int, close: float) -> None:
        self._prices[symbol] = (time, close)
        self.pending = True

    def record_equity(self, time: int, equity: float, cash: float) -> None:
        self._equity[time] = (equity, cash)
        self.pending = True

    def record_cache(self, key: str, value: str) -> None:
        self._cache[key] = value
        self.pending = True

    def record_mark(self, mark: Mark) -> None:
        self._last["marks"] += 1
        self._counts["marks"] += 1
        self._marks.append(rec.mark_values(mark, seq=self._last["marks"]))
        self.pending = True

    def record_log(self, time: int, level: str, message: str, fields: dict[str, str]) -> None:
        self._last["logs"] += 1
        self._counts["logs"] += 1
        # A copy: the caller's dict also travels in an event (its JSON is made at write).
        self._logs.append((self._last["logs"], time, level, message, dict(fields)))
        self.pending = True

    def record_meta(self, key: str, value: str | Callable[[], str]) -> None:
        """A session-wide value (initial cash, risk state), replacing the previous one.
        Given as a function, the value is made when it is written (or read by `meta`):
        a value that changes many times between commits is serialized once."""
        self._meta[key] = value
        self._new_meta[key] = value
        self.pending = True

    def meta(self, key: str) -> str | None:
        value = self._meta.get(key)  # as recorded, committed or not
        return value() if callable(value) else value

    # -- the paper venue's tables (session/venue.py) -------------------------------------

    def venue_store(self) -> VenueStore:
        """The paper venue's handle on its tables, holding what they held at open."""
        state, self._venue = self._venue, None
        if state is None:  # a second venue on one journal would fork its state
            raise RuntimeError("the paper venue's store was handed out already")
        return VenueStore(self, state)

    @property
    def hosts_venue(self) -> bool:
        """The paper venue keeps its state here: its steps commit with the session's."""
        return self._venue is None and self._durable

    def venue_step_done(self) -> None:
        """The venue finished a step (its rows are in `venue_rows`)."""
        self.pending = True

    # -- committing -------------------------------------------------------------------

    def commit_records(self, *, sync: bool = True) -> bool:
        """Make everything recorded durable in one transaction; False if there was
        nothing to write. The epoch is checked inside the transaction, whose write lock
        keeps it ours to the end: orders journaled here leave only after it commits,
        so a stale runner sends none.

        `sync=False` writes the transaction without waiting for the disk: it survives
        the runner's death (the kernel holds it) but not a power failure until the next
        synced commit, which syncs it too (one fsync covers the whole WAL)."""
        if not self.pending:
            if sync and self._unsynced and self._durable:
                self._sync_wal()
            return False
        if not self._durable:
            self._clear()  # "committed": there is no disk to make it durable on
            return True
        if self.failed:
            raise JournalError(f"journal {self.path} failed earlier; nothing more is written")
        # (An in-memory journal never has a venue: a paper venue without a state
        # directory keeps no store.)
        db = self._db
        started = time.perf_counter()
        try:
            if not sync:
                db.execute("PRAGMA synchronous=NORMAL")  # WAL: this commit is not synced
            db.execute("BEGIN IMMEDIATE")
            self.check_epoch()
            self._write(db)
            db.execute("COMMIT")
            if not sync:
                db.execute("PRAGMA synchronous=FULL")
        except BaseException as exc:
            self.failed = True
            if db.in_transaction:  # SQLite may have rolled back already (a full disk)
                db.execute("ROLLBACK")
            problem = storage_error(exc, self.path)
            if problem is not None:
                raise problem from exc
            if isinstance(exc, sqlite3.Error):  # e.g. locked for long by another process
                raise JournalError(f"cannot write journal {self.path}: {exc}") from exc
            raise
        self.commits.observe(time.perf_counter() - started)
        self._unsynced = not sync
        self._clear()
        return True

    def _sync_wal(self) -> None:
        """Sync commits written without a sync, when no commit follows to do it."""
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            self._unsynced = False  # checkpointed into the main file, which is synced
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            self.failed = True
            raise storage_error(exc, self.path) or JournalError(str(exc)) from exc
        finally:
            os.close(fd)
        self._unsynced = False

    def _write(self, db: sqlite3.Connection) -> None:
        seqs = self._order_seqs
        if self._orders:
            db.executemany(_UPSERT["orders"], [
                rec.seal(rec.ORDERS, rec.order_values(o, seq=seqs[cid], sent=s, cancel=c))
                for cid, (o, s, c) in self._orders.items()
            ])  # fmt: skip
        if self._fills:
            db.executemany(_INSERT["fills"], [rec.seal(rec.FILLS, v) for v in self._fills])
        if self._cursor:
            db.executemany(_UPSERT["cursor"], [
                rec.seal(rec.CURSOR, (str(s), int(t))) for s, t in self._cursor.items()
            ])  # fmt: skip
        if self._prices:
            db.executemany(_UPSERT["prices"], [
                rec.seal(rec.PRICES, (str(s), int(t), rec.real(c)))
                for s, (t, c) in self._prices.items()
            ])  # fmt: skip
        if self._equity:
            db.executemany(_UPSERT["equity"], rec.seal_equity_rows(self._equity.items()))
        if self._cache:
            db.executemany(_UPSERT["cache"], [
                rec.seal(rec.CACHE, (str(k), str(v))) for k, v in self._cache.items()
            ])  # fmt: skip
        if self._marks:
            db.executemany(_INSERT["marks"], [rec.seal(rec.MARKS, v) for v in self._marks])
        if self._logs:
            db.executemany(_INSERT["logs"], [
                rec.seal(rec.LOGS, rec.log_values(*log)) for log in self._logs
            ])  # fmt: skip
        if self.venue_rows:
            self.venue_rows.write(db)
        meta = {k: v() if callable(v) else v for k, v in self._new_meta.items()}
        if self._orders or self._fills or self._marks or self._logs:
            meta["tally"] = rec.sorted_json(self._counts)
        if meta:
            db.executemany(_UPSERT["session"], [
                rec.seal(rec.SESSION, (str(k), str(v))) for k, v in meta.items()
            ])  # fmt: skip

    def _clear(self) -> None:
        self._orders.clear()
        self._fills.clear()
        self._cursor.clear()
        self._prices.clear()
        self._equity.clear()
        self._cache.clear()
        self._marks.clear()
        self._logs.clear()
        self._new_meta.clear()
        self.venue_rows.clear()
        self.pending = False


JOURNAL_FILE = "journal.db"


def open_journal(state_dir: Path | None, session: str, *, paper: bool = False) -> Journal:
    """The session's journal: DIR/journal.db, or one in memory without a state directory.
    `paper`: the session trades on the paper venue, which a runner before schema 6 kept
    in DIR/paper-venue.db (see Journal.open)."""
    if state_dir is None:
        return Journal.in_memory(session)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, state_dir) or JournalError(str(exc)) from exc
    path = state_dir / JOURNAL_FILE
    fresh = not path.exists() or path.stat().st_size == 0
    used = _epochs_beside(state_dir, session) if fresh and _is_upgrade_dir(state_dir) else 0
    legacy = state_dir / LEGACY_VENUE_FILE if paper else None
    return Journal.open(
        path, session=session, companions=[legacy] if legacy else [], epochs_used=used,
        legacy_venue=legacy,
    )  # fmt: skip


# The operator's layout on a session's volume: the first journal in `state`, each
# stateless upgrade's in `state-<generation>-<uid>` beside it. Only there are sibling
# directories the same session's earlier lives; elsewhere (two local runs side by side,
# a live run and its replay) they are independent sessions and keep their own numbering.
_FIRST_DIR = "state"
_UPGRADE_PREFIX = "state-"


def _is_upgrade_dir(state_dir: Path) -> bool:
    return state_dir.name.startswith(_UPGRADE_PREFIX)


def _epochs_beside(state_dir: Path, session: str) -> int:
    """The newest epoch of `session`'s journals in the directories beside `state_dir`.

    A stateless upgrade starts a fresh journal in a new directory beside the old one
    (the operator keeps it for `kubetrade report`). Client order ids are (session,
    epoch, sequence): starting again at epoch 1 would repeat the old journal's ids at
    the venue, which may still hold those orders or look an order up by its id.
    Journals of other sessions, and ones that cannot be read, are passed over.
    """
    newest = 0
    try:
        siblings = sorted(
            p / JOURNAL_FILE
            for p in state_dir.parent.iterdir()
            if p != state_dir and (p.name == _FIRST_DIR or _is_upgrade_dir(p))
        )
    except OSError:
        return 0
    for candidate in siblings:
        if not candidate.is_file():
            continue
        try:
            reader = JournalReader.open(candidate)
        except (JournalError, OSError, sqlite3.Error):
            continue
        try:
            if reader.session_name() == session:
                newest = max(newest, reader.epoch)
        finally:
            reader.close()
    return newest


# -- helpers --------------------------------------------------------------------------


def _check_read_only(path: Path, session: str) -> Snapshot:
    try:
        db = _connect_read_only(path)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open journal {path}: {exc}") from exc
    try:
        return read_snapshot(db, path, session=session)
    finally:
        db.close()


def _refuse_empty_beside_state(path: Path, companions: Sequence[Path]) -> None:
    """An empty or missing journal is a new session, unless the session's other state
    is there: then the journal was lost, and starting afresh would reuse epoch 1 (every
    order a duplicate at the venue) and forget what the session did."""
    wal = path.with_name(path.name + "-wal")
    for other in (wal, *companions):
        if other.is_file() and other.stat().st_size > 0:
            what = "is empty (0 bytes)" if path.exists() else "is missing"
            raise JournalError(
                f"journal {path} {what}, but {other} holds state of the session; the runner "
                "refuses to start afresh beside it (it would reuse epoch 1) and left every file "
                "untouched. Restore the journal from a backup, or move the whole state "
                "directory aside to start the session afresh"
            )


def _create(db: sqlite3.Connection, session: str) -> bool:
    """Lay out a new journal; False if another process already has (then check it)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            db.execute("ROLLBACK")
            return False
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        for script in MIGRATIONS:
            for statement in statements(script):
                db.execute(statement)
        db.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
        tally = json.dumps(dict.fromkeys(COUNTED, 0), sort_keys=True)
        for item in (("session", session), ("tally", tally)):
            db.execute(_UPSERT["session"], rec.seal(rec.SESSION, item))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return True


def _new_epoch(db: sqlite3.Connection, snapshot: Snapshot, *, above: int = 0) -> None:
    """Start this runner's epoch: the journal's first write on every open."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute(_EPOCH_SQL).fetchone()
        epoch = max(int(row[0]) + 1 if row is not None else 1, above + 1)
        db.execute(_UPSERT["session"], rec.seal(rec.SESSION, ("epoch", str(epoch))))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    snapshot.meta["epoch"] = str(epoch)
