"""The journal keeps what it is given across reopenings and never harms a file it refuses."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from kubetrade.runner.domain import Fill, Mark, Order, OrderStatus, OrderType, Side
from kubetrade.runner.journal import Journal, JournalError

T0 = 1_704_067_200_000


def order(cid: str, status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(cid, "BTC", Side.BUY, OrderType.LIMIT, 1.5, 100.25, T0, "s", status=status)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_state_survives_reopening_and_each_open_is_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s1")
    assert j.epoch == 1
    with j.transaction():
        j.order_intent(order("a"))
        j.order_intent(order("b"))
        j.order_sent("a")
        j.cursor("BTC", T0)
        j.cache("k", "v1")
    with j.transaction():
        filled = order("a", OrderStatus.FILLED)
        filled.filled_quantity, filled.average_price, filled.fee = 1.5, 100.0, 0.15
        j.order_update(filled)
        j.fill(Fill("f1", "a", "BTC", Side.BUY, 1.5, 100.0, 0.15, T0 + 60_000))
        j.fill(Fill("f1", "a", "BTC", Side.BUY, 1.5, 100.0, 0.15, T0 + 60_000))  # a repeat
        j.cursor("BTC", T0 + 60_000)
        j.cache("k", "v2")
        j.mark(Mark("BTC", T0, "red", "MARK_SHAPE_CIRCLE", "t", "m", "c", "SIGNAL", "INFO"))
        j.log(T0, "info", "hello", {"a": "1"})
    j.close()

    j2 = Journal.open(path, session="s1")
    assert j2.epoch == 2
    snap = j2.snapshot()
    assert [o.client_order_id for o in snap.orders] == ["a", "b"]
    a = snap.orders[0]
    assert (a.status, a.filled_quantity, a.average_price, a.fee) == (
        OrderStatus.FILLED,
        1.5,
        100.0,
        0.15,
    )
    assert snap.unsent == {"b"}  # journaled, never confirmed sent
    assert [f.fill_id for f in snap.fills] == ["f1"]
    assert snap.cursor == {"BTC": T0 + 60_000}
    assert snap.cache == {"k": "v2"}
    assert snap.marks[0].color == "red"
    assert j2.logs() == [(T0, "info", "hello", {"a": "1"})]
    j2.close()


def test_an_interrupted_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.db", session="s")

    def half_written() -> None:
        with j.transaction():
            j.order_intent(order("a"))
            raise RuntimeError("crash between writes")

    with pytest.raises(RuntimeError):
        half_written()
    assert j.snapshot().orders == []
    j.close()


def test_corrupt_journal_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s")
    with j.transaction():
        for i in range(200):
            j.order_intent(order(f"o{i}"))
    j.close()
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // 4096):  # scribble over every b-tree page header
        data[page * 4096 : page * 4096 + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(JournalError) as err:
        Journal.open(path, session="s")
    assert str(path) in str(err.value) and "untouched" in str(err.value)
    assert path.exists() and digest(path) == before


def test_truncated_journal_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s")
    with j.transaction():
        for i in range(200):
            j.order_intent(order(f"o{i}"))
    j.close()
    path.write_bytes(path.read_bytes()[: 4096 * 2 + 17])
    before = digest(path)
    with pytest.raises(JournalError, match=str(path)):
        Journal.open(path, session="s")
    assert digest(path) == before


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = digest(other)
    with pytest.raises(JournalError, match="not a kubetrade journal"):
        Journal.open(other, session="s")
    assert digest(other) == before

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just some text " * 200)
    with pytest.raises(JournalError, match="unreadable"):
        Journal.open(text, session="s")
    assert text.read_text().startswith("not a database")


def test_journal_of_another_session_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal.open(path, session="alpha").close()
    with pytest.raises(JournalError, match="belongs to session 'alpha'"):
        Journal.open(path, session="beta")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal.open(path, session="s").close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(JournalError, match="schema version 99"):
        Journal.open(path, session="s")


def test_a_fee_taken_in_coins_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s")
    with j.transaction():
        j.fill(Fill("f1", "a", "BTC", Side.BUY, 1.0, 100.0, 0.1, T0, fee_base=0.001))
    j.close()
    j2 = Journal.open(path, session="s")
    assert [(f.fee, f.fee_base) for f in j2.snapshot().fills] == [(0.1, 0.001)]
    j2.close()


def test_a_version_3_journal_is_migrated_and_its_fills_paid_cash(tmp_path: Path) -> None:
    # A journal written before fills knew fee_base: the column is added, its fills read 0.
    path = tmp_path / "journal.db"
    Journal.open(path, session="s").close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE fills DROP COLUMN fee_base")
    db.execute(
        "INSERT INTO fills VALUES ('f1', 1, 'a', 'BTC', 'BUY', 1.0, 100.0, 0.1, ?, 0.0)", (T0,)
    )
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    j = Journal.open(path, session="s")
    [old] = j.snapshot().fills
    assert (old.fill_id, old.fee, old.fee_base) == ("f1", 0.1, 0.0)
    with j.transaction():
        j.fill(Fill("f2", "a", "BTC", Side.BUY, 1.0, 100.0, 0.1, T0 + 1, fee_base=0.001))
    assert [f.fee_base for f in j.snapshot().fills] == [0.0, 0.001]
    j.close()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == 4
