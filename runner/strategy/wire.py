"""Hot-path messages as wire bytes, packed directly: the bar sent with every
ProcessData call and the Position answered to GetPosition (and GetPositions).

Both have a fixed layout, so the bytes are packed here with ``struct`` instead
of filling a protobuf message field by field and serializing it, which costs
more than the rest of the message's trip across the boundary. Unlike the
protobuf runtime this writes zero-valued doubles too: a decoder reads an
explicit zero exactly as an absent field, and the tests check that both
encodings decode to the same message.

Layouts (field numbers from strategy.proto), tags as wire bytes:
  ProcessDataRequest.data (1, LEN) = MarketData:
    symbol (1, LEN), high (2, I64), low (3, I64), open (4, I64), close (5, I64),
    volume (6, I64), time (7, LEN) = Timestamp
  Position:
    symbol (1, LEN), quantity (2, I64), total_in_quantity (3, I64),
    total_out_quantity (4, I64), total_in_amount (5, I64), total_out_amount (6, I64),
    total_in_fee (7, I64), total_out_fee (8, I64), open_timestamp (9, LEN) = Timestamp,
    strategy_name (10, LEN)
  Timestamp: seconds (1, VARINT), nanos (2, VARINT)
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, Final

from google.protobuf.message import Message

from kubetrade.runner.domain import Bar, Position
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Iterable

# high, low, open, close, volume (tag, double) and the tag of time.
_PRICES: Final = struct.Struct("<BdBdBdBdBdB")
# quantity .. total_out_fee (tag, double) and the tag of open_timestamp.
_AMOUNTS: Final = struct.Struct("<BdBdBdBdBdBdBdB")
_FIVE: Final = struct.Struct("<5B")
# The prices as in _PRICES, then the time: length 6, the seconds' tag and five varint bytes.
_WHOLE_SECOND: Final = struct.Struct("<BdBdBdBdBdBBB5B")
_U64: Final = (1 << 64) - 1


class Packed(bytes):
    """A response message already in wire bytes; ``message`` is the type it encodes.

    A host function may return one instead of the message itself (the host checks
    ``message`` against the response type the guest expects, as it checks a message).
    """

    __slots__ = ()
    message: ClassVar[type[Message]]


class PackedPosition(Packed):
    __slots__ = ()
    message = pb.Position


class PackedPositions(Packed):
    __slots__ = ()
    message = pb.GetPositionsResponse


def varint(value: int) -> bytes:
    value &= _U64  # a negative int64 takes ten bytes, two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _seconds(seconds: int) -> bytes:
    # Times from 1978 to 3058 take exactly five varint bytes: pack those in one call.
    if 0x1000_0000 <= seconds < 0x8_0000_0000:
        return _FIVE.pack(
            (seconds & 0x7F) | 0x80,
            ((seconds >> 7) & 0x7F) | 0x80,
            ((seconds >> 14) & 0x7F) | 0x80,
            ((seconds >> 21) & 0x7F) | 0x80,
            seconds >> 28,
        )
    return varint(seconds)


def _timestamp(ms: int) -> bytes:
    """A Timestamp's body, length first (at most 17 bytes: a one-byte length)."""
    seconds, ms = divmod(ms, 1000)
    stamp = b"\x08" + _seconds(seconds) if seconds else b""
    if ms:
        stamp += b"\x10" + varint(ms * 1_000_000)
    return bytes((len(stamp),)) + stamp


@lru_cache(maxsize=1024)
def _string(tag: int, text: str) -> bytes:
    raw = text.encode()
    return bytes((tag,)) + varint(len(raw)) + raw


def process_data_request(bar: Bar) -> bytes:
    """The bytes of ``ProcessDataRequest(data=MarketData(<bar>))``."""
    seconds, ms = divmod(bar.time, 1000)
    if not ms and 0x1000_0000 <= seconds < 0x8_0000_0000:
        # The usual bar: whole seconds, a five-byte varint. Its length is fixed per symbol,
        # so everything but the prices and the seconds is one cached prefix.
        return _whole_second_prefix(bar.symbol) + _WHOLE_SECOND.pack(
            0x11, bar.high, 0x19, bar.low, 0x21, bar.open, 0x29, bar.close, 0x31, bar.volume,
            0x3A, 6, 0x08,
            (seconds & 0x7F) | 0x80, ((seconds >> 7) & 0x7F) | 0x80,
            ((seconds >> 14) & 0x7F) | 0x80, ((seconds >> 21) & 0x7F) | 0x80, seconds >> 28,
        )  # fmt: skip
    body = (
        _string(0x0A, bar.symbol)
        + _PRICES.pack(
            0x11, bar.high, 0x19, bar.low, 0x21, bar.open, 0x29, bar.close, 0x31, bar.volume, 0x3A
        )
        + _timestamp(bar.time)
    )
    return b"\x0a" + varint(len(body)) + body


@lru_cache(maxsize=1024)
def _whole_second_prefix(symbol: str) -> bytes:
    field = _string(0x0A, symbol)
    return b"\x0a" + varint(len(field) + _WHOLE_SECOND.size) + field


def position(p: Position, strategy_name: str) -> PackedPosition:
    """The bytes of the ``Position`` message for ``p``, owned by ``strategy_name``."""
    amounts = _AMOUNTS.pack(
        0x11, p.quantity, 0x19, p.total_in_quantity, 0x21, p.total_out_quantity,
        0x29, p.total_in_amount, 0x31, p.total_out_amount, 0x39, p.total_in_fee,
        0x41, p.total_out_fee, 0x4A,
    )  # fmt: skip
    name = _string(0x52, strategy_name) if strategy_name else b""
    return PackedPosition(_string(0x0A, p.symbol) + amounts + _timestamp(p.open_time) + name)


def positions(held: Iterable[Position], strategy_name: str) -> PackedPositions:
    """The bytes of ``GetPositionsResponse`` listing ``held`` (field 1, each a Position)."""
    out = bytearray()
    for p in held:
        body = position(p, strategy_name)
        out += b"\x0a" + varint(len(body)) + body
    return PackedPositions(out)
