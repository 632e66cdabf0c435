"""One runner per state directory, and a stale runner sends nothing: real `kubetrade run`s.

Two runners on one state directory used to both run, both send orders into the
one journal (epochs 1 and 2) and both trade on the one paper venue file; two
starting at once on an empty directory could kill one of them with "journal is
unreadable (table session already exists)". Now a runner holds an OS lock on
its directory for its whole life, and the journal's epoch fences a runner that
lost the directory without knowing it (a Kubernetes pod on another node).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import venue_fill_counts
from test_cli import run
from test_crash_restart import journal_rows, session, start

SPEED = 600  # ten one-minute bars a second: the 240-bar series lasts ~24 s
FileState = dict[str, tuple[bytes, int]]


def paced_session(tmp_path: Path) -> Path:
    """The crash test's session, replayed at SPEED so that runners overlap."""
    path = session(tmp_path)
    text = path.read_text()
    data = tmp_path / "bars.csv"
    paced = text.replace(f"config: {{path: {data}}}", f"config: {{path: {data}, speed: {SPEED}}}")
    assert paced != text
    path.write_text(paced)
    return path


def wait_for(
    condition: Callable[[], bool],
    what: str,
    runner: subprocess.Popen[str] | None = None,
    timeout: float = 60,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if runner is not None and runner.poll() is not None:
            _, err = runner.communicate()
            raise AssertionError(f"runner exited {runner.returncode} before {what}: {err}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read a runner's SQLite file without writing to it (read-only connection)."""
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet


def journaled_orders(state: Path) -> int:
    rows = query(state / "journal.db", "SELECT count(*) FROM orders")
    return int(rows[0][0]) if rows else 0


def files(state: Path) -> FileState:
    """Every file in the state directory: its bytes and its modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(state.iterdir())}


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@contextmanager
def stopped(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Freeze a runner (SIGSTOP keeps its lock) so its files hold still while we look."""
    proc.send_signal(signal.SIGSTOP)
    time.sleep(0.2)  # let a write in flight land before the snapshot
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Stop a runner cleanly (SIGTERM finishes the bar in hand) and return (code, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def assert_in_use_message(err: str, state: Path, holder_pid: int) -> None:
    lines = stderr_lines(err)
    assert len(lines) == 1, err
    [line] = lines
    assert str(state) in line, line
    assert f"pid {holder_pid}" in line, line
    assert socket.gethostname() in line, line
    assert "Traceback" not in err


def test_a_second_runner_on_a_held_directory_exits_2_at_once_and_touches_nothing(
    tmp_path: Path,
) -> None:
    session_file = paced_session(tmp_path)
    state = tmp_path / "state"
    holder = start(session_file, state)
    try:
        wait_for(lambda: journaled_orders(state) >= 2, "placing orders", holder)
        with stopped(holder):
            before = files(state)
            second = start(session_file, state)
            # A runner that waited for the lock would hang here: the holder is frozen.
            _, err = second.communicate(timeout=60)
            after = files(state)
        assert second.returncode == 2, err
        assert_in_use_message(err, state, holder.pid)
        assert after == before  # journal, venue, WAL files and the lock file: bytes and mtimes
    finally:
        code, err = finish(holder)
    assert code == 0, err
    epochs = {cid.split("-")[1] for (cid,) in query(
        state / "journal.db", "SELECT client_order_id FROM orders")}  # fmt: skip
    assert epochs == {"1"}  # only the holder ever placed orders


def test_two_runners_started_together_on_an_empty_directory_one_runs(tmp_path: Path) -> None:
    session_file = paced_session(tmp_path)
    state = tmp_path / "state"  # does not exist yet: both race to create it
    first, second = start(session_file, state), start(session_file, state)
    try:
        # The loser leaves at once; the winner paces through its bars.
        exited = lambda: first.poll() is not None or second.poll() is not None  # noqa: E731
        wait_for(exited, "one runner to exit")
        loser, winner = (first, second) if first.poll() is not None else (second, first)
        _, err = loser.communicate(timeout=30)
        assert loser.returncode == 2, err
        assert_in_use_message(err, state, winner.pid)
        wait_for(lambda: journaled_orders(state) >= 1, "placing an order", winner)
        code, err = finish(winner)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert code == 0, err
    report = run("report", "--json", state)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["orders"] >= 1
    assert query(state / "journal.db", "SELECT value FROM session WHERE key='epoch'") == [("1",)]


def test_kill_nine_frees_the_directory_and_the_next_runner_resumes(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    proc = start(session(clean), clean / "state")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    expected = journal_rows(clean / "state")

    session_file = paced_session(tmp_path)
    state = tmp_path / "state"
    holder = start(session_file, state)
    try:
        wait_for(lambda: journaled_orders(state) >= 3, "placing orders", holder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    # At once: the kernel released the dead holder's lock.
    successor = start(session(tmp_path), state)  # unpaced: runs to the end
    _, err = successor.communicate(timeout=120)
    assert successor.returncode == 0, err

    assert journal_rows(state) == expected
    assert query(state / "journal.db", "SELECT value FROM session WHERE key='epoch'") == [("2",)]
    ids = [cid for (cid,) in query(state / "journal.db", "SELECT client_order_id FROM orders")]
    assert len(ids) == len(set(ids))
    assert {cid.split("-")[1] for cid in ids} == {"1", "2"}
    venue_fills = venue_fill_counts(state / "journal.db")
    assert all(count == 1 for count in venue_fills.values()), "the venue filled an order twice"
    assert len(venue_fills) == len(expected["fills"])


def test_a_stale_runner_sends_nothing_once_a_newer_epoch_took_the_journal(
    tmp_path: Path,
) -> None:
    # A pod on another node: the flock does not reach it, so it is simulated by opening
    # the journal (a new epoch, the paper venue's tables in it) from this process, past
    # the lock.
    from kubetrade.runner.session import Journal

    session_file = paced_session(tmp_path)
    state = tmp_path / "state"
    stale = start(session_file, state)
    try:
        wait_for(lambda: journaled_orders(state) >= 2, "placing orders", stale)
        successor = Journal.open(state / "journal.db", session="crash-test")
        assert successor.epoch == 2
        journal_then = query(state / "journal.db", "SELECT * FROM orders ORDER BY seq")
        venue_then = query(state / "journal.db", "SELECT * FROM venue_orders ORDER BY 1")
        resting_then = query(state / "journal.db", "SELECT * FROM venue_resting ORDER BY 1")
        _, err = stale.communicate(timeout=60)  # it stops by itself, at its next step
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.communicate()
    assert stale.returncode == 1, err
    lines = stderr_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "epoch 2" in lines[0] and "epoch 1" in lines[0], lines[0]
    # Nothing reached the venue or the journal after the takeover.
    assert query(state / "journal.db", "SELECT * FROM orders ORDER BY seq") == journal_then
    assert query(state / "journal.db", "SELECT * FROM venue_orders ORDER BY 1") == venue_then
    assert query(state / "journal.db", "SELECT * FROM venue_resting ORDER BY 1") == resting_then
    journaled = {cid for (cid, *_) in journal_then}
    assert {cid for (cid, *_) in venue_then} <= journaled  # the successor knows every order
    successor.close()


def test_report_reads_a_held_directory_and_writes_nothing(tmp_path: Path) -> None:
    session_file = paced_session(tmp_path)
    state = tmp_path / "state"
    holder = start(session_file, state)
    try:
        wait_for(lambda: journaled_orders(state) >= 2, "placing orders", holder)
        with stopped(holder):
            before = files(state)
            report = run("report", "--json", state, timeout=60)
            after = files(state)
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["session"] == "crash-test"
        assert after == before
    finally:
        code, err = finish(holder)
    assert code == 0, err


def test_a_state_directory_that_is_a_file_is_one_clear_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where the state directory should be\n")
    result = run("run", "--no-http", "--state-dir", not_a_dir, session(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and str(not_a_dir) in lines[0], result.stderr
    assert "not a directory" in lines[0]
    assert not_a_dir.read_text() == "a file where the state directory should be\n"


def test_a_lock_file_that_cannot_be_opened_is_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / ".lock").mkdir(parents=True)  # something that is no lock file stands there
    result = run("run", "--no-http", "--state-dir", state, session(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and str(state / ".lock") in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in state.iterdir()) == [".lock"]  # nothing else was created


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_state_directory_is_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o555)
    try:
        result = run("run", "--no-http", "--state-dir", state, session(tmp_path))
    finally:
        state.chmod(0o755)
    assert result.returncode == 2, result.stderr
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and str(state) in lines[0], result.stderr
    assert "Traceback" not in result.stderr
