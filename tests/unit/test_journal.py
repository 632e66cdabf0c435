"""The journal keeps what it is given across reopenings and never harms a file it refuses."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from pathlib import Path

import pytest

from kubetrade.runner.domain import (
    Fill,
    Mark,
    Order,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
)
from kubetrade.runner.session import Journal, JournalError
from kubetrade.runner.session import records as rec
from kubetrade.runner.session.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    statements,
)

T0 = 1_704_067_200_000


def order(cid: str, status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(cid, "BTC", Side.BUY, OrderType.LIMIT, 1.5, 100.25, T0, "s", status=status)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_state_survives_reopening_and_each_open_is_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s1")
    assert j.epoch == 1
    a = order("a")
    j.record_order(a, sent=False, cancel=False)
    j.record_order(order("b"), sent=False, cancel=False)
    j.record_order(a, sent=True, cancel=False)
    j.record_cursor("BTC", T0)
    j.record_cache("k", "v1")
    assert j.commit_records()
    a.status = OrderStatus.FILLED
    a.filled_quantity, a.average_price, a.fee = 1.5, 100.0, 0.15
    j.record_order(a, sent=True, cancel=False)
    j.record_fill(Fill("f1", "a", "BTC", Side.BUY, 1.5, 100.0, 0.15, T0 + 60_000))
    j.record_cursor("BTC", T0 + 60_000)
    j.record_cache("k", "v2")
    j.record_mark(Mark("BTC", T0, "red", "MARK_SHAPE_CIRCLE", "t", "m", "c", "SIGNAL", "INFO"))
    j.record_log(T0, "info", "hello", {"a": "1"})
    assert j.commit_records()
    assert not j.commit_records()  # nothing new: no transaction at all
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


def test_records_not_committed_are_not_in_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal.open(path, session="s")
    j.record_order(order("a"), sent=False, cancel=False)
    j.record_cursor("BTC", T0)
    j._db.close()  # the process dies before the commit (no close: no checkpoint either)
    j2 = Journal.open(path, session="s")
    snap = j2.snapshot()
    assert (snap.orders, snap.cursor, j2.epoch) == ([], {}, 2)
    j2.close()


def test_corrupt_journal_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s")
    for i in range(200):
        j.record_order(order(f"o{i}"), sent=False, cancel=False)
    j.commit_records()
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
    for i in range(200):
        j.record_order(order(f"o{i}"), sent=False, cancel=False)
    j.commit_records()
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
    j.record_fill(Fill("f1", "a", "BTC", Side.BUY, 1.0, 100.0, 0.1, T0, fee_base=0.001))
    j.commit_records()
    j.close()
    j2 = Journal.open(path, session="s")
    assert [(f.fee, f.fee_base) for f in j2.snapshot().fills] == [(0.1, 0.001)]
    j2.close()


def old_journal(path: Path, version: int, session: str = "s") -> None:
    """A journal as a kubetrade of schema `version` left it: no checksums yet."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    for script in MIGRATIONS[:version]:
        for statement in statements(script):
            db.execute(statement)
    db.execute(f"PRAGMA user_version={version}")
    db.executemany("INSERT INTO session VALUES (?, ?)", [("session", session), ("epoch", "3")])
    db.execute(
        "INSERT INTO orders (client_order_id, seq, symbol, side, order_type, quantity, price, "
        "time, strategy_name, reason, message, strategy_order_id, position_type, status, sent, "
        "filled_quantity, average_price, fee, updated) VALUES "
        "('a', 1, 'BTC', 'BUY', 'MARKET', 1.0, 100.0, ?, 's', 'strategy', '', '', 'LONG', "
        "'FILLED', 1, 1.0, 100.0, 0.1, ?)",
        (T0, T0),
    )
    db.execute(
        "INSERT INTO fills (fill_id, seq, client_order_id, symbol, side, quantity, price, fee, "
        "time, realized_pnl) VALUES ('f1', 1, 'a', 'BTC', 'BUY', 1.0, 100.0, 0.1, ?, 0.0)",
        (T0,),
    )
    db.execute("INSERT INTO cursor VALUES ('BTC', ?)", (T0,))
    if version >= 2:
        db.execute("INSERT INTO equity VALUES (?, 9999.9, 9899.9)", (T0,))
    db.close()


