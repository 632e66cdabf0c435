"""The wasmtime host against small WAT guests that speak the same ABI as go-plugin strategies.

Each guest exports memory, a counting bump ``malloc``/``free``, ``_initialize``, the API
version and the six TradingStrategy exports, and imports every host function from ``env``.
Tests change single export bodies; in a body ``$ptr``/``$len`` are the request buffer and
``{ptr:x}``, ``{len:x}``, ``{ret:x}``, ``{err:x}`` refer to a data segment ``x``.
The last tests load real Go strategies built by strategies/build.sh.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import pytest
import wasmtime
from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp

from kubetrade.runner.domain import Bar
from kubetrade.runner.strategy import (
    SandboxLimits,
    StrategyError,
    StrategyLoadError,
    WasmStrategy,
    wire,
)
from kubetrade.runner.strategy.abi import HOST_FUNCTIONS
from kubetrade.runner.strategy.pb import strategy_pb2 as pb
from kubetrade.runner.strategy.scratch import SCRATCH_BYTES, ResponseArena, Scratch

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from google.protobuf.message import Message

M = TypeVar("M", bound="Message")

DATA_BASE = 1024
HEAP_BASE = 65536  # page 1 onwards; page 0 holds data segments
BAR = Bar(
    symbol="BTCUSDT", time=1_700_000_000_123, open=1.5, high=2.5, low=0.5, close=2.0, volume=42.0
)
BAR_TIME = "2023-11-14T22:13:20Z"

STATIC = {
    "name": pb.NameResponse(name="wat-guest").SerializeToString(),
    "identifier": pb.GetIdentifierResponse(identifier="io.kubetrade.tests.wat").SerializeToString(),
    "description": pb.GetDescriptionResponse(description="a guest in WAT").SerializeToString(),
    "schema": pb.GetConfigSchemaResponse(schema='{"type":"object"}').SerializeToString(),
}
DEFAULT_BODIES = {
    "trading_strategy_initialize": "(i64.const 0)",
    "trading_strategy_process_data": "(i64.const 0)",
    "trading_strategy_name": "{ret:name}",
    "trading_strategy_get_identifier": "{ret:identifier}",
    "trading_strategy_get_description": "{ret:description}",
    "trading_strategy_get_config_schema": "{ret:schema}",
}


def guest(
    *,
    bodies: Mapping[str, str] | None = None,
    data: Mapping[str, bytes] | None = None,
    api_version: int = 1,
    initialize: str = "",
    omit: Collection[str] = (),
    extra: str = "",
    extra_imports: str = "",
) -> bytes:
    segments = {**STATIC, **(data or {})}
    offsets: dict[str, int] = {}
    cursor = DATA_BASE
    for key, blob in segments.items():
        offsets[key] = cursor
        cursor += (len(blob) + 7) & ~7
    assert cursor < HEAP_BASE

    def expand(body: str) -> str:
        def one(match: re.Match[str]) -> str:
            kind, key = match.groups()
            ptr, length = offsets[key], len(segments[key])
            return {
                "ptr": f"(i32.const {ptr})",
                "len": f"(i32.const {length})",
                "ret": f"(i64.const {(ptr << 32) | length})",
                "err": f"(i64.const {(ptr << 32) | length | (1 << 31)})",
            }[kind]

        return re.sub(r"\{(ptr|len|ret|err):(\w+)\}", one, body)

    all_bodies = {**DEFAULT_BODIES, **(bodies or {})}
    imports = "\n".join(
        f'(import "env" "{n}" (func ${n} (param i32 i32) (result i64)))' for n in HOST_FUNCTIONS
    )
    exports = "\n".join(
        f'(func (export "{name}") (param $ptr i32) (param $len i32) (result i64)\n'
        f"  (local $r i64)\n  (global.set $calls (i32.add (global.get $calls) (i32.const 1)))\n"
        f"  {expand(body)})"
        for name, body in all_bodies.items()
    )
    datas = "\n".join(
        f'(data (i32.const {offsets[k]}) "{_wat_string(blob)}")' for k, blob in segments.items()
    )
    wat = f"""
