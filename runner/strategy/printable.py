"""Text someone else wrote, made safe to print on one line of a terminal or a log.

A strategy's log lines, marks, error strings and stdout, and the reasons and
messages of its orders, are the strategy's own words. Printed as they are, a
newline starts a line that looks like the runner's own ("... filled BUY 1
BTCUSDT"), a carriage return or an ANSI escape rewrites what is already on the
screen, and a bidirectional override reorders it. ``printable`` escapes every
character Python does not call printable (controls, format characters such as
U+202E, line and paragraph separators), as Python's ``repr`` would, and leaves
the rest alone, so ordinary text reads as written.
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\t"}  # a tab moves the cursor, harmlessly


def printable(text: str) -> str:
    """``text`` on one line, with no character that moves the cursor or changes the terminal."""
    if text.isprintable():  # the common case, at C speed: nothing to escape
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
