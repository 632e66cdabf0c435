"""The argo-trading plugin ABI, version 1: names, constants and the packed-result format.

A strategy is a WASI preview 1 reactor built with knqyf263/go-plugin conventions.
Every call passes one serialized protobuf message as (ptr, len) in the callee's
linear memory and returns one i64 packed as ``(ptr << 32) | len``. Bit 31 of
``len`` marks the bytes as a UTF-8 error string instead of a message.

This module is pure (no wasmtime): the host and the tests share it.
"""

from __future__ import annotations

from typing import Final, NamedTuple

#: The only ABI version this host speaks; a guest reporting another is refused.
API_VERSION: Final = 1

#: Bit 31 of the packed length: the bytes are an error string, not a message.
ERROR_BIT: Final = 1 << 31
_U32: Final = 0xFFFF_FFFF

# -- guest exports ---------------------------------------------------------------------------

INITIALIZE_REACTOR: Final = "_initialize"  # the WASI reactor's constructor, called once
MEMORY: Final = "memory"
MALLOC: Final = "malloc"  # (i32 size) -> i32 ptr
FREE: Final = "free"  # (i32 ptr) -> ()
API_VERSION_EXPORT: Final = "trading_strategy_api_version"  # () -> i64
ENGINE_VERSION_EXPORT: Final = "trading_strategy_engine_version"  # () -> i64 packed, optional

# The TradingStrategy service, one export per method, each (i32 ptr, i32 len) -> i64.
INITIALIZE: Final = "trading_strategy_initialize"
PROCESS_DATA: Final = "trading_strategy_process_data"
NAME: Final = "trading_strategy_name"
GET_CONFIG_SCHEMA: Final = "trading_strategy_get_config_schema"
GET_DESCRIPTION: Final = "trading_strategy_get_description"
GET_IDENTIFIER: Final = "trading_strategy_get_identifier"

STRATEGY_EXPORTS: Final = (
    INITIALIZE,
    PROCESS_DATA,
    NAME,
    GET_CONFIG_SCHEMA,
    GET_DESCRIPTION,
    GET_IDENTIFIER,
)

# -- host imports ----------------------------------------------------------------------------

#: The module name every host function is imported from.
HOST_MODULE: Final = "env"
#: WASI preview 1: the only other module a strategy may import from (functions only).
WASI_MODULE: Final = "wasi_snapshot_preview1"

#: The StrategyApi service, one import per method, each (i32 ptr, i32 len) -> i64.
HOST_FUNCTIONS: Final = (
    "get_range",
    "read_last_data",
    "execute_sql",
    "count",
    "configure_indicator",
    "get_signal",
    "get_cache",
    "set_cache",
    "place_order",
    "place_multiple_orders",
    "get_positions",
    "get_position",
    "cancel_order",
    "cancel_all_orders",
    "get_order_status",
    "get_account_info",
    "get_open_orders",
    "get_trades",
    "mark",
    "get_markers",
    "log",
)


class Packed(NamedTuple):
    """One unpacked i64 result: where the bytes are and whether they are an error string."""

    ptr: int
    length: int
    is_error: bool


def pack(ptr: int, length: int, *, is_error: bool = False) -> int:
    """Pack a guest buffer into the i64 the ABI returns (as a signed value, like wasm's i64)."""
    if not 0 <= ptr <= _U32:
        raise ValueError(f"pointer {ptr} does not fit in 32 bits")
    if not 0 <= length < ERROR_BIT:
        raise ValueError(f"length {length} does not fit in 31 bits")
    raw = (ptr << 32) | length | (ERROR_BIT if is_error else 0)
    return to_i64(raw)


def unpack(value: int) -> Packed:
    """Split a packed i64 (signed or unsigned) into pointer, length and the error flag."""
    raw = value & 0xFFFF_FFFF_FFFF_FFFF  # wasmtime hands i64 back signed
    length = raw & _U32
    return Packed(ptr=raw >> 32, length=length & ~ERROR_BIT, is_error=bool(length & ERROR_BIT))


def to_i64(raw: int) -> int:
    """Reinterpret an unsigned 64-bit value as the signed i64 wasmtime expects back."""
    return raw - (1 << 64) if raw >= 1 << 63 else raw