(module
  {imports}
  {extra_imports}
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $fd_prestat_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const {HEAP_BASE}))
  (global $mallocs (export "mallocs") (mut i32) (i32.const 0))
  (global $frees (export "frees") (mut i32) (i32.const 0))
  (global $outstanding (export "outstanding") (mut i32) (i32.const 0))
  (global $ptr_sum (export "ptr_sum") (mut i64) (i64.const 0))
  (global $last_freed (export "last_freed") (mut i32) (i32.const -1))
  (global $inits (export "inits") (mut i32) (i32.const 0))
  (global $calls (export "calls") (mut i32) (i32.const 0))
  (global $seen (export "seen") (mut i32) (i32.const 0))
  (global $a (export "a") (mut i32) (i32.const -1))
  (global $b (export "b") (mut i32) (i32.const -1))
  (global $c (export "c") (mut i32) (i32.const -1))
  {datas}
  (func (export "_initialize")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    {initialize})
  (func (export "trading_strategy_api_version") (result i64) (i64.const {api_version}))
  ;; A bump allocator that counts; it restarts once everything it handed out is freed.
  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (if (i32.eqz (global.get $outstanding)) (then (global.set $heap (i32.const {HEAP_BASE}))))
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                                                                  (local.get $have))
                                                         (i32.const 16))
                                              (i32.const 1)))
                        (i32.const -1))
              (then unreachable))))
    (global.set $heap (local.get $end))
    (global.set $mallocs (i32.add (global.get $mallocs) (i32.const 1)))
    (global.set $outstanding (i32.add (global.get $outstanding) (i32.const 1)))
    (global.set $ptr_sum (i64.add (global.get $ptr_sum) (i64.extend_i32_u (local.get $p))))
    (local.get $p))
  ;; Like go-plugin's free, pointers it never handed out (static data) are ignored.
  (func (export "free") (param $p i32)
    (global.set $last_freed (local.get $p))
    (if (i32.ge_u (local.get $p) (i32.const {HEAP_BASE}))
      (then
        (global.set $frees (i32.add (global.get $frees) (i32.const 1)))
        (global.set $outstanding (i32.sub (global.get $outstanding) (i32.const 1)))
        (global.set $ptr_sum (i64.sub (global.get $ptr_sum)
                                      (i64.extend_i32_u (local.get $p)))))))
  {exports}
  {expand(extra)}
)"""
    for name in omit:  # keep the function, drop only its export
        wat = wat.replace(f'(export "{name}")', "")
    return bytes(wasmtime.wat2wasm(wat))


def _wat_string(blob: bytes) -> str:
    return "".join("\\" + format(byte, "02x") for byte in blob)


def guest_global(strategy: WasmStrategy, name: str) -> int:
    """Read one of the guest's bookkeeping globals (test-only peek at the instance)."""
    item = strategy._instance.exports(strategy._store)[name]
    assert isinstance(item, wasmtime.Global)
    return int(item.value(strategy._store))


