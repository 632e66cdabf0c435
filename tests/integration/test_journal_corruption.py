"""A damaged state directory is refused at start, named, and left exactly as it was.

A real `kubetrade run` writes a journal with rows in every table (the apicheck
strategy places and cancels orders, fills, caches, marks and logs). Then, in a
copy each time, one thing is damaged: a single bit inside one row of each
table (the paper venue's too: they are in the journal), the file cut short,
emptied, replaced by a foreign file (a venue file older runners kept beside it:
test_legacy_venue.py). Each start must exit 2 with one
line naming the damaged file and what is wrong, and leave every file in the
directory byte for byte as it was, and `kubetrade report` must refuse it too.
Runs through the CLI only, so it can be pointed at any kubetrade.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
import struct
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from helpers import ROOT, T0
from test_cli import run

APICHECK_WASM = ROOT / "strategies" / "testdata" / "apicheck" / "apicheck.wasm"
MINUTE = 60_000
TABLES = (
    "session", "orders", "fills", "cursor", "cache", "marks", "logs", "equity", "prices",
    # the paper venue's (its resting orders are all gone by the end: no row to damage)
    "venue_state", "venue_orders",
)  # fmt: skip


def bars(symbol: str, base: float, swing: float, count: int = 45) -> list[str]:
    rows, prev = [], base
    for m in range(count):
        close = round(base + swing * math.sin(m / 3) + base * 0.0005 * m, 2)
        high = round(max(prev, close) + base * 0.003 * (1 + m % 3), 2)
        low = round(min(prev, close) - base * 0.002 * (1 + m % 4), 2)
        rows.append(f"{T0 + m * MINUTE},{symbol},{prev},{high},{low},{close},{10 + 7 * m % 13}")
        prev = close
    return rows


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session's state directory after a clean run; its session file sits beside it."""
    directory = tmp_path_factory.mktemp("corruption")
    data = directory / "bars.csv"
    btc, eth = bars("BTC", 100.0, 4.0), bars("ETH", 2000.0, 40.0)
    lines = [row for pair in zip(btc, eth, strict=True) for row in pair]
    data.write_text("time,symbol,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    (directory / "session.yaml").write_text(
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata: {name: corruption-test}\n"
        "spec:\n"
        "  symbols: [BTC, ETH]\n"
        "  interval: 1m\n"
        f"  strategy: {{path: {APICHECK_WASM}, config: {{symbol: BTC}}}}\n"
        f"  marketData: {{provider: replay, config: {{path: {data}}}}}\n"
        "  trading: {provider: paper, config: {initialCash: 10000, feeBps: 10}}\n"
    )
    state = directory / "state"
    result = run("run", "--no-http", "--quiet", "--state-dir", state, directory / "session.yaml")
    assert result.returncode == 0, result.stderr
    with closing(sqlite3.connect(state / "journal.db")) as db:
        for table in TABLES:
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0], table
    return state


def SESSION(state: Path) -> Path:  # noqa: N802  (reads as the constant it is)
    return state.parent / "session.yaml"


def files(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(state.iterdir())}


def copy(original: Path, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(original, state)
    return state


def assert_refused(state: Path, session_file: Path, *expected: str) -> str:
    """A start and a report are refused with one line naming what is wrong; nothing moves.
    Returns the start's line."""
    before = files(state)
    said = ""
    for args in (
        ("run", "--no-http", "--quiet", "--state-dir", state, session_file),
        ("report", state),
    ):
        result = run(*args)
        assert result.returncode == 2, (args[0], result.returncode, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr
        for text in expected:
            assert text in lines[0], (text, lines[0])
        assert files(state) == before, f"{args[0]} changed a file"
        said = said or lines[0]
    return said


# -- one flipped bit inside a row ---------------------------------------------------------


def patterns(values: tuple[object, ...]) -> Iterator[bytes]:
    """How a row's values may look in the file, the likeliest to be unique first."""
    for value in values:
        if isinstance(value, float) and not value.is_integer():
            yield struct.pack(">d", value)  # SQLite stores a real as 8 big-endian bytes
    for shortest in (4, 2, 1):
        for value in values:
            if isinstance(value, str) and len(value) >= shortest:
                yield value.encode()
    for value in values:
        if isinstance(value, int) and value >= 1 << 40:
            yield struct.pack(">q", value)[2:]  # a 6-byte integer (bar times)


def order(table: str) -> str:
    """The paper venue's state is a WITHOUT ROWID table: read in key order."""
    return "1" if table == "venue_state" else "rowid"


def rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)) as db:
        db.text_factory = bytes  # a flipped bit may leave text that is not UTF-8
        return db.execute(f"SELECT * FROM {table} ORDER BY {order(table)}").fetchall()


