"""The private parts of wasmtime-py the fast call path relies on are all still there.

When a wasmtime upgrade fails this test, read kubetrade.runner.strategy.internals: it
lists each private name, what it is used for, and what to re-check.
"""

from __future__ import annotations

import ast
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import wasmtime
from helpers import ROOT
from hostile import module

from kubetrade.runner.strategy import internals
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

STRATEGY_PACKAGE = ROOT / "runner" / "strategy"


def test_every_private_name_the_fast_path_uses_is_there() -> None:
    assert internals.missing() == []


def test_live_objects_carry_the_handles_the_fast_path_copies() -> None:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(
        store,
        wasmtime.Module(engine, '(module (memory (export "m") 1) (func (export "f")))'),
        [],
    )
    exports = instance.exports(store)
    func, memory = exports["f"], exports["m"]
    assert isinstance(func, wasmtime.Func) and isinstance(memory, wasmtime.Memory)
    for cls, name in internals.INSTANCE_ATTRIBUTES:
        assert hasattr(func if cls is wasmtime.Func else memory, name), f"{cls.__name__}.{name}"
    assert internals.store_context(store) != 0
    handle = internals.memory_handle(memory)
    base = ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value
    context = internals.store_context(store)
    # A prototype of our own: setting restype on the library's attribute would change it
    # for wasmtime-py too.
    prototype = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    data = prototype(("wasmtime_memory_data", internals.library()))
    assert data(context, ctypes.addressof(handle)) == base  # the copied handle is the memory
    assert ctypes.sizeof(internals.func_handle(func)) == ctypes.sizeof(func._func)


def test_no_invariant_of_the_strategy_host_is_an_assert() -> None:
    """`python -O` drops assert statements: an invariant checked by one is not checked."""
    asserts = [
        f"{path.name}:{node.lineno}"
        for path in sorted(STRATEGY_PACKAGE.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert asserts == []


def test_the_fast_path_runs_under_python_dash_o(tmp_path: Path) -> None:
    request = pb.LogRequest(message="ok").SerializeToString()
    wasm = module(process_data="(drop (call $log {ptr:r} {len:r}))", data={"r": request})
    path = tmp_path / "s.wasm"
    path.write_bytes(wasm)
    script = f"""
from kubetrade.runner.domain import Bar
from kubetrade.runner.strategy import WasmStrategy
class Api:
    def log(self, request):
        from google.protobuf.empty_pb2 import Empty
        print("logged", request.message)
        return Empty()
s = WasmStrategy.from_file({str(path)!r}, Api(), fast=True)
s.process_data(Bar(symbol="B", time=0, open=1, high=1, low=1, close=1, volume=1))
print("fast", s.fast)
"""
    result = subprocess.run(
        [sys.executable, "-O", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["logged", "ok", "fast", "True"]