class RecordingApi:
    """A HostApi that records every request and answers with defaults, replies or failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message]] = []
        self.replies: dict[str, Message | wire.Packed] = {}
        self.failures: dict[str, Exception] = {}

    def requests(self, name: str) -> list[Message]:
        return [request for called, request in self.calls if called == name]

    def _on(self, name: str, request: Message, default: M) -> M:
        self.calls.append((name, request))
        if name in self.failures:
            raise self.failures[name]
        return cast("M", self.replies.get(name, default))

    def get_range(self, request: pb.GetRangeRequest) -> pb.GetRangeResponse:
        return self._on("get_range", request, pb.GetRangeResponse())

    def read_last_data(self, request: pb.ReadLastDataRequest) -> pb.MarketData:
        return self._on("read_last_data", request, pb.MarketData())

    def execute_sql(self, request: pb.ExecuteSQLRequest) -> pb.ExecuteSQLResponse:
        return self._on("execute_sql", request, pb.ExecuteSQLResponse())

    def count(self, request: pb.CountRequest) -> pb.CountResponse:
        return self._on("count", request, pb.CountResponse())

    def configure_indicator(self, request: pb.ConfigureRequest) -> Empty:
        return self._on("configure_indicator", request, Empty())

    def get_signal(self, request: pb.GetSignalRequest) -> pb.GetSignalResponse:
        return self._on("get_signal", request, pb.GetSignalResponse())

    def get_cache(self, request: pb.GetRequest) -> pb.GetResponse:
        return self._on("get_cache", request, pb.GetResponse())

    def set_cache(self, request: pb.SetRequest) -> Empty:
        return self._on("set_cache", request, Empty())

    def place_order(self, request: pb.ExecuteOrder) -> Empty:
        return self._on("place_order", request, Empty())

    def place_multiple_orders(self, request: pb.PlaceMultipleOrdersRequest) -> Empty:
        return self._on("place_multiple_orders", request, Empty())

    def get_positions(self, request: Empty) -> pb.GetPositionsResponse:
        return self._on("get_positions", request, pb.GetPositionsResponse())

    def get_position(self, request: pb.GetPositionRequest) -> pb.Position:
        return self._on("get_position", request, pb.Position())

    def cancel_order(self, request: pb.CancelOrderRequest) -> Empty:
        return self._on("cancel_order", request, Empty())

    def cancel_all_orders(self, request: Empty) -> Empty:
        return self._on("cancel_all_orders", request, Empty())

    def get_order_status(self, request: pb.GetOrderStatusRequest) -> pb.GetOrderStatusResponse:
        return self._on("get_order_status", request, pb.GetOrderStatusResponse())

    def get_account_info(self, request: Empty) -> pb.AccountInfo:
        return self._on("get_account_info", request, pb.AccountInfo())

    def get_open_orders(self, request: Empty) -> pb.GetOpenOrdersResponse:
        return self._on("get_open_orders", request, pb.GetOpenOrdersResponse())

    def get_trades(self, request: pb.GetTradesRequest) -> pb.GetTradesResponse:
        return self._on("get_trades", request, pb.GetTradesResponse())

    def mark(self, request: pb.MarkRequest) -> Empty:
        return self._on("mark", request, Empty())

    def get_markers(self, request: Empty) -> pb.GetMarkersResponse:
        return self._on("get_markers", request, pb.GetMarkersResponse())

    def log(self, request: pb.LogRequest) -> Empty:
        return self._on("log", request, Empty())


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


ORDER = pb.ExecuteOrder(
    id="o-1",
    symbol="BTCUSDT",
    side=pb.PURCHASE_TYPE_SELL,
    order_type=pb.ORDER_TYPE_LIMIT,
    reason=pb.Reason(reason="strategy", message="cross down"),
    price=101.25,
    quantity=0.5,
    strategy_name="wat",
    position_type=pb.POSITION_TYPE_LONG,
)
POSITION = pb.Position(
    symbol="BTCUSDT",
    quantity=1.5,
    total_in_amount=150.0,
    open_timestamp=Timestamp(seconds=1_700_000_000),
)


# -- loading -----------------------------------------------------------------------------------


def test_loads_and_answers_the_getters(api: RecordingApi) -> None:
    strategy = WasmStrategy(guest(), api, session="s1")
    assert guest_global(strategy, "inits") == 1  # the reactor's _initialize ran exactly once
    assert strategy.name() == "wat-guest"
    assert strategy.identifier() == "io.kubetrade.tests.wat"
    assert strategy.description() == "a guest in WAT"
    assert strategy.config_schema() == '{"type":"object"}'
    assert strategy.engine_version == ""
    # The host frees the result buffer it read (go-plugin convention): the last one was the schema.
    assert guest_global(strategy, "last_freed") == DATA_BASE + sum(
        (len(STATIC[k]) + 7) & ~7 for k in ("name", "identifier", "description")
    )
    assert api.calls == []


def test_reads_the_optional_engine_version(api: RecordingApi) -> None:
    wasm = guest(
        data={"version": b"argo-sdk 1.4.2"},
        extra='(func (export "trading_strategy_engine_version") (result i64) {ret:version})',
    )
    strategy = WasmStrategy(wasm, api)
    assert strategy.engine_version == "argo-sdk 1.4.2"
    assert guest_global(strategy, "last_freed") != -1  # the host freed the version buffer


def test_refuses_another_api_version(api: RecordingApi) -> None:
    with pytest.raises(
        StrategyLoadError,
        match=r"ABI version 2, but this runner speaks only "
        r"version 1.*GOOS=wasip1",
    ):
        WasmStrategy(guest(api_version=2), api)


def test_refuses_missing_exports(api: RecordingApi) -> None:
    wasm = guest(omit=("trading_strategy_process_data", "free"))
    with pytest.raises(StrategyLoadError) as info:
        WasmStrategy(wasm, api)
    assert "missing export 'trading_strategy_process_data'" in str(info.value)
    assert "missing export 'free'" in str(info.value)


def test_refuses_unknown_host_imports(api: RecordingApi) -> None:
    wasm = guest(
        extra_imports='(import "env" "launch_missiles" (func (param i32 i32) (result i64)))'
    )
    with pytest.raises(StrategyLoadError, match=r"unknown host function env\.launch_missiles"):
        WasmStrategy(wasm, api)


def test_refuses_bytes_that_are_not_wasm(api: RecordingApi) -> None:
    with pytest.raises(StrategyLoadError, match="not a valid WebAssembly module"):
        WasmStrategy(b"\x00asm but not really", api)


def test_reports_a_trap_in_initialize_reactor(api: RecordingApi) -> None:
    with pytest.raises(StrategyLoadError, match=r"_initialize failed: .*unreachable"):
        WasmStrategy(guest(initialize="unreachable"), api)


def test_from_file(tmp_path: Path, api: RecordingApi) -> None:
    path = tmp_path / "s.wasm"
    path.write_bytes(guest())
    assert WasmStrategy.from_file(path, api, session="f").name() == "wat-guest"
    with pytest.raises(StrategyLoadError, match="cannot read strategy module"):
        WasmStrategy.from_file(tmp_path / "absent.wasm", api)


# -- calls and host functions ------------------------------------------------------------------


def test_process_data_sends_the_bar(api: RecordingApi) -> None:
    # ProcessDataRequest{data=1} and MarkRequest{market_data=1} share a wire shape, so the
    # guest forwards its input to env.mark and the host parses it back.
    wasm = guest(
        bodies={"trading_strategy_process_data": "(call $mark (local.get $ptr) (local.get $len))"}
    )
    strategy = WasmStrategy(wasm, api, scratch_bytes=0)
    strategy.process_data(BAR)
    (request,) = api.requests("mark")
    assert isinstance(request, pb.MarkRequest)
    assert request.market_data == pb.MarketData(
        symbol="BTCUSDT",
        open=1.5,
        high=2.5,
        low=0.5,
        close=2.0,
        volume=42.0,
        time=Timestamp(seconds=1_700_000_000, nanos=123_000_000),
    )
    # One malloc for the request, none for the Empty response, and the request was freed.
    assert guest_global(strategy, "mallocs") == 1
    assert guest_global(strategy, "outstanding") == 0


def test_host_function_receives_the_guests_message(api: RecordingApi) -> None:
    wasm = guest(
        data={"order": ORDER.SerializeToString()},
        bodies={
            "trading_strategy_process_data": (
                "(drop (call $place_order {ptr:order} {len:order})) (i64.const 0)"
            )
        },
    )
    WasmStrategy(wasm, api).process_data(BAR)
    assert api.requests("place_order") == [ORDER]


def test_host_response_is_written_into_guest_memory(api: RecordingApi) -> None:
    # InitializeRequest{config=1} reads as GetRequest{key=1}; GetResponse{value=1} reads as
    # GetDescriptionResponse{description=1}: the guest forwards both ways unchanged.
    wasm = guest(
        data={"key": pb.GetRequest(key="description").SerializeToString()},
        bodies={
            "trading_strategy_initialize": (
                "(drop (call $get_cache (local.get $ptr) (local.get $len))) (i64.const 0)"
            ),
            "trading_strategy_get_description": "(call $get_cache {ptr:key} {len:key})",
        },
    )
    api.replies["get_cache"] = pb.GetResponse(value="from the host ✓")
    strategy = WasmStrategy(wasm, api, scratch_bytes=0)
    strategy.initialize('{"period": 14}')
    assert strategy.description() == "from the host ✓"
    assert api.requests("get_cache") == [
        pb.GetRequest(key='{"period": 14}'),
        pb.GetRequest(key="description"),
    ]
    # initialize: request + response; description: response (returned as the result, freed once).
    assert guest_global(strategy, "mallocs") == 3
    assert guest_global(strategy, "frees") == 3
    assert guest_global(strategy, "ptr_sum") == 0


def three_positions_guest() -> bytes:
    """process_data calls get_position three times; global `seen` sums the response lengths."""
    call = "(local.set $r (call $get_position {ptr:req} {len:req}))"
    seen = "(global.set $seen (i32.add (global.get $seen) (i32.wrap_i64 (local.get $r))))"
    return guest(
        data={"req": pb.GetPositionRequest(symbol="BTCUSDT").SerializeToString()},
        bodies={"trading_strategy_process_data": f"{call} {seen} " * 3 + "(i64.const 0)"},
    )


def test_host_response_buffers_are_freed_after_each_call(api: RecordingApi) -> None:
    # A go-plugin guest never frees what the host malloc'd for a host function's response;
    # the host frees those after the export returns.
    wasm = three_positions_guest()
    api.replies["get_position"] = POSITION
    strategy = WasmStrategy(wasm, api, scratch_bytes=0)
    strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 3 * len(POSITION.SerializeToString())
    assert guest_global(strategy, "mallocs") == 4  # the request and three responses
    assert guest_global(strategy, "frees") == 4
    assert guest_global(strategy, "ptr_sum") == 0  # exactly the pointers handed out
    pages = strategy._memory.size(strategy._store)
    for _ in range(200):
        strategy.process_data(BAR)
    assert guest_global(strategy, "outstanding") == 0
    assert strategy._memory.size(strategy._store) == pages


def test_requests_and_responses_reuse_guest_blocks(api: RecordingApi) -> None:
    # By default the host mallocs one block when the module loads and writes every export's
    # request there, and packs responses into a block of their own: no malloc or free per bar.
    wasm = three_positions_guest()
    api.replies["get_position"] = POSITION
    strategy = WasmStrategy(wasm, api)
    bars = 100  # 300 responses fit in one block
    assert bars * 3 * ((len(POSITION.SerializeToString()) + 7) & -8) < SCRATCH_BYTES - 8
    for _ in range(bars):
        strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == bars * 3 * len(POSITION.SerializeToString())
    assert api.requests("get_position") == [pb.GetPositionRequest(symbol="BTCUSDT")] * 300
    assert guest_global(strategy, "mallocs") == 2  # the request block, one response block
    assert guest_global(strategy, "frees") == 0


def test_full_response_blocks_are_replaced_and_freed_after_the_call(api: RecordingApi) -> None:
    wasm = three_positions_guest()
    api.replies["get_position"] = POSITION
    size = 256
    per_block = (size - 8) // ((len(POSITION.SerializeToString()) + 7) & -8)
    strategy = WasmStrategy(wasm, api, scratch_bytes=size)
    for _ in range(200):
        strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 200 * 3 * len(POSITION.SerializeToString())
    blocks = -(-600 // per_block)
    assert guest_global(strategy, "mallocs") == 1 + blocks
    # Freed one call after they filled up: all but the one in use and any filled last call.
    waiting = len(strategy._host.arena.aging)
    assert guest_global(strategy, "frees") == blocks - 1 - waiting
    assert guest_global(strategy, "outstanding") == 2 + waiting


def test_no_message_sits_at_a_blocks_own_address() -> None:
    # A guest that frees what it receives must never be able to free a whole block.
    blocks = iter([1_000, 5_000])
    arena = ResponseArena(64)
    taken = [arena.take(8, lambda size: next(blocks)) for _ in range(8)]
    assert 1_000 not in taken and 5_000 not in taken
    assert arena.retired == [1_000]
    request = Scratch(base=9_000, capacity=128)
    assert request.place(100) not in (0, 9_000) and request.place(121) == 0


def test_requests_too_big_for_the_scratch_block_are_malloced_and_freed(api: RecordingApi) -> None:
    wasm = three_positions_guest()
    api.replies["get_position"] = POSITION
    strategy = WasmStrategy(wasm, api, scratch_bytes=16)  # a bar's request takes ~70 bytes
    for _ in range(10):
        strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 10 * 3 * len(POSITION.SerializeToString())
    # The block, then per bar the request and three responses, each freed after its bar.
    assert guest_global(strategy, "mallocs") == 1 + 10 * 4
    assert guest_global(strategy, "outstanding") == 1


def test_a_result_inside_the_scratch_block_is_never_freed(api: RecordingApi) -> None:
    # The guest returns its own request (which lives in the block) as its result: the host
    # reads it but must not free a piece of the block.
    echo = (
        "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))"
        " (i64.extend_i32_u (local.get $len)))"
    )
    strategy = WasmStrategy(guest(bodies={"trading_strategy_initialize": echo}), api)
    for _ in range(3):
        strategy.initialize('{"period": 14}')
    assert guest_global(strategy, "mallocs") == 1
    assert guest_global(strategy, "frees") == 0
    assert guest_global(strategy, "last_freed") == -1


def test_a_result_inside_a_response_block_is_never_freed(api: RecordingApi) -> None:
    # The guest returns the host's response (which lives in a response block) as its result.
    wasm = guest(
        data={"key": pb.GetRequest(key="description").SerializeToString()},
        bodies={"trading_strategy_get_description": "(call $get_cache {ptr:key} {len:key})"},
    )
    api.replies["get_cache"] = pb.GetResponse(value="from the block")
    strategy = WasmStrategy(wasm, api)
    for _ in range(3):
        assert strategy.description() == "from the block"
    assert guest_global(strategy, "mallocs") == 2
    assert guest_global(strategy, "frees") == 0


def test_a_response_is_not_rewritten_by_later_calls(api: RecordingApi) -> None:
    # A goroutine that outlives its export call may read a host response only when it
    # resumes, in a later call (go-plugin guests never free responses). The host must not
    # reuse a response's memory for another call's messages: here the guest keeps the first
    # response's address and reads its third byte before and after the next bar's call.
    third = "(i32.load8_u offset=2 (global.get $a))"
    kept = "(i32.ne (global.get $a) (i32.const -1))"
    body = (
        f"(if {kept} (then (global.set $b {third})))"
        "(local.set $r (call $get_cache {ptr:req} {len:req}))"
        f"(if {kept} (then (global.set $c {third})))"
        f"(if (i32.eqz {kept}) (then (global.set $a"
        " (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))))"
        "(i64.const 0)"
    )
    wasm = guest(
        data={"req": pb.GetRequest(key="k").SerializeToString()},
        bodies={"trading_strategy_process_data": body},
    )
    strategy = WasmStrategy(wasm, api)
    api.replies["get_cache"] = pb.GetResponse(value="first")
    strategy.process_data(BAR)
    api.replies["get_cache"] = pb.GetResponse(value="second")
    strategy.process_data(replace(BAR, time=BAR.time + 60_000))
    assert (guest_global(strategy, "b"), guest_global(strategy, "c")) == (ord("f"), ord("f"))


def test_a_malloc_that_answers_outside_memory_is_refused_at_load(api: RecordingApi) -> None:
    # ("( export" survives omit=, which drops the stock malloc's export.)
    broken = '(func ( export "malloc") (param i32) (result i32) (i32.const 0x7fff0000))'
    with pytest.raises(
        StrategyLoadError, match=rf"malloc\({SCRATCH_BYTES}\) returned 2147418112, but"
    ):
        WasmStrategy(guest(omit=("malloc",), extra=broken), api)


def test_a_malloc_that_returns_0_leaves_the_scratch_block_out(api: RecordingApi) -> None:
    # Every message then takes the ABI's own path, which reports the guest's 0 per message.
    null = '(func ( export "malloc") (param i32) (result i32) (i32.const 0))'
    strategy = WasmStrategy(guest(omit=("malloc",), extra=null), api)
    with pytest.raises(StrategyError, match=r"malloc\(\d+\) returned 0"):
        strategy.process_data(BAR)


def test_error_string_becomes_strategy_error(api: RecordingApi) -> None:
    wasm = guest(
        data={"bad": b"config: period must be > 0"},
        bodies={"trading_strategy_initialize": "{err:bad}"},
    )
    strategy = WasmStrategy(wasm, api, scratch_bytes=0)
    with pytest.raises(StrategyError) as info:
        strategy.initialize('{"period": 0}')
    assert str(info.value) == "trading_strategy_initialize failed: config: period must be > 0"
    assert info.value.call == "trading_strategy_initialize"
    assert info.value.trapped is False
    assert guest_global(strategy, "outstanding") == 0  # the request buffer was freed too


def test_host_exception_traps_and_the_instance_carries_on(api: RecordingApi) -> None:
    wasm = guest(
        data={
            "order": ORDER.SerializeToString(),
            "req": pb.GetPositionRequest(symbol="BTCUSDT").SerializeToString(),
        },
        bodies={
            "trading_strategy_process_data": "(drop (call $get_position {ptr:req} {len:req}))"
            "(drop (call $place_order {ptr:order} {len:order}))"
            "(global.set $seen (i32.const 1))"
            "(i64.const 0)"
        },
    )
    api.replies["get_position"] = POSITION
    api.failures["place_order"] = RuntimeError("broker unreachable")
    strategy = WasmStrategy(wasm, api, session="s1", scratch_bytes=0)
    with pytest.raises(StrategyError) as info:
        strategy.process_data(BAR)
    error = info.value
    assert error.trapped is True
    assert error.host_function == "place_order"
    assert error.call == "trading_strategy_process_data"
    assert str(error) == (
        f"trading_strategy_process_data on BTCUSDT bar {BAR_TIME} aborted: "
        "host function place_order failed: RuntimeError: broker unreachable"
    )
    assert guest_global(strategy, "seen") == 0  # the trap stopped the guest mid-call
    # The request and the get_position response were freed despite the trap.
    assert guest_global(strategy, "mallocs") == 2
    assert guest_global(strategy, "outstanding") == 0

    del api.failures["place_order"]
    strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 1
    assert guest_global(strategy, "inits") == 1  # same instance, not re-instantiated
    assert guest_global(strategy, "calls") == 2
    assert api.requests("place_order") == [ORDER, ORDER]


def test_handler_returning_the_wrong_message_traps(api: RecordingApi) -> None:
    wasm = guest(
        data={"req": pb.GetPositionRequest(symbol="X").SerializeToString()},
        bodies={"trading_strategy_process_data": "(call $get_position {ptr:req} {len:req})"},
    )
    api.replies["get_position"] = pb.GetResponse(value="oops")
    with pytest.raises(
        StrategyError,
        match=r"host function get_position failed: TypeError: "
        r"get_position\(\) returned GetResponse, "
        r"expected Position",
    ):
        WasmStrategy(wasm, api).process_data(BAR)


class PackedGetResponse(wire.Packed):
    __slots__ = ()
    message = pb.GetResponse


def test_a_packed_response_reaches_the_guest_as_is_and_must_be_the_right_type(
    api: RecordingApi,
) -> None:
    # get_description forwards what get_cache answered (GetResponse{value=1} reads as
    # GetDescriptionResponse{description=1}).
    wasm = guest(
        data={"key": pb.GetRequest(key="k").SerializeToString()},
        bodies={"trading_strategy_get_description": "(call $get_cache {ptr:key} {len:key})"},
    )
    api.replies["get_cache"] = PackedGetResponse(pb.GetResponse(value="packed").SerializeToString())
    strategy = WasmStrategy(wasm, api)
    assert strategy.description() == "packed"
    # Bytes that claim to be another message are refused like a wrong message.
    api.replies["get_cache"] = wire.PackedPosition(b"")
    with pytest.raises(
        StrategyError,
        match=r"host function get_cache failed: TypeError: "
        r"get_cache\(\) returned PackedPosition, expected GetResponse",
    ):
        strategy.description()


def test_unparseable_request_traps_with_the_message_type(api: RecordingApi) -> None:
    wasm = guest(
        data={"junk": b"\xff\xff\xff"},
        bodies={"trading_strategy_process_data": "(call $place_order {ptr:junk} {len:junk})"},
    )
    with pytest.raises(StrategyError, match=r"place_order failed: cannot parse ExecuteOrder"):
        WasmStrategy(wasm, api).process_data(BAR)
    assert api.calls == []


def test_out_of_bounds_result_is_reported(api: RecordingApi) -> None:
    wasm = guest(bodies={"trading_strategy_name": f"(i64.const {(0xFFFF_0000 << 32) | 16})"})
    with pytest.raises(StrategyError, match=r"trading_strategy_name passed a bad buffer: .*out"):
        WasmStrategy(wasm, api).name()


# -- sandbox -----------------------------------------------------------------------------------


def test_endless_loop_is_interrupted_and_the_next_call_works(api: RecordingApi) -> None:
    wasm = guest(
        bodies={
            "trading_strategy_process_data": "(if (i32.eq (global.get $calls) (i32.const 1))"
            "  (then (loop $spin (br $spin))))"
            "(i64.const 0)"
        }
    )
    strategy = WasmStrategy(wasm, api, limits=SandboxLimits(call_timeout_s=0.2), scratch_bytes=0)
    started = time.monotonic()
    with pytest.raises(
        StrategyError,
        match=r"strategy call trading_strategy_process_data on "
        r"BTCUSDT bar .* exceeded 0.2s",
    ) as info:
        strategy.process_data(BAR)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5
    assert info.value.trapped is True
    strategy.process_data(BAR)  # the deadline is renewed per call
    assert guest_global(strategy, "calls") == 2
    assert guest_global(strategy, "outstanding") == 0


GROW_TO_8_MIB = (
    "(block $done (loop $more"
    "  (br_if $done (i32.ge_u (memory.size) (i32.const 128)))"
    "  (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))"
    "  (br $more)))"
    "(i64.const 0)"
)


def test_memory_growth_beyond_the_cap_fails_the_call(api: RecordingApi) -> None:
    wasm = guest(bodies={"trading_strategy_process_data": GROW_TO_8_MIB})
    capped = WasmStrategy(wasm, api, limits=SandboxLimits(max_memory_bytes=4 * 1024 * 1024))
    with pytest.raises(StrategyError) as info:
        capped.process_data(BAR)
    assert info.value.trapped is True
    assert "unreachable" in str(info.value)
    assert "4 MiB used of the 4 MiB allowed by spec.engine.strategyMemoryLimitMiB" in str(
        info.value
    )
    assert capped._memory.data_len(capped._store) == 4 * 1024 * 1024

    roomy = WasmStrategy(wasm, api, limits=SandboxLimits(max_memory_bytes=16 * 1024 * 1024))
    roomy.process_data(BAR)
    assert roomy._memory.data_len(roomy._store) == 8 * 1024 * 1024


def test_module_needing_more_memory_than_the_cap_is_refused(api: RecordingApi) -> None:
    wasm = guest()  # two pages of initial memory
    with pytest.raises(StrategyLoadError, match=r"more than spec\.engine\.strategyMemoryLimitMiB"):
        WasmStrategy(wasm, api, limits=SandboxLimits(max_memory_bytes=65536))


PROBE_WASI = " ".join(
    [
        "(drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))",
        "(global.set $a (i32.load (i32.const 0)))",
        "(drop (call $args_sizes_get (i32.const 0) (i32.const 4)))",
        "(global.set $b (i32.load (i32.const 0)))",
        "(global.set $c (call $fd_prestat_get (i32.const 3) (i32.const 0)))",
        "(i64.const 0)",
    ]
)


def test_wasi_gives_no_environment_arguments_or_directories(api: RecordingApi) -> None:
    wasm = guest(bodies={"trading_strategy_process_data": PROBE_WASI})
    strategy = WasmStrategy(wasm, api)
    strategy.process_data(BAR)
    assert guest_global(strategy, "a") == 0  # environment variables
    assert guest_global(strategy, "b") == 0  # arguments
    assert guest_global(strategy, "c") == 8  # EBADF: fd 3 is not a preopened directory


def write(fd: int, key: str) -> str:
    return (
        f"(i32.store (i32.const 0) {{ptr:{key}}}) (i32.store (i32.const 4) {{len:{key}}})"
        f"(drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))"
    )


def test_guest_output_goes_to_logging(api: RecordingApi, caplog: pytest.LogCaptureFixture) -> None:
    wasm = guest(
        data={"out": b"hello from wasm\npartial line", "err": b"panic: oops\n"},
        bodies={"trading_strategy_name": f"{write(1, 'out')} {write(2, 'err')} {{ret:name}}"},
    )
    strategy = WasmStrategy(wasm, api, session="sess-1")
    with caplog.at_level(logging.INFO, logger="kubetrade.strategy"):
        assert strategy.name() == "wat-guest"
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("kubetrade.strategy", logging.INFO, "[sess-1 stdout] hello from wasm") in records
    assert ("kubetrade.strategy", logging.INFO, "[sess-1 stdout] partial line") in records
    assert ("kubetrade.strategy", logging.WARNING, "[sess-1 stderr] panic: oops") in records


def test_exit_makes_the_strategy_unusable(api: RecordingApi) -> None:
    wasm = guest(
        bodies={"trading_strategy_process_data": "(call $proc_exit (i32.const 2)) (i64.const 0)"}
    )
    strategy = WasmStrategy(wasm, api)
    with pytest.raises(StrategyError, match="exited with code 2") as info:
        strategy.process_data(BAR)
    assert info.value.trapped is True
    with pytest.raises(StrategyError, match="exited earlier with code 2"):
        strategy.name()


def test_close_releases_the_instance(api: RecordingApi) -> None:
    with WasmStrategy(guest(), api) as strategy:
        assert strategy.name() == "wat-guest"
    with pytest.raises(StrategyError, match="has been closed"):
        strategy.name()
    strategy.close()  # idempotent


# -- real go-plugin strategies (built by strategies/build.sh) -----------------------------------

STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"
FAULTY = STRATEGIES / "testdata" / "faulty" / "faulty.wasm"
HOSTCHECK = STRATEGIES / "examples" / "hostcheck" / "hostcheck.wasm"


def log_fields(api: RecordingApi) -> list[dict[str, str]]:
    return [dict(r.fields) for r in api.requests("log") if isinstance(r, pb.LogRequest)]


def test_go_strategy_errors_timeouts_and_carries_on(api: RecordingApi) -> None:
    strategy = WasmStrategy.from_file(FAULTY, api, limits=SandboxLimits(call_timeout_s=0.5))
    assert strategy.name() == "faulty"
    assert strategy.identifier() == "io.kubetrade.testdata.faulty"
    with pytest.raises(StrategyError, match="deliberate init error") as info:
        strategy.initialize('{"initError": true}')
    assert info.value.trapped is False
    strategy.initialize('{"errorEvery": 2, "loopOnBar": 3}')

    strategy.process_data(BAR)  # bar 1 logs through the log host function
    assert log_fields(api) == [{"step": "ok", "bar": "1"}]
    with pytest.raises(
        StrategyError,
        match=f"process_data on BTCUSDT bar {BAR_TIME} failed: deliberate error on bar 2$",
    ):
        strategy.process_data(BAR)
    with pytest.raises(StrategyError, match=r"exceeded 0.5s") as info:
        strategy.process_data(BAR)  # bar 3 spins forever
    assert info.value.trapped is True
    # Same instance: the Go global bar counter went on to 4 (re-instantiating would reset it).
    with pytest.raises(StrategyError, match=r"deliberate error on bar 4$"):
        strategy.process_data(BAR)
    strategy.process_data(BAR)
    assert log_fields(api)[-1] == {"step": "ok", "bar": "5"}


def test_go_panic_and_out_of_memory_quote_the_runtime(api: RecordingApi) -> None:
    panicky = WasmStrategy.from_file(FAULTY, api)
    panicky.initialize('{"panicEvery": 1}')
    with pytest.raises(StrategyError, match="its stderr began: panic: deliberate panic on bar 1"):
        panicky.process_data(BAR)

    greedy = WasmStrategy.from_file(FAULTY, api, limits=SandboxLimits(max_memory_bytes=64 << 20))
    greedy.initialize('{"allocOnBar": 1}')
    with pytest.raises(StrategyError) as info:
        greedy.process_data(BAR)
    assert "its stderr began: runtime: out of memory" in str(info.value)
    assert "of the 64 MiB allowed by spec.engine.strategyMemoryLimitMiB" in str(info.value)


class CachingApi(RecordingApi):
    """hostcheck keeps its bar counter in the strategy cache and cancels an unknown order."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[str, str] = {}
        self.failures["cancel_order"] = KeyError("unknown order no-such-order")

    def get_cache(self, request: pb.GetRequest) -> pb.GetResponse:
        super().get_cache(request)
        return pb.GetResponse(value=self.cache.get(request.key, ""))

    def set_cache(self, request: pb.SetRequest) -> Empty:
        self.cache[request.key] = request.value
        return super().set_cache(request)


def test_go_strategy_trapped_by_a_host_function_carries_on() -> None:
    api = CachingApi()
    strategy = WasmStrategy.from_file(HOSTCHECK, api, session="hc")
    strategy.initialize('{"symbol": "BTCUSDT", "mode": "trap"}')
    strategy.process_data(BAR)
    strategy.process_data(BAR)
    with pytest.raises(StrategyError) as info:
        strategy.process_data(BAR)  # bar 3 cancels an unknown order: the host traps
    assert info.value.host_function == "cancel_order"
    assert "host function cancel_order failed: KeyError: 'unknown order no-such-order'" in str(
        info.value
    )
    strategy.process_data(BAR)
    assert [f["bar"] for f in log_fields(api) if f["step"] == "alive"] == ["1", "2", "4"]
    assert "trap.survived" not in {f["step"] for f in log_fields(api)}