def flip_inside(journal: Path, table: str) -> None:
    """Flip one bit inside a value of one of `table`'s rows, where it changes the row."""
    before = rows(journal, table)
    data = journal.read_bytes()
    with closing(
        sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    ) as db:
        # The last rows first (the session table's first names the session, which is
        # checked without any checksum); in a row, the values before the key, which
        # sits in an index too.
        found = db.execute(f"SELECT * FROM {table} ORDER BY {order(table)} DESC").fetchall()
    candidates = [tuple(reversed(r)) for r in found]
    for values in candidates:
        for pattern in patterns(values):
            start = data.find(pattern)
            while start >= 0:
                damaged = bytearray(data)
                damaged[start + len(pattern) // 2] ^= 0x04
                journal.write_bytes(bytes(damaged))
                try:
                    changed = rows(journal, table) != before
                except sqlite3.DatabaseError:
                    changed = False  # the page itself broke: not a flip inside a row
                if changed:
                    return
                start = data.find(pattern, start + 1)
    journal.write_bytes(data)
    raise AssertionError(f"found no byte of a {table} row to flip")


@pytest.mark.parametrize("table", TABLES)
def test_a_flipped_bit_in_any_row_is_refused(original: Path, tmp_path: Path, table: str) -> None:
    state = copy(original, tmp_path)
    flip_inside(state / "journal.db", table)
    assert_refused(state, SESSION(original), str(state / "journal.db"), table, "untouched")


# -- the journal cut short, emptied, missing or replaced -------------------------------------


def cut(size: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(journal: Path) -> None:
        data = journal.read_bytes()
        journal.write_bytes(data[: size(len(data))])

    return damage


@pytest.mark.parametrize(
    "damage",
    [cut(lambda n: n // 2), cut(lambda n: n - 4096), cut(lambda n: 4096 * 2 + 17)],
    ids=["half", "last-page", "two-pages-and-a-bit"],
)
def test_a_truncated_journal_is_refused(
    original: Path, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    state = copy(original, tmp_path)
    damage(state / "journal.db")
    assert_refused(state, SESSION(original), str(state / "journal.db"))


def test_an_empty_journal_alone_is_a_new_session(original: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal.db").write_bytes(b"")  # created, never written: nothing to protect
    result = run("run", "--no-http", "--quiet", "--state-dir", state, SESSION(original))
    assert result.returncode == 0, result.stderr


def foreign_database(journal: Path) -> None:
    journal.unlink()
    with closing(sqlite3.connect(journal)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('not a journal')")
        db.commit()


def newer_schema(journal: Path) -> None:
    with closing(sqlite3.connect(journal)) as db:
        db.execute("PRAGMA user_version=99")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda j: j.write_text("just some notes, not a database at all\n" * 300), "unreadable"),
        (foreign_database, "not a kubetrade journal"),
        (newer_schema, "schema version 99"),
    ],
    ids=["text", "foreign-sqlite", "newer-schema"],
)
def test_a_foreign_file_in_place_of_the_journal_is_refused(
    original: Path, tmp_path: Path, damage: Callable[[Path], None], says: str
) -> None:
    state = copy(original, tmp_path)
    damage(state / "journal.db")
    assert_refused(state, SESSION(original), str(state / "journal.db"), says)


def test_the_undamaged_copy_still_resumes(original: Path, tmp_path: Path) -> None:
    # The damage above is what the runner refuses, not the copy: the same copy runs.
    state = copy(original, tmp_path)
    result = run("run", "--no-http", "--quiet", "--state-dir", state, SESSION(original))
    assert result.returncode == 0, result.stderr
    assert (
        hashlib.sha256((state / "journal.db").read_bytes()).digest()
        != hashlib.sha256((original / "journal.db").read_bytes()).digest()
    )  # a new epoch was written
