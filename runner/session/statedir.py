"""One runner per state directory: an OS lock held for the runner's whole life.

Two runners on one directory would both write its journal and trade on its
paper venue. So before anything in the directory is opened, created or
changed, the runner takes an exclusive `flock` on `DIR/.lock`; a second runner
finds it taken and leaves at once. The kernel drops the lock with the process,
kill -9 included, so a crash never leaves the directory locked.

After locking, the holder writes its pid, host and start time into the lock
file, only so a refused runner can say who holds the directory; the lock
itself never depends on that content. Where `flock` does not reach (network
volumes mounted on several nodes) the journal's epoch fences a stale runner
instead (see `fencing.py`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".lock"
_HOLDER_WAIT_S = 0.5  # how long a refused runner waits for the holder to write its name
_HOLDER_POLL_S = 0.02


class StateDirError(Exception):
    """The state directory cannot be used by this runner; nothing in it was touched."""


@dataclass(slots=True)
class StateDirLock:
    directory: Path
    _fd: int

    def release(self) -> None:
        """Give the directory up (the process's exit does the same)."""
        if self._fd < 0:
            return
        # Clear the holder's name first: once unlocked, it would name a runner that left.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = -1


def lock_state_dir(directory: Path) -> StateDirLock:
    """Take `directory` for this process, creating it if need be; StateDirError if not."""
    if directory.exists() and not directory.is_dir():
        raise StateDirError(f"state directory {directory} is not a directory; give --state-dir a "
                            "directory (it is created if missing)")  # fmt: skip
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"cannot create state directory {directory}: {_why(exc)}") from exc
    path = directory / LOCK_NAME
    try:
        # O_CLOEXEC: a child process must not inherit (and so prolong) the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StateDirError(
            f"cannot lock state directory {directory}: cannot open {path} ({_why(exc)}); "
            "the runner needs a directory it can write"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StateDirError(
                f"state directory {directory} is in use by another runner ({_holder(path)}); "
                "stop that runner first, or give this session its own --state-dir"
            ) from None
        raise StateDirError(
            f"cannot lock state directory {directory}: {_why(exc)} (the file system may not "
            "support file locks)"
        ) from exc
    _write_holder(fd)
    return StateDirLock(directory, fd)


def _write_holder(fd: int) -> None:
    """Name this runner in the lock file; best effort, the lock is what counts."""
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def _holder(path: Path) -> str:
    """Who holds the lock, as its file says. The holder writes its name just after
    locking, so a runner refused in between waits a moment for it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        holder = _read_holder(path)
        if holder is not None or time.monotonic() >= deadline:
            break
        time.sleep(_HOLDER_POLL_S)
    if holder is None:
        return "it has not written its pid"
    pid, host, started = holder
    return f"pid {pid} on host {host}, started {started}"


def _read_holder(path: Path) -> tuple[int, str, str] | None:
    try:
        body = json.loads(path.read_text())
        pid, host, started = int(body["pid"]), str(body["host"]), str(body["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # empty (being written) or not ours: never trusted beyond a message
    if host == socket.gethostname() and not _alive(pid):
        return None  # a dead runner's name, not yet replaced by the live holder's
    return pid, host, started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
