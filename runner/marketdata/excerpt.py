"""What an error message may show of a value read from a user's file.

Error messages travel far: the console, the pod's termination message, the
session's status, which anyone who may read sessions can read. A value from a
data file is shown only when it is short (a cell such as 'abc' or a header name
such as 'close'); a long one is described by its length alone, because a long
token in the wrong file is more likely a key than a price. Control characters
never reach a terminal.
"""

from __future__ import annotations

from typing import Final

# Longer than any price, volume, symbol or time a bar file holds, shorter than the
# API keys and secrets of the venues kubetrade talks to (32 to 64 characters).
MAX_SHOWN: Final = 20


def excerpt(value: object) -> str:
    """`value` quoted, if short and printable enough to show; else its length only."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_SHOWN:
        return f"a {len(text)}-character value"
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return repr(shown) if isinstance(value, str) else shown
