"""WASI as the strategy sees it: bar-time clocks, sleeps in bar time, seeded randomness,
and nothing else (no files, sockets, environment or arguments); on both call paths.

The WAT guests come from test_strategy_host; each test's process_data calls the WASI
function under test and leaves what it saw in exported globals or in its memory.
"""

from __future__ import annotations

import struct
import time

import pytest
from test_strategy_host import BAR, RecordingApi, guest, guest_global

from kubetrade.runner.domain import Bar
from kubetrade.runner.strategy import WasmStrategy
from kubetrade.runner.strategy.wasi import (
    EBADF,
    EINVAL,
    RESOLUTION_NS,
    BarClock,
    SeededRandom,
    WasiHost,
)

PATHS = pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])
BAR_NS = BAR.time * 1_000_000
SECOND = 1_000_000_000

WASI = """
(import "wasi_snapshot_preview1" "clock_time_get"
  (func $clock_time_get (param i32 i64 i32) (result i32)))
(import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
(import "wasi_snapshot_preview1" "poll_oneoff"
  (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
(import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
(import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
(import "wasi_snapshot_preview1" "path_open"
  (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
(import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
"""
# i64 results the guest reports; scratch memory below the data segments (which start at 1024).
GLOBALS = """
(global $real (export "real") (mut i64) (i64.const -1))
(global $mono (export "mono") (mut i64) (i64.const -1))
(global $x (export "x") (mut i64) (i64.const -1))
"""
OUT, EVENTS, NEVENTS, RANDOM = 64, 256, 448, 512  # events: up to 6 of 32 bytes


def read_clocks(into_real: str = "$real", into_mono: str = "$mono") -> str:
    return (
        f"(global.set $a (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const {OUT})))"
        f"(global.set {into_real} (i64.load (i32.const {OUT})))"
        f"(global.set $b (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const {OUT})))"
        f"(global.set {into_mono} (i64.load (i32.const {OUT})))"
    )


def wasi_guest(
    process_data: str, *, initialize: str = "", data: dict[str, bytes] | None = None
) -> bytes:
    return guest(
        bodies={
            "trading_strategy_process_data": process_data + " (i64.const 0)",
            "trading_strategy_initialize": initialize + " (i64.const 0)",
        },
        data=data,
        extra_imports=WASI,
        extra=GLOBALS,
    )


def at(ms: int) -> Bar:
    return Bar(symbol="BTCUSDT", time=ms, open=1, high=1, low=1, close=1, volume=1)


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


# -- clocks --------------------------------------------------------------------------------------


@PATHS
def test_both_clocks_read_the_bar_time(api: RecordingApi, fast: bool) -> None:
    strategy = WasmStrategy(wasi_guest(read_clocks(), initialize=read_clocks()), api, fast=fast)
    strategy.initialize("{}")  # before the first bar: the epoch, and a monotonic clock above 0
    assert (guest_global(strategy, "a"), guest_global(strategy, "b")) == (0, 0)
    assert guest_global(strategy, "real") == 0
    assert guest_global(strategy, "mono") >= 1  # Go's runtime refuses a monotonic clock at 0
    strategy.process_data(BAR)
    assert guest_global(strategy, "real") == BAR_NS
    assert guest_global(strategy, "mono") == BAR_NS
    strategy.process_data(at(BAR.time + 60_000))
    assert guest_global(strategy, "real") == BAR_NS + 60 * SECOND


@PATHS
def test_the_monotonic_clock_never_goes_back(api: RecordingApi, fast: bool) -> None:
    strategy = WasmStrategy(wasi_guest(read_clocks()), api, fast=fast)
    strategy.process_data(at(BAR.time))
    strategy.process_data(at(BAR.time - 60_000))  # another symbol's earlier bar, say
    assert guest_global(strategy, "real") == BAR_NS - 60 * SECOND
    assert guest_global(strategy, "mono") == BAR_NS


@PATHS
def test_a_given_clock_is_what_the_guest_reads(api: RecordingApi, fast: bool) -> None:
    now = [5 * SECOND]
    strategy = WasmStrategy(wasi_guest(read_clocks()), api, fast=fast, clock=lambda: now[0])
    strategy.process_data(BAR)
    assert guest_global(strategy, "real") == 5 * SECOND
    now[0] = 7 * SECOND
    strategy.process_data(BAR)
    assert (guest_global(strategy, "real"), guest_global(strategy, "mono")) == (7 * SECOND,) * 2


@PATHS
def test_resolution_and_unknown_clocks(api: RecordingApi, fast: bool) -> None:
    body = (
        f"(global.set $a (call $clock_res_get (i32.const 1) (i32.const {OUT})))"
        f"(global.set $x (i64.load (i32.const {OUT})))"
        f"(global.set $b (call $clock_res_get (i32.const 2) (i32.const {OUT})))"
        f"(global.set $c (call $clock_time_get (i32.const 3) (i64.const 0) (i32.const {OUT})))"
    )
    strategy = WasmStrategy(wasi_guest(body), api, fast=fast)
    strategy.process_data(BAR)
    assert guest_global(strategy, "a") == 0
    assert guest_global(strategy, "x") == RESOLUTION_NS
    assert guest_global(strategy, "b") == EINVAL  # CPU-time clocks mean nothing in bar time
    assert guest_global(strategy, "c") == EINVAL


