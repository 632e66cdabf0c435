"""A guest's stdout and stderr, forwarded to logging one line at a time."""

from __future__ import annotations

import logging
from typing import Final

logger = logging.getLogger("kubetrade.strategy")

_MAX_LINE: Final = 16 * 1024  # a guest writing without newlines is forwarded in chunks of this


class GuestOutput:
    """Forwards one guest output stream (stdout or stderr) to logging, a line at a time."""

    def __init__(self, session: str, stream: str, level: int) -> None:
        self._label = f"{session} {stream}" if session else stream
        self._level = level
        self._partial = bytearray()
        # The first line written since take_first(): a Go panic or fatal error starts there.
        self._first: str | None = None
        self.written = False  # since take_first(): lets a quiet call skip the bookkeeping

    def write(self, data: bytes) -> None:
        self.written = True
        self._partial += data
        if b"\n" not in data and len(self._partial) < _MAX_LINE:
            return
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            self._emit(line)

    def flush(self) -> None:
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._emit(line)

    def take_first(self) -> str | None:
        self.flush()
        first, self._first = self._first, None
        self.written = False
        return first

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if self._first is None and text.strip():
            self._first = text.strip()
        logger.log(self._level, "[%s] %s", self._label, text)
