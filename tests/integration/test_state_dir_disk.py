"""A state directory on a read-only or full disk: one clear line, nothing lost.

Real file systems, not simulated errors: each test mounts a small tmpfs (this
needs root, as the development VM and CI run; elsewhere the tests skip). A
read-only mount refuses the start with exit 2; a disk full before the start
refuses it with exit 2; a disk that fills up mid-run stops the session with
exit 1 and the reason, and once there is room again the same state directory
runs to the end with the very journal an uninterrupted run writes.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SMA_WASM, write_bars
from test_cli import run
from test_crash_restart import journal_rows

BARS = 3000


def mount(directory: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 1 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    directory = tmp_path / "disk"
    directory.mkdir()
    try:
        mount(directory, "size=1m")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def remount(directory: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(directory)], check=True)


def session(tmp_path: Path) -> Path:
    closes = [100 + 8 * math.sin(i / 5) + 3 * math.sin(i / 1.7) for i in range(BARS)]
    data = write_bars(tmp_path / "bars.csv", "ACME", [
        (i, round(c, 2), round(c + 0.5, 2), round(c - 0.5, 2), round(c, 2))
        for i, c in enumerate(closes)
    ])  # fmt: skip
    path = tmp_path / "session.yaml"
    path.write_text(
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata: {name: disk-test}\n"
        "spec:\n"
        "  symbols: [ACME]\n"
        "  interval: 1m\n"
        f"  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 3, slowPeriod: 8, quantity: 7}}}}\n"
        f"  marketData: {{provider: replay, config: {{path: {data}}}}}\n"
        "  trading: {provider: paper, config: {initialCash: 10000, feeBps: 10}}\n"
    )
    return path


def fill(path: Path) -> None:
    """Write until the file system has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left") as full:
            _write_forever(fd)
    finally:
        os.close(fd)
    assert full.value.errno == errno.ENOSPC


def _write_forever(fd: int) -> None:
    while True:
        os.write(fd, b"\0" * 65536)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_read_only_state_directory_is_one_clear_line(disk: Path, tmp_path: Path) -> None:
    session_file = session(tmp_path)
    state = disk / "state"
    assert run("run", "--no-http", "--quiet", "--max-bars", "50", "--state-dir", state,
               session_file).returncode == 0  # fmt: skip
    remount(disk, "ro")
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    result = run("run", "--no-http", "--quiet", "--state-dir", state, session_file)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert str(state) in line and "Read-only file system" in line, line
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    # What was recorded can still be read: a report writes nothing.
    report = run("report", state)
    assert report.returncode == 0, report.stderr


def test_a_full_disk_at_start_is_one_clear_line(disk: Path, tmp_path: Path) -> None:
    fill(disk / "filler")
    result = run("run", "--no-http", "--quiet", "--state-dir", disk / "state", session(tmp_path))
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert str(disk / "state") in line and "full" in line, line


def test_a_disk_that_fills_mid_run_stops_cleanly_and_loses_nothing(
    disk: Path, tmp_path: Path
) -> None:
    session_file = session(tmp_path)
    clean = tmp_path / "clean"
    assert run("run", "--no-http", "--quiet", "--state-dir", clean, session_file).returncode == 0
    remount(disk, "size=600k")  # room to start, not to finish
    state = disk / "state"
    result = run("run", "--no-http", "--quiet", "--state-dir", state, session_file)
    assert result.returncode == 1, result.stderr
    # The console's last event and the exit line say the same: the disk is full.
    assert "Traceback" not in result.stderr, result.stderr
    assert f"the disk holding {state}" in result.stderr and "is full" in result.stderr
    assert journal_rows(state)["cursor"] != journal_rows(clean)["cursor"]  # it did stop early
    remount(disk, "size=64m")
    resumed = run("run", "--no-http", "--quiet", "--state-dir", state, session_file)
    assert resumed.returncode == 0, resumed.stderr
    assert journal_rows(state) == journal_rows(clean)
