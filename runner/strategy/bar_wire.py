"""A bar as the wire bytes of ProcessDataRequest, written directly.

Every bar crosses into the strategy as a serialized ``ProcessDataRequest``
holding one ``MarketData``. Its layout is fixed, so the bytes are packed here
in one ``struct`` call instead of filling a protobuf message field by field
and serializing it, which costs more than the rest of the request's trip into
the guest. Unlike the protobuf runtime this writes zero-valued doubles too: a
decoder reads an explicit zero exactly as an absent field, and the tests check
that both encodings decode to the same message.

Layout (field numbers from strategy.proto), tags as wire bytes:
  ProcessDataRequest.data (1, LEN) = MarketData:
    symbol (1, LEN), high (2, I64), low (3, I64), open (4, I64), close (5, I64),
    volume (6, I64), time (7, LEN) = Timestamp: seconds (1, VARINT), nanos (2, VARINT)
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Final

from kubetrade.runner.domain import Bar

# high, low, open, close, volume (tag, double) and the tag of time.
_PRICES: Final = struct.Struct("<BdBdBdBdBdB")
_FIVE: Final = struct.Struct("<5B")
_U64: Final = (1 << 64) - 1


def varint(value: int) -> bytes:
    value &= _U64  # a negative int64 takes ten bytes, two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _seconds(seconds: int) -> bytes:
    # Bar times from 1978 to 3058 take exactly five varint bytes: pack those in one call.
    if 0x1000_0000 <= seconds < 0x8_0000_0000:
        return _FIVE.pack(
            (seconds & 0x7F) | 0x80,
            ((seconds >> 7) & 0x7F) | 0x80,
            ((seconds >> 14) & 0x7F) | 0x80,
            ((seconds >> 21) & 0x7F) | 0x80,
            seconds >> 28,
        )
    return varint(seconds)


@lru_cache(maxsize=1024)
def _symbol(symbol: str) -> bytes:
    raw = symbol.encode()
    return b"\x0a" + varint(len(raw)) + raw


def encode(bar: Bar) -> bytes:
    """The bytes of ``ProcessDataRequest(data=MarketData(<bar>))``."""
    seconds, ms = divmod(bar.time, 1000)
    stamp = b"\x08" + _seconds(seconds) if seconds else b""
    if ms:
        stamp += b"\x10" + varint(ms * 1_000_000)
    body = (
        _symbol(bar.symbol)
        + _PRICES.pack(
            0x11, bar.high, 0x19, bar.low, 0x21, bar.open, 0x29, bar.close, 0x31, bar.volume, 0x3A
        )
        + bytes((len(stamp),))  # at most 17 bytes: a one-byte length
        + stamp
    )
    return b"\x0a" + varint(len(body)) + body
