"""A guest's stdout and stderr are bounded: cut into lines, escaped, capped per call with
the rest counted and reported; fd_write reads no more of guest memory than it prints."""

from __future__ import annotations

import logging
import time

import pytest
from hostile import module, repeat

from kubetrade.runner.domain import Bar
from kubetrade.runner.strategy import WasmStrategy
from kubetrade.runner.strategy.output import (
    MAX_OUTPUT_BYTES_PER_CALL,
    MAX_OUTPUT_LINE,
    MAX_OUTPUT_LINES_PER_CALL,
    GuestOutput,
)

BAR = Bar(symbol="BTC", time=1_704_067_200_000, open=1, high=2, low=0.5, close=1.5, volume=1)


def test_output_is_cut_into_lines_escaped_and_capped_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kubetrade.strategy")
    out = GuestOutput("s", "stdout", logging.INFO)
    out.write(b"\x1b[2K forged\rline\n" + b"\x00" * (3 * MAX_OUTPUT_LINE))
    out.write(b"y" * (4 << 20))
    assert out.room() == 0
    out.take_first()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "[s stdout] \\x1b[2K forged\\rline"
    assert all(len(line) <= MAX_OUTPUT_LINE + 20 for line in lines[:-1])
    assert sum(len(line) for line in lines[:-1]) <= MAX_OUTPUT_BYTES_PER_CALL + 20 * len(lines)
    assert "more characters of stdout, not shown" in lines[-1]
    # The next call starts a new allowance.
    caplog.clear()
    for _ in range(MAX_OUTPUT_LINES_PER_CALL + 50):
        out.write(b"ok\n")
    out.take_first()
    assert len(caplog.records) == MAX_OUTPUT_LINES_PER_CALL + 1  # and the line that says so


def test_fd_write_reads_no_more_of_guest_memory_than_it_prints(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 64 vectors, each all of the guest's 16 MiB: 1 GiB asked to be written at once (before,
    # it was read, joined and split into lines: GBs and seconds). Over 1024 vectors
    # (IOV_MAX) is EINVAL.
    count, length = 64, 16 << 20
    body = repeat(
        "(i32.store (i32.add (i32.const 65536) (i32.shl (local.get $i) (i32.const 3)))"
        " (i32.const 0))"
        "(i32.store (i32.add (i32.const 65540) (i32.shl (local.get $i) (i32.const 3)))"
        f" (i32.const {length}))",
        1025,
    ) + (
        f"(global.set $written (call $fd_write (i32.const 1) (i32.const 65536)"
        f" (i32.const {count}) (i32.const 131072)))"
        "(global.set $einval (call $fd_write (i32.const 1) (i32.const 65536)"
        " (i32.const 1025) (i32.const 196608)))"
    )
    wasm = module(
        memory='(memory (export "memory") 256)',
        process_data=body,
        extra='(global $written (export "written") (mut i32) (i32.const -1))'
        '(global $einval (export "einval") (mut i32) (i32.const -1))',
    )
    strategy = WasmStrategy(wasm, object())  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "kubetrade.strategy")
    started = time.monotonic()
    strategy.process_data(BAR)
    assert time.monotonic() - started < 1.0
    exports = strategy._instance.exports(strategy._store)
    assert exports["written"].value(strategy._store) == 0  # type: ignore[union-attr]
    assert exports["einval"].value(strategy._store) == 28  # type: ignore[union-attr]
    # "Written" (the guest must not retry), but only 64 KiB of it was read and printed.
    assert int.from_bytes(strategy._calls.read(131072, 4), "little") == count * length
    printed = sum(len(r.getMessage()) for r in caplog.records)
    assert printed < 2 * MAX_OUTPUT_BYTES_PER_CALL
    strategy.close()