@pytest.mark.parametrize("version", [3, 4])
def test_an_old_journal_is_checked_then_upgraded_with_checksums(
    tmp_path: Path, version: int
) -> None:
    # Written before fills knew fee_base (v3) or before rows had checksums (v4).
    path = tmp_path / "journal.db"
    old_journal(path, version)
    j = Journal.open(path, session="s")
    assert j.epoch == 4
    [old] = j.snapshot().fills
    assert (old.fill_id, old.fee, old.fee_base) == ("f1", 0.1, 0.0)
    j.record_fill(Fill("f2", "a", "BTC", Side.BUY, 1.0, 100.0, 0.1, T0 + 1, fee_base=0.001))
    j.commit_records()
    j.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    j = Journal.open(path, session="s")  # every row now passes its checksum
    assert [f.fee_base for f in j.snapshot().fills] == [0.0, 0.001]
    assert j.snapshot().last_equity_time == T0
    j.close()
    db = sqlite3.connect(path)  # and a changed row no longer does
    db.execute("UPDATE fills SET price=100.5 WHERE fill_id='f1'")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="table fills, the row with fill_id 'f1' fails its"):
        Journal.open(path, session="s")


def test_an_old_journal_with_a_bad_row_is_refused_and_not_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    old_journal(path, 4)
    db = sqlite3.connect(path)
    db.execute("UPDATE orders SET side='SIDEWAYS'")
    db.commit()
    db.close()
    before = digest(path)
    with pytest.raises(JournalError, match="table orders, the row with client_order_id 'a'"):
        Journal.open(path, session="s")
    assert digest(path) == before


def test_values_read_back_pass_their_checksums_whatever_their_python_type(tmp_path: Path) -> None:
    # A reason that is a StrEnum, an int quantity, a NaN a strategy sent, -0.0: each is
    # stored so that the row reads back with the checksum it was written with.
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s")
    refused = Order("r", "BTC", Side.BUY, OrderType.LIMIT, math.nan, 3, T0, "s")
    refused.status, refused.reason = OrderStatus.REJECTED, RejectReason.INVALID_QUANTITY
    j.record_order(refused, sent=False, cancel=False)
    j.record_fill(Fill("f", "a", "BTC", Side.SELL, 1.0, 100.0, -0.0, T0, realized_pnl=-0.0))
    j.record_equity(T0, 10_000, -0.0)
    j.commit_records()
    j.close()
    j = Journal.open(path, session="s")
    [order] = j.snapshot().orders
    assert math.isnan(order.quantity) and (order.price, order.reason) == (3.0, "invalid_quantity")
    assert [(f.fee, f.realized_pnl) for f in j.snapshot().fills] == [(0.0, 0.0)]
    j.close()


def test_a_value_given_as_a_function_is_written_as_it_is_at_the_commit(tmp_path: Path) -> None:
    # The risk state moves with every order: recorded as a function, serialized once.
    path = tmp_path / "journal.db"
    j = Journal.open(path, session="s")
    state = {"day": 1}
    j.record_meta("risk", lambda: json.dumps(state))
    state["day"] = 2
    assert j.meta("risk") == '{"day": 2}'  # read before the commit: as it is now
    j.record_bar("BTC", T0, 100.5)
    j.record_log(T0, "info", "hello", fields := {"a": "1"})
    fields["a"] = "changed later"  # the log line keeps what it was given
    assert j.commit_records()
    state["day"] = 3  # after the commit: not in the journal until recorded again
    j.close()
    j = Journal.open(path, session="s")
    snap = j.snapshot()
    assert snap.meta["risk"] == '{"day": 2}'
    assert (snap.cursor, snap.prices) == ({"BTC": T0}, {"BTC": (T0, 100.5)})
    assert j.logs() == [(T0, "info", "hello", {"a": "1"})]
    j.close()


def test_an_in_memory_journal_counts_what_it_records_and_writes_no_rows() -> None:
    j = Journal.in_memory("s")
    j.record_order(order("a"), sent=False, cancel=False)
    j.record_fill(Fill("f1", "a", "BTC", Side.BUY, 1.5, 100.0, 0.15, T0))
    j.record_bar("BTC", T0, 100.0)
    j.record_equity(T0, 10_000.0, 9_850.0)
    assert j.commit_records()  # "committed": there is nothing to make durable
    assert (j.pending, j.commit_records()) == (False, False)
    j.record_order(order("b"), sent=False, cancel=False)
    assert j._order_seqs == {"a": 1, "b": 2}  # ids and counts go on as with a file
    rows = j._db.execute("SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM equity)")
    assert rows.fetchone()[0] == 0
    j.close()


def test_equity_rows_sealed_together_are_the_rows_sealed_one_by_one() -> None:
    points = [(T0 + i, (e, c)) for i, (e, c) in enumerate(
        [(10_000.5, 3.0), (-0.0, 0.0), (math.nan, 1.0), (5, -0.0), (math.inf, math.nan)]
    )]  # fmt: skip
    one_by_one = [rec.seal_equity(t, rec.real(e), rec.real(c)) for t, (e, c) in points]
    together = rec.seal_equity_rows(points)
    assert repr(together) == repr(one_by_one)  # repr: NaN == NaN, and the types too
    assert [type(v) for row in together for v in row] == [
        type(v) for row in one_by_one for v in row
    ]
