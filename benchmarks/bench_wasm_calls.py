"""µs per call across the wasm boundary, on the stock and the fast path; prints JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_wasm_calls.py [--calls 20000] [--rounds 5]

Each figure is the best of ``--rounds`` rounds, in µs per call, for both paths
and their ratio (stock / fast):

* ``host_to_guest``: one call of a ``(i32, i32) -> i64`` export that returns at
  once (the shape of every strategy export): ``Func.__call__`` against the
  fast path's call helper. Pure boundary cost.
* ``guest_to_host``: one call from a guest loop to a ``(i32, i32) -> i64``
  host function that returns at once: ``Linker.define_func`` against
  ``fastcall.define``. Pure boundary cost.
* ``malloc_free``: the Go SMA strategy's ``malloc`` then ``free`` (two calls).
* ``host_function``: one whole host function as a strategy sees it (read the
  request, parse it, call the HostApi, serialize, guest malloc, write, and the
  free after the export returns), through ``WasmStrategy``.
* ``process_data``: one bar through the Go SMA strategy's ``process_data``
  (encode, malloc, write, call, read, free) through ``WasmStrategy``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import wasmtime
from google.protobuf.empty_pb2 import Empty

from kubetrade.runner.domain import Bar
from kubetrade.runner.strategy import HostApi, WasmStrategy, fastcall
from kubetrade.runner.strategy.abi import HOST_FUNCTIONS
from kubetrade.runner.strategy.guest import GuestCalls
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
SMA = ROOT / "strategies" / "examples" / "sma" / "sma.wasm"
I32, I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
PACKED = wasmtime.FuncType([I32, I32], [I64])
LOOPS = 100  # host calls per export call in the guest_to_host and host_function figures

BOUNDARY_WAT = """(module
  (import "env" "h" (func $h (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "f") (param i32 i32) (result i64) (i64.const 0))
  (func (export "loop") (param $n i32) (param i32) (result i64)
    (block $done (loop $again
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $h (i32.const 8) (i32.const 4)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $again)))
    (i64.const 0)))"""


def best(fn: Callable[[], object], calls: int, rounds: int, per: int = 1) -> float:
    """µs per call: the fastest of ``rounds`` rounds of ``calls`` calls of ``fn``."""
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest / (calls * per) * 1e6


def figure(stock: float, fast: float) -> dict[str, float]:
    return {"stock_us": round(stock, 3), "fast_us": round(fast, 3), "ratio": round(stock / fast, 1)}


# -- the raw boundary --------------------------------------------------------------------------


def boundary(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, bytes(wasmtime.wat2wasm(BOUNDARY_WAT)))

    def instance(fast: bool) -> tuple[wasmtime.Store, wasmtime.Instance, fastcall.Boundary]:
        store = wasmtime.Store(engine)
        linker = wasmtime.Linker(engine)
        side = fastcall.Boundary(store)
        if fast:

            def h_fast(caller: int, slots: fastcall.Slots) -> None:
                slots[0] = 0

            fastcall.define(linker, "env", "h", PACKED, side, h_fast)
        else:

            def h_stock(caller: wasmtime.Caller, ptr: int, length: int) -> int:
                return 0

            linker.define_func("env", "h", PACKED, h_stock, access_caller=True)
        return store, linker.instantiate(store, module), side

    def func(store: wasmtime.Store, inst: wasmtime.Instance, name: str) -> wasmtime.Func:
        f = inst.exports(store)[name]
        assert isinstance(f, wasmtime.Func)
        return f

    store, inst, _ = instance(fast=False)
    f, loop = func(store, inst, "f"), func(store, inst, "loop")
    stock_call = best(lambda: f(store, 3, 4), calls, rounds)
    stock_back = best(lambda: loop(store, LOOPS, 0), calls // LOOPS, rounds, LOOPS)

    store2, inst2, side = instance(fast=True)
    ctx = side.context
    fast_f = fastcall.call_i32_i32_to_i64(side, func(store2, inst2, "f"))
    fast_loop = fastcall.call_i32_i32_to_i64(side, func(store2, inst2, "loop"))
    fast_call = best(lambda: fast_f(ctx, 3, 4), calls, rounds)
    fast_back = best(lambda: fast_loop(ctx, LOOPS, 0), calls // LOOPS, rounds, LOOPS)
    return {
        "host_to_guest": figure(stock_call, fast_call),
        "guest_to_host": figure(stock_back, fast_back),
    }


# -- through WasmStrategy ----------------------------------------------------------------------


class CacheApi:
    """Answers get_cache (the host function measured) and the SMA strategy's first get_range;
    any other call is a bug here."""

    reply = pb.GetResponse(value="v" * 16)

    def get_cache(self, request: pb.GetRequest) -> pb.GetResponse:
        return self.reply

    def get_range(self, request: pb.GetRangeRequest) -> pb.GetRangeResponse:
        return pb.GetRangeResponse()

    def __getattr__(self, name: str) -> Callable[[object], Empty]:
        raise AttributeError(name)


API = cast("HostApi", CacheApi())


def host_function_guest(loops: int) -> bytes:
    """A minimal ABI guest whose process_data calls env.get_cache ``loops`` times."""
    imports = "\n".join(
        f'(import "env" "{n}" (func ${n} (param i32 i32) (result i64)))' for n in HOST_FUNCTIONS
    )
    exports = "\n".join(
        f'(func (export "trading_strategy_{n}") (param i32 i32) (result i64) (i64.const 0))'
        for n in ("initialize", "name", "get_config_schema", "get_description", "get_identifier")
    )
    return bytes(
        wasmtime.wat2wasm(
            f"""(module
  {imports}
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $live (mut i32) (i32.const 0))
  (func (export "_initialize"))
  (func (export "trading_strategy_api_version") (result i64) (i64.const 1))
  (func (export "malloc") (param $size i32) (result i32) (local $p i32)
    (if (i32.eqz (global.get $live)) (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size))
                                        (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.const 1)))))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $p))
  (func (export "free") (param i32)
    (global.set $live (i32.sub (global.get $live) (i32.const 1))))
  {exports}
  (func (export "trading_strategy_process_data") (param i32 i32) (result i64) (local $n i32)
    (local.set $n (i32.const {loops}))
    (block $done (loop $again
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $get_cache (i32.const 0) (i32.const 0)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $again)))
    (i64.const 0)))"""
        )
    )


BAR = Bar(
    symbol="BTCUSDT", time=1_700_000_000_000, open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0
)


def through_strategy(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    per_path: dict[bool, dict[str, float]] = {}
    for fast in (False, True):
        figures: dict[str, float] = {}
        with (
            WasmStrategy(host_function_guest(LOOPS), API, fast=fast) as busy,
            WasmStrategy(host_function_guest(0), API, fast=fast) as idle,
        ):
            n = max(1, calls // LOOPS)
            with_calls = best(functools.partial(busy.process_data, BAR), n, rounds)
            without = best(functools.partial(idle.process_data, BAR), n, rounds)
            figures["host_function"] = (with_calls - without) / LOOPS
        with WasmStrategy.from_file(SMA, API, fast=fast) as sma:
            sma.initialize('{"fastPeriod": 5, "slowPeriod": 20}')

            def malloc_free(calls_: GuestCalls = sma._calls) -> None:
                calls_.free(calls_.malloc(64))

            figures["malloc_free"] = best(malloc_free, calls, rounds, 2)
            # A crossover would call get_position; CacheApi refuses it, which would trap. A
            # constant close never crosses, so every bar takes the same path.
            figures["process_data"] = best(lambda: sma.process_data(BAR), calls, rounds)
        per_path[fast] = figures
    for key in per_path[True]:
        out[key] = figure(per_path[False][key], per_path[True][key])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = {
        "benchmark": "wasm_calls",
        **boundary(args.calls, args.rounds),
        **through_strategy(args.calls, args.rounds),
        "calls": args.calls,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "wasmtime": importlib.metadata.version("wasmtime"),
        "machine": platform.machine(),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