# -- poll_oneoff: sleeping in bar time ------------------------------------------------------------


def clock_subscription(
    userdata: int, clock_id: int, timeout: int, *, absolute: bool = False
) -> bytes:
    return struct.pack("<QB7xIxxxxQQH6x", userdata, 0, clock_id, timeout, 0, int(absolute))


def fd_subscription(userdata: int, tag: int, fd: int) -> bytes:
    return struct.pack("<QB7xI28x", userdata, tag, fd)


def poll(count: int) -> str:
    """Call poll_oneoff on the data segment "subs": errno in $c, the number of events in $seen."""
    return (
        f"(global.set $c (call $poll_oneoff {{ptr:subs}} (i32.const {EVENTS}) (i32.const {count})"
        f" (i32.const {NEVENTS})))"
        f"(global.set $seen (i32.load (i32.const {NEVENTS})))"
    )


def events(strategy: WasmStrategy, count: int) -> list[tuple[int, int, int]]:
    raw = strategy._memory.read(strategy._store, EVENTS, EVENTS + 32 * count)
    return [(u, e, t) for u, e, t, _, _ in struct.iter_unpack("<QHB5xQH6x", raw)]


@PATHS
def test_a_sleep_returns_at_once_and_moves_the_bar_clock(api: RecordingApi, fast: bool) -> None:
    subs = clock_subscription(7, 1, 5 * SECOND)
    strategy = WasmStrategy(
        wasi_guest(poll(1) + read_clocks(), data={"subs": subs}), api, fast=fast
    )
    started = time.monotonic()
    strategy.process_data(BAR)
    assert time.monotonic() - started < 1  # no real waiting
    assert (guest_global(strategy, "c"), guest_global(strategy, "seen")) == (0, 1)
    assert events(strategy, 1) == [(7, 0, 0)]
    assert guest_global(strategy, "real") == BAR_NS + 5 * SECOND
    assert guest_global(strategy, "mono") == BAR_NS + 5 * SECOND
    strategy.process_data(at(BAR.time + 60_000))  # the next bar: the clock is that bar's again
    assert guest_global(strategy, "real") == BAR_NS + 65 * SECOND


@PATHS
def test_the_earliest_deadline_wins_and_absolute_deadlines_count(
    api: RecordingApi, fast: bool
) -> None:
    subs = clock_subscription(1, 1, 9 * SECOND) + clock_subscription(
        2, 0, BAR_NS + 2 * SECOND, absolute=True
    )
    strategy = WasmStrategy(
        wasi_guest(poll(2) + read_clocks(), data={"subs": subs}), api, fast=fast
    )
    strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 1
    assert events(strategy, 1) == [(2, 0, 0)]
    assert guest_global(strategy, "real") == BAR_NS + 2 * SECOND


@PATHS
def test_a_deadline_already_past_returns_without_moving_time(api: RecordingApi, fast: bool) -> None:
    subs = clock_subscription(1, 1, 9 * SECOND) + clock_subscription(
        2, 0, BAR_NS - SECOND, absolute=True
    )
    strategy = WasmStrategy(
        wasi_guest(poll(2) + read_clocks(), data={"subs": subs}), api, fast=fast
    )
    strategy.process_data(BAR)
    assert events(strategy, guest_global(strategy, "seen")) == [(2, 0, 0)]
    assert guest_global(strategy, "real") == BAR_NS


@PATHS
def test_descriptors_answer_at_once_without_moving_time(api: RecordingApi, fast: bool) -> None:
    subs = (
        clock_subscription(1, 1, 9 * SECOND)
        + fd_subscription(2, 2, 1)  # stdout is always writable
        + fd_subscription(3, 1, 3)  # no such descriptor
        + fd_subscription(4, 1, 0)  # stdin: nothing to wait for either
    )
    strategy = WasmStrategy(
        wasi_guest(poll(4) + read_clocks(), data={"subs": subs}), api, fast=fast
    )
    strategy.process_data(BAR)
    assert guest_global(strategy, "seen") == 3
    assert events(strategy, 3) == [(2, 0, 2), (3, EBADF, 1), (4, EBADF, 1)]
    assert guest_global(strategy, "real") == BAR_NS


@PATHS
def test_no_subscriptions_is_invalid(api: RecordingApi, fast: bool) -> None:
    strategy = WasmStrategy(wasi_guest(poll(0), data={"subs": b"\0" * 8}), api, fast=fast)
    strategy.process_data(BAR)
    assert guest_global(strategy, "c") == EINVAL


# -- randomness ------------------------------------------------------------------------------------

RANDOM_BODY = f"(global.set $a (call $random_get (i32.const {RANDOM}) (i32.const 48)))"


