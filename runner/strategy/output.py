"""A guest's stdout and stderr, forwarded to logging in bounded lines at a bounded rate.

A strategy decides what it prints, so neither the size of a line nor the
amount per bar is left to it: a guest writing without newlines is cut into
lines of ``MAX_OUTPUT_LINE`` bytes, and each strategy call may put
``MAX_OUTPUT_BYTES_PER_CALL`` bytes in ``MAX_OUTPUT_LINES_PER_CALL`` lines
on each stream (counted as printed: control characters are printed as
escapes, ``printable``, so a strategy cannot forge the runner's own lines).
What is over is counted, not kept, and reported in one line when the call
ends.
"""

from __future__ import annotations

import logging
from typing import Final

from kubetrade.runner.strategy.printable import printable

logger = logging.getLogger("kubetrade.strategy")

MAX_OUTPUT_LINE: Final = 4096  # longer lines (or none at all) are cut into lines this long
MAX_OUTPUT_BYTES_PER_CALL: Final = 64 * 1024  # per stream; the rest is counted, not kept
MAX_OUTPUT_LINES_PER_CALL: Final = 100


class GuestOutput:
    """Forwards one guest output stream (stdout or stderr) to logging, a line at a time."""

    def __init__(self, session: str, stream: str, level: int) -> None:
        self._label = f"{session} {stream}" if session else stream
        self._stream = stream
        self._level = level
        self._partial = bytearray()
        # The first line written since take_first(): a Go panic or fatal error starts there.
        self._first: str | None = None
        self.written = False  # since take_first(): lets a quiet call skip the bookkeeping
        self._taken = 0  # bytes read from the guest during this call
        self._shown = 0  # characters logged during this call (escapes make bytes longer)
        self._lines = 0  # lines logged during this call
        self._dropped = 0  # what was over this call's allowance

    def room(self) -> int:
        """How many more bytes this call may write before they are only counted."""
        if self._lines >= MAX_OUTPUT_LINES_PER_CALL:
            return 0
        return max(0, MAX_OUTPUT_BYTES_PER_CALL - self._taken)

    def write(self, data: bytes) -> None:
        """Take bytes the guest wrote. Whatever is over the call's allowance is counted."""
        self.written = True
        room = self.room()
        if len(data) > room:
            self._dropped += len(data) - room
            data = data[:room]
        if not data:
            return
        self._taken += len(data)
        self._partial += data
        if b"\n" not in data and len(self._partial) < MAX_OUTPUT_LINE:
            return
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            for start in range(0, max(len(line), 1), MAX_OUTPUT_LINE):
                self._emit(line[start : start + MAX_OUTPUT_LINE])
        while len(self._partial) >= MAX_OUTPUT_LINE:
            self._emit(bytes(self._partial[:MAX_OUTPUT_LINE]))
            del self._partial[:MAX_OUTPUT_LINE]

    def skip(self, size: int) -> None:
        """Count bytes the guest wrote that were never read (over the allowance)."""
        self.written = True
        self._dropped += size

    def flush(self) -> None:
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._emit(line)

    def take_first(self) -> str | None:
        """End of a call: emit what is pending, report what was over, start a new allowance.
        Returns the first line the call wrote (for error messages)."""
        self.flush()
        if self._dropped:
            logger.log(
                self._level,
                "[%s] ... and %d more characters of %s, not shown (a strategy call may write "
                "%d characters in %d lines to each stream)",
                self._label,
                self._dropped,
                self._stream,
                MAX_OUTPUT_BYTES_PER_CALL,
                MAX_OUTPUT_LINES_PER_CALL,
            )
        first, self._first = self._first, None
        self.written = False
        self._taken = self._shown = self._lines = self._dropped = 0
        return first

    def _emit(self, line: bytes) -> None:
        text = printable(line.decode("utf-8", "replace").rstrip("\r"))
        # The allowance counts what is printed: an escape is longer than the byte it shows.
        room = min(MAX_OUTPUT_LINE, MAX_OUTPUT_BYTES_PER_CALL - self._shown)
        if self._lines >= MAX_OUTPUT_LINES_PER_CALL or room <= 0:
            self._dropped += len(text)
            return
        if len(text) > room:
            self._dropped += len(text) - room
            text = text[:room]
        self._lines += 1
        self._shown += len(text)
        if self._first is None and text.strip():
            self._first = text.strip()
        logger.log(self._level, "[%s] %s", self._label, text)
