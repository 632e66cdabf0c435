"""A state directory written by a runner that kept the paper venue in a file of its own.

Runners before journal schema 6 kept the paper venue in `paper-venue.db` beside
the journal. A paper session such a runner started (the runner of commit
LEGACY_RUNNER, from this repository's history, run as it was) must go on under
today's runner as if nothing had changed: the journal takes the venue in when it
is upgraded, the file is kept renamed, and the whole run equals one by today's
runner alone. A damaged venue file, or one beside an emptied or missing
journal, is refused and left as it was.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from helpers import ROOT, venue_fill_counts
from test_cli import run
from test_crash_restart import journal_rows, session, start

# The last runner that kept the paper venue in paper-venue.db (journal schema 5).
LEGACY_RUNNER = "78b88fc"
LEGACY_BARS = 100  # of the session's 240: it stops there, today's runner goes on

_CHILD = """
import asyncio, sys
from pathlib import Path
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import load_session

async def main():
    options = RunOptions(state_dir=Path(sys.argv[2]), max_bars=int(sys.argv[3]))
    async for _ in build_engine(load_session(Path(sys.argv[1])), options).run():
        pass

asyncio.run(main())
import kubetrade.runner
print(kubetrade.runner.__file__)
"""


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state directory of a paper session the legacy runner ran LEGACY_BARS bars of;
    the session file beside it."""
    directory = tmp_path_factory.mktemp("legacy")
    tree = directory / "tree"
    (tree / "kubetrade").mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", LEGACY_RUNNER, "runner"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree / "kubetrade")], input=archive, check=True)
    session_file = session(directory)
    state = directory / "state"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(session_file), str(state), str(LEGACY_BARS)],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().startswith(str(tree)), "the legacy runner was not the one run"
    assert (state / "paper-venue.db").stat().st_size > 0
    with closing(sqlite3.connect(state / "journal.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (5,)
        assert db.execute("SELECT count(*) FROM fills").fetchone()[0] > 0
    return state


def files(state: Path) -> dict[str, bytes]:
    # Not the lock file (statedir.py): the CLI makes it empty on its first start, and the
    # legacy runner was run without its CLI.
    return {p.name: p.read_bytes() for p in sorted(state.iterdir()) if p.name != ".lock"}


def copy(legacy: Path, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(legacy, state)
    return state


def test_todays_runner_takes_the_venue_in_and_goes_on(legacy: Path, tmp_path: Path) -> None:
    session_file = legacy.parent / "session.yaml"
    clean = tmp_path / "clean"
    proc = start(session_file, clean)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    state = copy(legacy, tmp_path)
    with closing(sqlite3.connect(state / "paper-venue.db")) as venue:
        cash_then = venue.execute("SELECT value FROM account WHERE key='cash'").fetchone()
        fills_then = venue.execute("SELECT count(*) FROM fills").fetchone()[0]
    proc = start(session_file, state)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # The venue is in the journal now; its file is kept, renamed, and read no more.
    assert not (state / "paper-venue.db").exists()
    assert (state / "paper-venue.db.imported").stat().st_size > 0
    with closing(sqlite3.connect(state / "journal.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (6,)
        epochs = [cid.split("-")[1] for (cid,) in db.execute("SELECT client_order_id FROM orders")]
    venue_fills = sum(venue_fill_counts(state / "journal.db").values())
    assert {"1", "2"} <= set(epochs), "orders of both runners"
    assert venue_fills > fills_then and cash_then is not None
    assert journal_rows(state) == journal_rows(clean)  # as if one runner had run it all


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v.write_text("not a venue\n" * 500),
        lambda v: v.write_bytes(v.read_bytes()[: v.stat().st_size // 2]),
    ],
    ids=["foreign", "truncated"],
)
def test_a_damaged_venue_file_is_refused_before_the_journal_is_touched(
    legacy: Path, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    state = copy(legacy, tmp_path)
    damage(state / "paper-venue.db")
    before = files(state)
    session_file = legacy.parent / "session.yaml"
    result = run("run", "--no-http", "--quiet", "--state-dir", state, session_file)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(state / "paper-venue.db") in lines[0] and "left untouched" in lines[0]
    assert files(state) == before  # the journal's epoch was not bumped either


@pytest.mark.parametrize("how", ["emptied", "removed"])
def test_a_lost_journal_beside_the_venue_file_is_refused(
    legacy: Path, tmp_path: Path, how: str
) -> None:
    # Taken for a new session, it would reuse epoch 1: every order a duplicate at the venue.
    state = copy(legacy, tmp_path)
    for name in ("journal.db-wal", "journal.db-shm"):
        (state / name).unlink(missing_ok=True)
    if how == "emptied":
        (state / "journal.db").write_bytes(b"")
    else:
        (state / "journal.db").unlink()
    before = files(state)
    session_file = legacy.parent / "session.yaml"
    result = run("run", "--no-http", "--quiet", "--state-dir", state, session_file)
    assert result.returncode == 2, result.stderr
    assert str(state / "journal.db") in result.stderr and "paper-venue.db" in result.stderr
    assert "Traceback" not in result.stderr
    assert files(state) == before