def random_bytes(strategy: WasmStrategy) -> bytes:
    strategy.process_data(BAR)
    assert guest_global(strategy, "a") == 0
    return bytes(strategy._memory.read(strategy._store, RANDOM, RANDOM + 48))


@PATHS
def test_random_get_is_seeded_from_the_session(api: RecordingApi, fast: bool) -> None:
    wasm = wasi_guest(RANDOM_BODY)
    first = random_bytes(WasmStrategy(wasm, api, session="s1", fast=fast))
    assert random_bytes(WasmStrategy(wasm, api, session="s1", fast=not fast)) == first
    assert random_bytes(WasmStrategy(wasm, api, session="s2", fast=fast)) != first
    assert len(set(first)) > 16  # not a constant
    seeded = WasmStrategy(wasm, api, random_seed=b"seed", fast=fast)
    assert random_bytes(seeded) == SeededRandom(b"seed").read(48)
    assert random_bytes(seeded) == SeededRandom(b"seed").read(96)[48:]  # one stream


def test_the_random_stream_does_not_depend_on_how_it_is_read() -> None:
    whole = SeededRandom(b"k").read(1000)
    parts = SeededRandom(b"k")
    assert b"".join(parts.read(n) for n in (1, 63, 64, 0, 200, 672)) == whole


@PATHS
def test_random_get_outside_memory_is_efault(api: RecordingApi, fast: bool) -> None:
    body = "(global.set $a (call $random_get (i32.const 131000) (i32.const 4096)))"
    strategy = WasmStrategy(wasi_guest(body), api, fast=fast)
    strategy.process_data(BAR)
    assert guest_global(strategy, "a") == 21  # EFAULT


# -- nothing else ----------------------------------------------------------------------------------


@PATHS
def test_no_files_no_sockets_and_an_empty_stdin(api: RecordingApi, fast: bool) -> None:
    body = (
        # path_open relative to fd 3, the first preopen a WASI program would look for
        "(global.set $a (call $path_open (i32.const 3) (i32.const 0) {ptr:path} {len:path}"
        f" (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const {OUT})))"
        f"(global.set $b (call $sock_accept (i32.const 3) (i32.const 0) (i32.const {OUT})))"
        # read stdin into a 16-byte buffer: end of file at once
        f"(i32.store (i32.const {OUT}) (i32.const 600)) (i32.store (i32.const {OUT + 4})"
        " (i32.const 16))"
        f"(global.set $c (call $fd_read (i32.const 0) (i32.const {OUT}) (i32.const 1)"
        f" (i32.const {OUT + 8})))"
        f"(global.set $x (i64.extend_i32_u (i32.load (i32.const {OUT + 8}))))"
        f"(global.set $seen (call $fd_write (i32.const 3) (i32.const {OUT}) (i32.const 1)"
        f" (i32.const {OUT + 8})))"
    )
    strategy = WasmStrategy(wasi_guest(body, data={"path": b"etc/passwd"}), api, fast=fast)
    strategy.process_data(BAR)
    assert guest_global(strategy, "a") == EBADF
    assert guest_global(strategy, "b") == EBADF
    assert guest_global(strategy, "c") == 0
    assert guest_global(strategy, "x") == 0  # no bytes
    assert guest_global(strategy, "seen") == EBADF  # only stdout and stderr can be written


# -- the clock on its own --------------------------------------------------------------------------


class Memory:
    """A flat guest memory for WasiHost without a wasm instance."""

    def __init__(self, size: int = 4096) -> None:
        self.data = bytearray(size)

    def read(self, ptr: int, length: int) -> bytes:
        if ptr + length > len(self.data):
            raise IndexError(ptr)
        return bytes(self.data[ptr : ptr + length])

    def write(self, ptr: int, data: bytes) -> None:
        if ptr + len(data) > len(self.data):
            raise IndexError(ptr)
        self.data[ptr : ptr + len(data)] = data


def test_sleeping_on_a_monotonic_clock_held_above_the_bar_time() -> None:
    clock = BarClock()
    clock.bar_ns = 100
    assert clock.monotonic() == 100
    clock.bar_ns = 40  # an earlier bar: realtime goes back, monotonic holds
    assert (clock.realtime(), clock.monotonic()) == (40, 100)
    clock.advance_to(1, 130)  # sleep until monotonic 130
    assert (clock.realtime(), clock.monotonic()) == (130, 130)
    clock.bar_ns = 200
    assert (clock.realtime(), clock.monotonic()) == (200, 200)


def test_wasi_host_writes_the_clock_and_refuses_bad_pointers() -> None:
    clock = BarClock(lambda: 42)
    host = WasiHost(clock=clock, random=SeededRandom(b""), outputs={})
    memory = Memory()
    assert host.call("clock_time_get", memory, (0, 0, 8)) == 0
    assert struct.unpack_from("<Q", memory.data, 8) == (42,)
    assert host.call("clock_time_get", memory, (0, 0, 4095)) == 21  # EFAULT
    assert host.call("fd_write", memory, (1, 0, 0, 0)) == EBADF  # no outputs here
