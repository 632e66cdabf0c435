"""When the journal waits for the disk: counted from the runner's own system calls.

The runner is run under strace, which lists every fsync/fdatasync and write on the
journal's files. On the paper venue, whose state is in the journal, an order bar's
transaction is written at once and synced with the group's next commit, so a
replay that places dozens of orders syncs a handful of times, and nothing is left
unsynced when it stops. A venue of its own (the local Binance server) gets every
order's intent synced before the order leaves: at least one sync per order.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from test_crash_restart import KUBETRADE, binance_test_venue, session


@pytest.fixture(autouse=True)
def _strace() -> None:
    # Not a skip: the test command installs it, and a count not taken proves nothing.
    assert shutil.which("strace"), "strace is missing: scripts/install-test-tools.sh installs it"


_CALL = re.compile(r"^(?:\d+\s+)?(\w+)\(\d+<([^>]*)>")  # strace -f -o: "PID call(FD<path>..."


def traced_run(session_file: Path, state: Path, env: dict[str, str] | None = None) -> list[
        tuple[str, str]]:  # fmt: skip
    """Run the session; the (call, file) of each sync and write on the state directory."""
    log = state.parent / f"{state.name}.strace"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-o", str(log), "-e",
         "trace=fsync,fdatasync,write,pwrite64,writev,pwritev",
         str(KUBETRADE), "run", "--no-http", "--quiet", "--state-dir", str(state),
         str(session_file)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONSAFEPATH": "1", **(env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = []
    for line in log.read_text().splitlines():
        match = _CALL.match(line)
        if match and match.group(2).startswith(str(state.resolve())):
            call = "sync" if match.group(1) in ("fsync", "fdatasync") else "write"
            calls.append((call, Path(match.group(2)).name))
    return calls


def orders(state: Path) -> int:
    with closing(sqlite3.connect(state / "journal.db")) as db:
        return int(db.execute("SELECT count(*) FROM orders").fetchone()[0])


def test_paper_order_bars_are_synced_with_their_group_and_nothing_is_left_unsynced(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    calls = traced_run(session(tmp_path), state)
    placed = orders(state)
    assert placed >= 12, "the series should make the strategy trade often"
    wal_syncs = calls.count(("sync", "journal.db-wal"))
    assert ("write", "journal.db-wal") in calls and wal_syncs >= 1, calls[:5]
    # The 240 bars are one group (1,000 bars or 0.2 s), plus opening and the stop: a
    # sync per order bar would be `placed` more.
    assert wal_syncs <= 8 < placed, (wal_syncs, placed)
    for name in ("journal.db", "journal.db-wal"):
        written = [i for i, call in enumerate(calls) if call == ("write", name)]
        synced = [i for i, call in enumerate(calls) if call == ("sync", name)]
        if written:
            assert synced and synced[-1] > written[-1], f"{name} was written after its last sync"


def test_a_venue_of_its_own_gets_each_intent_synced_before_it_leaves(tmp_path: Path) -> None:
    key, secret = "ktSyncKey" + "Q1w2E3r4T5" * 6, "ktSyncSecret" + "P0o9I8u7Y6" * 6
    env = {"KUBETRADE_BINANCE_PAPER_API_KEY": key, "KUBETRADE_BINANCE_PAPER_API_SECRET": secret}
    with binance_test_venue(key, secret) as venue:
        trading = f'    provider: binance-paper\n    config: {{restUrl: "{venue.url}"}}'
        session_file = session(tmp_path, trading=trading, name="sync-venue", symbol="ACMEUSDT")
        state = tmp_path / "state"
        calls = traced_run(session_file, state, env)
        sent = len(venue.orders)
    assert sent >= 12 and orders(state) == sent
    assert calls.count(("sync", "journal.db-wal")) >= sent
