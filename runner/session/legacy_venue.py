"""Reading a paper venue kept in a file of its own, as runners before journal schema 6 did.

Those runners kept the paper venue's state in `paper-venue.db` beside the
journal. Opening such a state directory, the journal reads that file here, over
a read-only connection and before anything is written, and its upgrade to
schema 6 copies the venue into the journal's `venue_*` tables in the same
transaction (migrate.py); the file is then renamed `paper-venue.db.imported`
and kept. Its rows carry no checksum: only SQLite's structure check and the
rows' parsing can find damage.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from kubetrade.runner.domain import OrderStatus
from kubetrade.runner.session.venue import (
    VenueState,
    bar_from,
    fill_from,
    order_from,
    position_from,
)

LEGACY_VENUE_FILE = "paper-venue.db"
IMPORTED_SUFFIX = ".imported"


class LegacyVenueError(Exception):
    """The venue's file cannot be read; it was left as it was."""


def read_legacy_venue(path: Path) -> VenueState | None:
    """The venue kept in `path`, every row read; None if there is none (no file, or an
    empty one). LegacyVenueError names the file and what is wrong."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"  # immutable: no files made
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
        try:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise ValueError("; ".join(problems[:3]))
            return _read(db)
        finally:
            db.close()
    except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
        raise LegacyVenueError(
            f"paper venue {path} is unreadable ({exc}); it was left untouched. Restore it "
            "from a backup, or move the whole state directory aside to start the session "
            "afresh"
        ) from None


def _read(db: sqlite3.Connection) -> VenueState:
    state = VenueState()
    state.account = {str(k): float(v) for k, v in db.execute("SELECT key, value FROM account")}
    state.positions = [position_from(b) for (b,) in db.execute("SELECT body FROM positions")]
    state.resting = [
        (order_from(b), float(r))
        for b, r in db.execute("SELECT body, reserved FROM resting ORDER BY rowid")
    ]
    rows = db.execute(
        "SELECT client_order_id, status, reason, message, time FROM known ORDER BY rowid"
    )
    state.known = {str(cid): (OrderStatus(s), str(r), str(m), int(t)) for cid, s, r, m, t in rows}
    # The journal numbers the venue's orders in the order it first saw them (venue.py).
    state.order_seqs = {cid: seq for seq, cid in enumerate(state.known, start=1)}
    state.fills = [fill_from(b) for (b,) in db.execute("SELECT body FROM fills ORDER BY rowid")]
    state.bars = [bar_from(b) for (b,) in db.execute("SELECT body FROM last_bar")]
    return state


def set_aside(path: Path) -> None:
    """Rename an imported venue's files (`X`, `X-wal`, `X-shm` to `X.imported`, ...), to
    show they are read no more; they are kept, not deleted. A rename that fails changes
    nothing that matters: the journal is at schema 6 now and never reads the file again."""
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            source.rename(path.with_name(path.name + IMPORTED_SUFFIX + suffix))
