"""What can go wrong with the disk under a state directory, said plainly.

SQLite reports a full disk, a read-only file system or a failing device as
`sqlite3.OperationalError` with a bare message ("database or disk is full");
the runner turns those into StorageError naming the file and what to do, so a
user sees one line instead of a traceback. The journal and the paper venue both
use it.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

# SQLite's primary result codes for trouble with the file system (sqlite3.h).
_FULL = 13  # SQLITE_FULL
_READONLY = 8  # SQLITE_READONLY
_IOERR = 10  # SQLITE_IOERR (and its extended codes, whose low byte is 10)
_CANTOPEN = 14  # SQLITE_CANTOPEN
_PERM = 3  # SQLITE_PERM


class StorageError(Exception):
    """The state directory's disk refused a write; what was committed before is intact."""


def storage_error(exc: BaseException, path: Path) -> StorageError | None:
    """A StorageError for a file-system failure, or None for any other error."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return StorageError(_full(path))
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StorageError(_read_only(path, exc.strerror or str(exc)))
        return StorageError(f"cannot write {path}: {exc.strerror or exc}")
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == _FULL:
        return StorageError(_full(path))
    if code in (_READONLY, _PERM):
        return StorageError(_read_only(path, str(exc)))
    if code in (_IOERR, _CANTOPEN):
        return StorageError(
            f"cannot write {path}: {exc} (the disk or file system failed); what was "
            "committed before is intact; check the volume, then start the session again"
        )
    return None


def _full(path: Path) -> str:
    return (
        f"the disk holding {path} is full; what the session recorded before is intact: free "
        "space (or give the volume more), then start it again with the same --state-dir"
    )


def _read_only(path: Path, why: str) -> str:
    return (
        f"cannot write {path} ({why}): the state directory must be writable; mount it "
        "read-write or give the runner a directory it can write"
    )
