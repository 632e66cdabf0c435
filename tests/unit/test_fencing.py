"""Epoch fencing: once a newer epoch has the journal and the venue, the old one is refused."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest

from kubetrade.runner.brokers.paper import PaperBroker
from kubetrade.runner.domain import Bar, Order, OrderType, Side
from kubetrade.runner.session import (
    Journal,
    JournalError,
    JournalReader,
    Session,
    paper_venue_store,
)
from kubetrade.runner.session.fencing import Fenced
from kubetrade.runner.session.orders import OrderRouter
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.session.schema import SCHEMA_VERSION
from kubetrade.runner.telemetry.metrics import SessionMetrics

T0 = 1_704_067_200_000


def order(cid: str, side: Side = Side.BUY, qty: float = 1.0) -> Order:
    return Order(cid, "BTC", side, OrderType.MARKET, qty, 100.0, T0, "s")


def bar(minute: int, close: float = 100.0) -> Bar:
    return Bar("BTC", T0 + minute * 60_000, close, close, close, close, 10.0)


def tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(path)) as db:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: db.execute(f"SELECT * FROM {n} ORDER BY 1").fetchall() for n in names}


def test_a_stale_journal_writes_nothing_once_a_newer_epoch_opened_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    stale = Journal.open(path, session="s")
    stale.record_order(order("kt-1-1"), sent=False, cancel=False)
    stale.commit_records()
    newer = Journal.open(path, session="s")
    assert (stale.epoch, newer.epoch) == (1, 2)
    stale.record_order(order("kt-1-2"), sent=False, cancel=False)
    with pytest.raises(Fenced) as fenced:
        stale.commit_records()
    message = str(fenced.value)
    assert str(path) in message and "epoch 2" in message and "epoch 1" in message
    assert stale.fenced
    with pytest.raises(Fenced):
        stale.check_epoch()  # the check on its own, as before a resend
    stale.close()  # no checkpoint, no error
    assert [o.client_order_id for o in newer.snapshot().orders] == ["kt-1-1"]
    newer.record_order(order("kt-2-1"), sent=False, cancel=False)
    newer.commit_records()
    newer.close()
    reader = JournalReader.open(path)
    assert [o.client_order_id for o in reader.snapshot().orders] == ["kt-1-1", "kt-2-1"]
    reader.close()


def _open_journal(path: str, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait()
    Journal.open(Path(path), session="s").close()


def test_runners_creating_one_journal_at_once_all_open_it(tmp_path: Path) -> None:
    # Without a working flock (two nodes on a network volume) creation itself may race.
    for attempt in range(3):
        path = tmp_path / f"journal-{attempt}.db"
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(3)
        procs = [context.Process(target=_open_journal, args=(str(path), start)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT value FROM session WHERE key='epoch'").fetchone() == ("3",)


async def test_a_stale_paper_venue_client_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    stale_journal = Journal.open(path, session="s")
    stale = PaperBroker(initial_cash=10_000, store=paper_venue_store(stale_journal))
    await stale.on_bar(bar(0))
    await stale.submit(order("kt-1-1"))
    resting = Order("kt-1-2", "BTC", Side.BUY, OrderType.LIMIT, 1.0, 90.0, T0, "s")
    await stale.submit(resting)
    assert stale_journal.commit_records()  # as the session commits after sending
    newer_journal = Journal.open(path, session="s")
    newer = PaperBroker(initial_cash=10_000, store=paper_venue_store(newer_journal))
    assert newer.ledger.quantity("BTC") == 1.0  # read back after taking the venue over
    assert set(newer.resting) == {"kt-1-2"}
    before = tables(path)
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: stale.submit(order("kt-1-3")),
        lambda: stale.cancel(resting),
        lambda: stale.on_bar(bar(1, close=80.0)),  # would fill the resting limit
    ]
    for step in steps:
        with pytest.raises(Fenced, match=r"journal .* epoch 2 .* epoch 1"):
            await step()
    assert not stale_journal.commit_records()  # the refused steps left nothing to write
    assert tables(path) == before
    await newer.on_bar(bar(1, close=80.0))  # the venue's owner goes on
    assert newer_journal.commit_records()
    assert newer.ledger.quantity("BTC") == 2.0
    stale_journal.close()
    newer_journal.close()


async def test_an_unsent_order_is_not_resent_by_a_stale_runner(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = Journal.open(path, session="s")
    first.record_order(order("kt-1-1"), sent=False, cancel=False)  # journaled, then ...
    first.record_cursor("BTC", T0)
    first.commit_records()
    first.close()  # ... the runner died before sending it
    stale = Journal.open(path, session="s")  # epoch 2 restores ...
    session = Session.create(
        session="s", symbols=("BTC",), initial_cash=10_000, window_size=10, precision=8,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset({"BTC"})), journal=stale,
    )  # fmt: skip
    assert session.restore() is not None
    broker = PaperBroker(initial_cash=10_000)
    await broker.on_bar(bar(0))
    Journal.open(path, session="s").close()  # ... while epoch 3 has already started
    router = OrderRouter(session=session, broker=broker, metrics=SessionMetrics("s"))
    with pytest.raises(Fenced):
        await router.resolve_open()
    assert broker.known == {}  # the venue never saw it
    stale.close()


def test_a_report_reads_without_writing_and_refuses_an_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal.open(path, session="s")
    journal.record_order(order("kt-1-1"), sent=False, cancel=False)
    journal.commit_records()
    journal.close()
    digest, mtime = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    reader = JournalReader.open(path)
    assert [o.client_order_id for o in reader.snapshot().orders] == ["kt-1-1"]
    reader.close()
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == (
        digest,
        mtime,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.db"]  # no WAL made either
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    with pytest.raises(JournalError, match="older than this kubetrade"):
        JournalReader.open(path)
