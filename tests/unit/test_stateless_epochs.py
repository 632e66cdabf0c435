"""A fresh journal beside a session's older ones goes on with their epochs.

A stateless upgrade gives a session a new state directory beside the old one. Client
order ids are (session, epoch, sequence): a fresh journal at epoch 1 would repeat the old
one's ids, which a venue may still hold or look orders up by.
"""

from __future__ import annotations

from pathlib import Path

from kubetrade.runner.session import open_journal
from kubetrade.runner.session.core import client_order_id


def _epoch(state_dir: Path, session: str) -> int:
    journal = open_journal(state_dir, session)
    try:
        return journal.epoch
    finally:
        journal.close()


def test_a_fresh_journal_starts_above_its_sessions_other_journals(tmp_path: Path) -> None:
    assert [_epoch(tmp_path / "state", "s") for _ in range(3)] == [1, 2, 3]
    assert _epoch(tmp_path / "state-7-abc", "s") == 4  # the stateless upgrade's directory
    assert _epoch(tmp_path / "state-7-abc", "s") == 5  # and then its own numbering
    assert client_order_id("s", 4, 1) != client_order_id("s", 1, 1)


def test_other_sessions_and_unreadable_files_beside_it_are_passed_over(tmp_path: Path) -> None:
    for _ in range(6):
        _epoch(tmp_path / "state", "other")
    (tmp_path / "state-2-junk").mkdir()
    (tmp_path / "state-2-junk" / "journal.db").write_bytes(b"not a journal")
    assert _epoch(tmp_path / "state-3-new", "s") == 1


def test_state_directories_outside_the_operators_layout_number_their_own_epochs(
    tmp_path: Path,
) -> None:
    # A live run and its replay, or two local runs side by side, are separate sessions:
    # each starts at epoch 1 so their client order ids can be compared.
    for _ in range(3):
        _epoch(tmp_path / "live", "s")
    assert _epoch(tmp_path / "replay", "s") == 1
    assert _epoch(tmp_path / "state", "s") == 1  # the first journal never looks beside it
