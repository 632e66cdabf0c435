"""Modules are read before they are compiled: too big, too many functions or sections, a
second memory or table, features the sandbox does not bound, or not the plugin ABI, and
they are refused at once, without compiling (seconds, gigabytes) or caching anything."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import wasmtime
from helpers import ROOT
from hostile import module

from kubetrade.runner.strategy import (
    SandboxLimits,
    StrategyLoadError,
    WasmStrategy,
    modules,
    preflight,
)
from kubetrade.runner.strategy.api import DISPATCH

GO_STRATEGIES = sorted((ROOT / "strategies").rglob("*.wasm"))


class NoApi:
    """Host functions are never reached: these modules are refused while loading."""


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _section(section_id: int, body: bytes) -> bytes:
    return bytes([section_id]) + _uleb(len(body)) + body


def many_functions(count: int) -> bytes:
    """A module of ``count`` empty functions, written directly in the binary format (as
    WAT it would take wat2wasm longer than the test): types, functions, code."""
    types = _section(1, _uleb(1) + b"\x60\x00\x00")
    functions = _section(3, _uleb(count) + b"\x00" * count)
    code = _section(10, _uleb(count) + b"\x02\x00\x0b" * count)
    return b"\x00asm\x01\x00\x00\x00" + types + functions + code


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("KUBETRADE_CACHE", str(directory))
    return directory


def _refused(wasm: bytes, match: str, **kw: object) -> float:
    started = time.monotonic()
    with pytest.raises(StrategyLoadError, match=match):
        WasmStrategy(wasm, NoApi(), **kw)  # type: ignore[arg-type]
    return time.monotonic() - started


def test_a_module_of_200k_functions_is_refused_before_compiling(cache_dir: Path) -> None:
    # Accepted before, after 9-23 s and 1.27 GB of compiling (cached first, refused after).
    seconds = _refused(many_functions(200_000), "200000 functions; a strategy may have 20000")
    assert seconds < 1.0
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.cwasm"))


def test_a_module_over_the_size_cap_is_refused_before_reading_it(cache_dir: Path) -> None:
    wasm = b"\x00asm\x01\x00\x00\x00" + _section(0, b"\x04name" + bytes(33 * 1024 * 1024))
    assert _refused(wasm, r"may be at most 33554432 bytes \(32 MiB\)") < 1.0
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.cwasm"))


@pytest.mark.parametrize(
    ("memory", "reason"),
    [
        ('(memory (export "memory") 17) (memory $two 1)', "2 linear memories"),
        ('(memory (export "memory") i64 17)', "64-bit memory"),
        ('(memory (export "memory") 17 100 shared)', "shared memory"),
    ],
)
def test_memories_the_budget_cannot_bound_are_refused(
    cache_dir: Path, memory: str, reason: str
) -> None:
    _refused(module(memory=memory), reason)


def test_a_second_table_or_a_huge_one_is_refused(cache_dir: Path) -> None:
    _refused(module(extra="(table 1 funcref) (table 1 funcref)"), "2 tables")
    _refused(module(extra="(table 2000000 funcref)"), "table of 2000000 elements")


def test_the_abi_is_checked_before_compiling(cache_dir: Path) -> None:
    wasm = module().replace(b"trading_strategy_process_data", b"trading_strategy_process_date")
    _refused(wasm, "missing export 'trading_strategy_process_data'")
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.cwasm"))


def test_the_table_counts_into_the_memory_budget_and_cannot_grow() -> None:
    # 200,000 elements take 1,600,000 bytes: 25 pages, with the memory's 17 more than the
    # 32 pages of a 2 MiB budget.
    wasm = module(
        memory='(memory (export "memory") 17)',
        extra="(table $t 200000 funcref)"
        '(func (export "grow_table") (result i32)'
        " (table.grow $t (ref.null func) (i32.const 1000)))",
    )
    _refused(wasm, "more than spec.engine.strategyMemoryLimitMiB", limits=SandboxLimits(2 << 20))
    strategy = WasmStrategy(wasm, NoApi(), limits=SandboxLimits(4 << 20))  # type: ignore[arg-type]
    grow = strategy._instance.exports(strategy._store)["grow_table"]
    assert isinstance(grow, wasmtime.Func)
    assert grow(strategy._store) == -1  # table.grow fails: the table keeps its declared size
    # The memory may grow to what the table leaves: 4 MiB less 25 pages.
    memory = strategy._memory
    pages = memory.size(strategy._store)  # 17, or a few more: the host malloc'd at load
    assert memory.grow(strategy._store, 64 - 25 - pages) == pages
    with pytest.raises(wasmtime.WasmtimeError):
        memory.grow(strategy._store, 1)


@pytest.mark.parametrize("path", GO_STRATEGIES, ids=lambda p: p.name)
def test_the_preflight_reads_go_strategies_as_wasmtime_does(path: Path) -> None:
    wasm = path.read_bytes()
    shape = preflight.read_shape(wasm)
    assert preflight.abi_problems(shape, host_functions=frozenset(DISPATCH)) == []
    compiled = modules.native_code(modules.shared_engine(), wasm)  # cached machine code

    def text(ty: object) -> str:
        if isinstance(ty, wasmtime.FuncType):
            params = ", ".join(str(t) for t in ty.params)
            return f"({params}) -> ({', '.join(str(t) for t in ty.results)})"
        return "memory" if isinstance(ty, wasmtime.MemoryType) else type(ty).__name__

    assert shape.exports == {e.name: text(e.type) for e in compiled.exports}
    assert shape.imports == [(i.module, i.name, text(i.type)) for i in compiled.imports]
    assert 1_000 < shape.functions < preflight.MAX_FUNCTIONS / 5
    assert shape.memories == 1 and shape.tables == 1
