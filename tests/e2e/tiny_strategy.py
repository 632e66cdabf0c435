"""A strategy small enough for a ConfigMap: a few hundred bytes of WebAssembly from WAT.

The Go strategies in strategies/ are 4.2-4.6 MB, over the 1 MiB a ConfigMap (any object)
may hold, so e2e tests that mount a strategy from a ConfigMap use this one. It speaks ABI
version 1 (memory, malloc/free, _initialize, the six trading_strategy_* exports), answers
the metadata calls and does nothing on each bar, or, with trap_on_bar, traps on every bar
(a strategy version that must be rolled back).
"""

from __future__ import annotations

import wasmtime

from kubetrade.runner.strategy.pb import strategy_pb2 as pb

_DATA_BASE = 1024
_HEAP_BASE = 65536  # page 0 holds the answers, the bump allocator hands out page 1 onwards


def tiny_strategy_wasm(name: str = "tiny", *, trap_on_bar: bool = False) -> bytes:
    answers = {
        "trading_strategy_name": pb.NameResponse(name=name).SerializeToString(),
        "trading_strategy_get_identifier": pb.GetIdentifierResponse(
            identifier=f"io.kubetrade.e2e.{name}"
        ).SerializeToString(),
        "trading_strategy_get_description": pb.GetDescriptionResponse(
            description="does nothing, in a few hundred bytes"
        ).SerializeToString(),
        "trading_strategy_get_config_schema": pb.GetConfigSchemaResponse(
            schema='{"type":"object"}'
        ).SerializeToString(),
    }
    data, funcs, offset = [], [], _DATA_BASE
    for export, blob in answers.items():
        escaped = "".join(f"\\{byte:02x}" for byte in blob)
        data.append(f'(data (i32.const {offset}) "{escaped}")')
        # go-plugin packs (pointer << 32 | length) into one i64.
        funcs.append(
            f'(func (export "{export}") (param i32 i32) (result i64)'
            f" (i64.const {(offset << 32) | len(blob)}))"
        )
        offset += (len(blob) + 7) & ~7
    wat = f"""
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const {_HEAP_BASE}))
  {" ".join(data)}
  (func (export "_initialize"))
  (func (export "trading_strategy_api_version") (result i64) (i64.const 1))
  ;; A bump allocator that grows memory as needed and never frees: a test runs few bars.
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                                          (i32.shl (memory.size) (i32.const 16)))
                                        (i32.const 16)) (i32.const 1))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "trading_strategy_initialize") (param i32 i32) (result i64) (i64.const 0))
  (func (export "trading_strategy_process_data") (param i32 i32) (result i64)
    {"unreachable" if trap_on_bar else "(i64.const 0)"})
  {" ".join(funcs)}
)"""
    return bytes(wasmtime.wat2wasm(wat))
