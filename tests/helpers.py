"""Shared test helpers: paths of the compiled strategies, bar files."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from kubetrade.runner.brokers.paper import PaperBroker
from kubetrade.runner.session import Journal, paper_venue_store

ROOT = Path(__file__).resolve().parent.parent
SMA_WASM = ROOT / "strategies" / "examples" / "sma" / "sma.wasm"
HOSTCHECK_WASM = ROOT / "strategies" / "examples" / "hostcheck" / "hostcheck.wasm"
FAULTY_WASM = ROOT / "strategies" / "testdata" / "faulty" / "faulty.wasm"
SAMPLE_CSV = ROOT / "examples" / "data" / "btcusdt_1m_synthetic.csv"

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MINUTE = 60_000

BarRow = tuple[int, float, float, float, float]  # minute offset, open, high, low, close


def write_bars(path: Path, symbol: str, rows: Sequence[BarRow], interval_ms: int = MINUTE) -> Path:
    lines = ["time,symbol,open,high,low,close,volume"]
    for offset, o, h, lo, c in rows:
        lines.append(f"{T0 + offset * interval_ms},{symbol},{o},{h},{lo},{c},100")
    path.write_text("\n".join(lines) + "\n")
    return path


def flat_rows(closes: Sequence[float]) -> list[BarRow]:
    """Bars whose open, high, low and close are all the given close."""
    return [(i, c, c, c, c) for i, c in enumerate(closes)]


class DurableVenue:
    """A paper venue kept in a journal at `path` (as with a state directory), opened
    like a runner opens it: `close` commits what it recorded, as the session would."""

    def __init__(self, path: Path, **broker: Any) -> None:
        self.journal = Journal.open(path, session="venue-test")
        self.broker = PaperBroker(store=paper_venue_store(self.journal), **broker)

    def commit(self) -> None:
        self.journal.commit_records()

    def close(self) -> None:
        self.journal.commit_records()
        self.journal.close()


def venue_fill_counts(journal: Path) -> dict[str, int]:
    """How many fills the paper venue in `journal` recorded per order it filled."""
    with closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT client_order_id, fills FROM venue_orders").fetchall()
    return {cid: len(json.loads(fills)) for cid, fills in rows if fills != "[]"}


def venue_account(db: sqlite3.Connection) -> dict[str, Any]:
    """The paper venue's account and positions as its journal tables hold them (figures
    rounded to 6 places; not its fill counter)."""
    account = json.loads(
        db.execute("SELECT body FROM venue_state WHERE key='account'").fetchone()[0]
    )
    positions = [
        json.loads(body)
        for (body,) in db.execute(
            "SELECT body FROM venue_state WHERE key LIKE 'position/%' ORDER BY key"
        )
    ]
    return {
        "account": {k: round(v, 6) for k, v in account.items() if k != "fill_seq"},
        "positions": positions,
    }
