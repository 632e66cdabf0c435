"""The fast call path against the stock one: same answers, same failures, nothing leaked.

Boundary cases run on both paths with the WAT guests of test_strategy_host; whole
sessions (the hostcheck script, the SMA strategy over the sample data, a strategy
that panics and is restarted) run through the engine on both paths and must give
identical events.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import wasmtime
from helpers import FAULTY_WASM, HOSTCHECK_WASM, SAMPLE_CSV, SMA_WASM, flat_rows, write_bars
from test_strategy_host import (
    BAR,
    ORDER,
    POSITION,
    RecordingApi,
    guest,
    guest_global,
)

from kubetrade.runner import events as ev
from kubetrade.runner.engine import Engine
from kubetrade.runner.strategy import (
    SandboxLimits,
    StrategyError,
    StrategyLoadError,
    WasmStrategy,
    fastcall,
)
from kubetrade.runner.strategy.pb import strategy_pb2 as pb
from kubetrade.runner.strategy.scratch import SCRATCH_BYTES

EngineFactory = Callable[..., Engine]
PATHS = pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


# -- choosing the path ---------------------------------------------------------------------------


def test_fast_is_the_default_and_the_environment_can_choose(
    api: RecordingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBETRADE_WASM_PATH", raising=False)
    assert WasmStrategy(guest(), api).fast is True
    monkeypatch.setenv("KUBETRADE_WASM_PATH", "stock")
    assert WasmStrategy(guest(), api).fast is False
    assert WasmStrategy(guest(), api, fast=True).fast is True  # an explicit choice wins
    monkeypatch.setenv("KUBETRADE_WASM_PATH", "turbo")
    with pytest.raises(StrategyLoadError, match="KUBETRADE_WASM_PATH must be 'fast' or 'stock'"):
        WasmStrategy(guest(), api)


# -- the boundary, on both paths -----------------------------------------------------------------


@PATHS
@pytest.mark.parametrize("scratch", [0, SCRATCH_BYTES], ids=["malloc", "scratch"])
def test_messages_cross_both_ways_and_buffers_are_freed(
    api: RecordingApi, fast: bool, scratch: int
) -> None:
    call = "(local.set $r (call $get_position {ptr:req} {len:req}))"
    seen = "(global.set $seen (i32.add (global.get $seen) (i32.wrap_i64 (local.get $r))))"
    wasm = guest(
        data={
            "req": pb.GetPositionRequest(symbol="BTCUSDT").SerializeToString(),
            "order": ORDER.SerializeToString(),
        },
        bodies={
            "trading_strategy_process_data": f"{call} {seen} {call} {seen}"
            "(drop (call $place_order {ptr:order} {len:order})) (i64.const 0)"
        },
    )
    api.replies["get_position"] = POSITION
    strategy = WasmStrategy(wasm, api, fast=fast, scratch_bytes=scratch)
    for _ in range(50):
        strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 100 * len(POSITION.SerializeToString())
    assert api.requests("place_order") == [ORDER] * 50
    if scratch:
        # The request block when loading, then one block the responses are packed into.
        assert guest_global(strategy, "mallocs") == 2
        assert guest_global(strategy, "outstanding") == 2
    else:
        assert guest_global(strategy, "mallocs") == 150  # per bar: the request, two responses
        assert guest_global(strategy, "outstanding") == 0
        assert guest_global(strategy, "ptr_sum") == 0


@PATHS
def test_a_response_that_grows_guest_memory_is_written_after_the_growth(
    api: RecordingApi, fast: bool
) -> None:
    # The guest's malloc grows memory by several pages for the response: the host must look
    # the memory up again after malloc, then read it back as the guest's own result.
    wasm = guest(
        data={"key": pb.GetRequest(key="k").SerializeToString()},
        bodies={"trading_strategy_get_description": "(call $get_cache {ptr:key} {len:key})"},
    )
    big = "x" * 300_000  # the guest starts with 2 pages (128 KiB)
    api.replies["get_cache"] = pb.GetResponse(value=big)
    strategy = WasmStrategy(wasm, api, fast=fast)
    pages = strategy._memory.size(strategy._store)
    base = ctypes.addressof(strategy._memory.data_ptr(strategy._store).contents)
    assert strategy.description() == big
    assert strategy._memory.size(strategy._store) > pages + 3
    # Memory grew in place: the fast path's view of it (fastcall.RawMemory) relies on that.
    assert ctypes.addressof(strategy._memory.data_ptr(strategy._store).contents) == base


@PATHS
@pytest.mark.parametrize(
    ("ptr", "length"),
    [(-16, 8), (0, -1), (0x7FFF_FFF0, 32), (65536 * 2 - 4, 8)],
    ids=["negative-ptr", "negative-len", "huge-ptr", "straddles-end"],
)
def test_pointers_outside_guest_memory_trap_the_call(
    api: RecordingApi, fast: bool, ptr: int, length: int
) -> None:
    # i32 arguments are unsigned: a "negative" pointer must never reach host memory.
    body = f"(call $place_order (i32.const {ptr}) (i32.const {length}))"
    wasm = guest(bodies={"trading_strategy_process_data": body})
    strategy = WasmStrategy(wasm, api, fast=fast)
    with pytest.raises(StrategyError, match=r"place_order failed: IndexError: buffer .* outside"):
        strategy.process_data(BAR)
    assert api.calls == []
    assert strategy.name() == "wat-guest"  # the instance is still usable


@PATHS
def test_a_host_exception_traps_names_the_function_and_the_guest_carries_on(
    api: RecordingApi, fast: bool
) -> None:
    wasm = guest(
        data={"order": ORDER.SerializeToString()},
        bodies={
            "trading_strategy_process_data": "(drop (call $place_order {ptr:order} {len:order}))"
            "(global.set $seen (i32.add (global.get $seen) (i32.const 1))) (i64.const 0)"
        },
    )
    api.failures["place_order"] = ValueError("risk says no")
    strategy = WasmStrategy(wasm, api, fast=fast)
    with pytest.raises(StrategyError) as info:
        strategy.process_data(BAR)
    assert info.value.host_function == "place_order"
    assert info.value.trapped is True
    assert str(info.value).endswith("host function place_order failed: ValueError: risk says no")
    assert isinstance(info.value.__cause__, wasmtime.Trap)
    assert guest_global(strategy, "seen") == 0
    del api.failures["place_order"]
    strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 1


@PATHS
def test_keyboard_interrupt_in_a_host_function_is_not_turned_into_a_trap(
    api: RecordingApi, fast: bool
) -> None:
    wasm = guest(
        bodies={"trading_strategy_process_data": "(call $get_positions {ptr:name} (i32.const 0))"}
    )
    api.failures["get_positions"] = KeyboardInterrupt()  # type: ignore[assignment]
    strategy = WasmStrategy(wasm, api, fast=fast, scratch_bytes=0)
    with pytest.raises(KeyboardInterrupt):
        strategy.process_data(BAR)
    assert guest_global(strategy, "outstanding") == 0  # the request was freed on the way out
    del api.failures["get_positions"]
    strategy.process_data(BAR)


# A malloc that traps (or spins) when the host asks it for a response buffer: the guest sets
# $a to 1 just before calling the host function. It wraps the guest's own malloc, whose export
# is dropped (``omit``; the spelling "( export" survives that).
BAD_MALLOC = {
    "trap": "(if (i32.eq (global.get $a) (i32.const 1)) (then unreachable))",
    "spin": "(if (i32.eq (global.get $a) (i32.const 1)) (then (loop $l (br $l))))",
}


def malloc_guest(kind: str) -> bytes:
    return guest(
        data={"req": pb.GetPositionRequest(symbol="X").SerializeToString()},
        bodies={
            "trading_strategy_process_data": "(global.set $a (i32.const 1))"
            "(local.set $r (call $get_position {ptr:req} {len:req}))"
            "(global.set $a (i32.const 0)) (local.get $r)"
        },
        omit=("malloc",),
        extra=f"""(func ( export "malloc") (param $size i32) (result i32)
            {BAD_MALLOC[kind]} (call $malloc (local.get $size)))""",
    )


@PATHS
def test_a_guest_malloc_trap_inside_a_host_function_names_it(api: RecordingApi, fast: bool) -> None:
    api.replies["get_position"] = POSITION
    strategy = WasmStrategy(malloc_guest("trap"), api, fast=fast, scratch_bytes=0)
    with pytest.raises(StrategyError) as info:
        strategy.process_data(BAR)
    assert info.value.host_function == "get_position"
    assert "host function get_position failed: guest malloc trapped: " in str(info.value)
    assert "unreachable" in str(info.value)


@PATHS
def test_a_timeout_inside_a_nested_malloc_is_a_timeout(api: RecordingApi, fast: bool) -> None:
    api.replies["get_position"] = POSITION
    limits = SandboxLimits(call_timeout_s=0.2)
    strategy = WasmStrategy(malloc_guest("spin"), api, fast=fast, limits=limits, scratch_bytes=0)
    with pytest.raises(StrategyError, match=r"exceeded 0.2s") as info:
        strategy.process_data(BAR)
    assert info.value.host_function is None  # the interrupt kept its identity
    assert info.value.trapped is True


@PATHS
def test_exit_and_memory_cap_on_both_paths(api: RecordingApi, fast: bool) -> None:
    exiting = WasmStrategy(
        guest(
            bodies={
                "trading_strategy_process_data": "(call $proc_exit (i32.const 3)) (i64.const 0)"
            }
        ),
        api,
        fast=fast,
    )
    with pytest.raises(StrategyError, match="exited with code 3"):
        exiting.process_data(BAR)
    with pytest.raises(StrategyError, match="exited earlier with code 3"):
        exiting.process_data(BAR)

    grow = (
        "(block $done (loop $more"
        "  (br_if $done (i32.ge_u (memory.size) (i32.const 128)))"
        "  (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))"
        "  (br $more)))"
        "(i64.const 0)"
    )
    capped = WasmStrategy(
        guest(bodies={"trading_strategy_process_data": grow}),
        api,
        fast=fast,
        limits=SandboxLimits(max_memory_bytes=4 << 20),
    )
    with pytest.raises(StrategyError, match="4 MiB used of the 4 MiB allowed"):
        capped.process_data(BAR)


def test_closing_or_dropping_a_strategy_releases_its_callbacks(api: RecordingApi) -> None:
    gc.collect()
    before = fastcall.live_callbacks()
    strategy = WasmStrategy(guest(), api, fast=True)
    assert fastcall.live_callbacks() > before
    strategy.close()
    assert fastcall.live_callbacks() == before
    with pytest.raises(StrategyError, match="has been closed"):
        strategy.process_data(BAR)

    dropped = WasmStrategy(guest(), api, fast=True)
    assert fastcall.live_callbacks() > before
    del dropped
    gc.collect()
    assert fastcall.live_callbacks() == before  # wasmtime's finalizer ran


def test_a_callback_without_state_traps_instead_of_crashing(api: RecordingApi) -> None:
    wasm = guest(
        bodies={"trading_strategy_process_data": "(call $get_positions {ptr:name} (i32.const 0))"}
    )
    strategy = WasmStrategy(wasm, api, fast=True)
    fastcall.forget(strategy._path._boundary)  # type: ignore[attr-defined]
    with pytest.raises(StrategyError, match="trapped: kubetrade host function failed"):
        strategy.process_data(BAR)
    assert api.calls == []


# -- whole sessions: identical events on both paths ----------------------------------------------


async def events_on(
    path: str, spec: str, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> list[ev.Event]:
    monkeypatch.setenv("KUBETRADE_WASM_PATH", path)  # read when assemble builds the strategy
    engine = make_engine(spec)
    assert engine.strategy.fast is (path == "fast")  # type: ignore[attr-defined]
    events = [event async for event in engine.run()]
    return [
        replace(e, summary=replace(e.summary, duration_s=0.0))
        if isinstance(e, ev.EngineStopped)
        else e
        for e in events
    ]


def session(wasm: Path, data: Path, config: str, symbol: str = "BTC", warmup: int = 0) -> str:
    return f"""
    symbols: [{symbol}]
    interval: 1m
    strategy:
      path: {wasm}
      config: {config}
    marketData:
      provider: replay
      config: {{path: {data}}}
    trading:
      provider: paper
      config: {{initialCash: 10000, feeBps: 10, slippageBps: 1}}
    engine: {{warmupBars: {warmup}}}
    """


async def same_on_both_paths(
    spec: str, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> list[ev.Event]:
    stock = await events_on("stock", spec, make_engine, monkeypatch)
    fast = await events_on("fast", spec, make_engine, monkeypatch)
    assert fast == stock
    return fast


async def test_hostcheck_script_is_identical_on_both_paths(
    tmp_path: Path, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100 + i for i in range(12)]))
    events = await same_on_both_paths(
        session(HOSTCHECK_WASM, data, "{symbol: BTC}"), make_engine, monkeypatch
    )
    logs = [e for e in events if isinstance(e, ev.StrategyLog) and e.message == "check"]
    assert len(logs) > 20
    assert not [e for e in events if isinstance(e, ev.StrategyError)]


async def test_hostcheck_traps_are_identical_on_both_paths(
    tmp_path: Path, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 9))
    events = await same_on_both_paths(
        session(HOSTCHECK_WASM, data, "{symbol: BTC, mode: trap}"), make_engine, monkeypatch
    )
    errors = [e for e in events if isinstance(e, ev.StrategyError)]
    assert len(errors) == 3
    assert all("host function cancel_order failed" in e.message for e in errors)


async def test_sma_over_the_sample_data_is_identical_on_both_paths(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = session(
        SMA_WASM, SAMPLE_CSV, "{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}", "BTCUSDT", 20
    )
    events = await same_on_both_paths(spec, make_engine, monkeypatch)
    fills = [e for e in events if isinstance(e, ev.OrderFilled)]
    assert len(fills) > 100


async def test_panics_and_restarts_are_identical_on_both_paths(
    tmp_path: Path, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 7))
    events = await same_on_both_paths(
        session(FAULTY_WASM, data, "{panicEvery: 3, errorEvery: 5}"), make_engine, monkeypatch
    )
    restarts = [e for e in events if isinstance(e, ev.EngineError) and "restarted" in e.message]
    errors = [e for e in events if isinstance(e, ev.StrategyError)]
    assert restarts
    assert any("deliberate panic" in e.message for e in errors)
