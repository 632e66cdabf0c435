"""The state directory lock: one holder at a time, a refusal that names the holder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubetrade.runner.session.statedir import LOCK_NAME, StateDirError, lock_state_dir


def test_a_second_lock_is_refused_naming_the_holder_until_it_is_released(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"  # created, parents too
    held = lock_state_dir(state)
    holder = json.loads((state / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    # flock belongs to the open file, so a second open in this very process is refused too.
    with pytest.raises(StateDirError) as refused:
        lock_state_dir(state)
    message = str(refused.value)
    assert "\n" not in message and str(state) in message
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    held.release()
    held.release()  # twice is harmless
    assert (state / LOCK_NAME).read_text() == ""  # a released lock names nobody
    lock_state_dir(state).release()


def test_the_lock_file_content_never_decides_who_holds_the_lock(tmp_path: Path) -> None:
    # A lock file left by a dead runner (any content) does not stop the next one.
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    held = lock_state_dir(tmp_path)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    held.release()


def test_a_holder_whose_name_cannot_be_read_is_still_a_holder(tmp_path: Path) -> None:
    # Another process holds the flock but wrote no name (or garbage): still refused.
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'not json')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirError, match="has not written its pid"):
            lock_state_dir(tmp_path)
    finally:
        holder.communicate("")
    lock_state_dir(tmp_path).release()  # its exit released the lock


def test_what_is_not_a_directory_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text("keep me\n")
    with pytest.raises(StateDirError, match="is not a directory"):
        lock_state_dir(path)
    assert path.read_text() == "keep me\n"
    with pytest.raises(StateDirError, match="cannot create state directory"):
        lock_state_dir(path / "below")
