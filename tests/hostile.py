"""Hostile strategies for the sandbox tests: small WAT modules that speak the plugin ABI and
then abuse it, and a way to run one under `kubetrade run` and measure what it cost.

``module()`` builds the ABI's skeleton (memory, a bump ``malloc``, ``free``, ``_initialize``,
the API version and the six TradingStrategy exports) around a ``process_data`` body. In a
body ``{ptr:x}`` and ``{len:x}`` are the address and length of data segment ``x``; every
``env`` host function is imported as ``$<name>`` and ``fd_write`` as ``$fd_write``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import wasmtime
from helpers import ROOT

from kubetrade.runner.strategy.abi import HOST_FUNCTIONS
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

KUBETRADE = Path(sys.executable).parent / "kubetrade"
DATA_BASE = 1024
MIB = 1024 * 1024

_NAME = pb.NameResponse(name="hostile").SerializeToString()


def module(
    *,
    process_data: str = "",
    data: Mapping[str, bytes] | None = None,
    memory: str = '(memory (export "memory") 17)',
    extra: str = "",
    initialize: str = "",
) -> bytes:
    """A plugin-ABI module whose ``process_data`` runs ``process_data`` and returns (0, 0).

    Memory page 0 holds the data segments, pages 1-16 are scratch for the body, and the
    bump allocator hands out memory from page 17 on, growing it as needed."""
    segments = {"name": _NAME, **(data or {})}
    offsets: dict[str, int] = {}
    cursor = DATA_BASE
    for key, blob in segments.items():
        offsets[key] = cursor
        cursor += (len(blob) + 7) & ~7
    heap = max(17 * 65536, (cursor + 65535) & ~65535)

    def expand(body: str) -> str:
        def one(match: re.Match[str]) -> str:
            kind, key = match.groups()
            return f"(i32.const {offsets[key] if kind == 'ptr' else len(segments[key])})"

        return re.sub(r"\{(ptr|len):(\w+)\}", one, body)

    imports = "\n".join(
        f'(import "env" "{n}" (func ${n} (param i32 i32) (result i64)))' for n in HOST_FUNCTIONS
    )
    datas = "\n".join(
        f'(data (i32.const {offsets[k]}) "{_wat_string(blob)}")' for k, blob in segments.items()
    )
    name_ret = (offsets["name"] << 32) | len(_NAME)
    getters = "\n".join(
        f'(func (export "trading_strategy_{g}") (param i32 i32) (result i64) (i64.const 0))'
        for g in ("initialize", "get_config_schema", "get_description", "get_identifier")
    )
    wat = f"""
(module
  {imports}
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  {memory}
  (global $heap (mut i32) (i32.const {heap}))
  (global $bar_heap (mut i32) (i32.const 0))
  (global $bar (mut i32) (i32.const 0))
  {datas}
  (func (export "_initialize") {expand(initialize)})
  (func (export "trading_strategy_api_version") (result i64) (i64.const 1))
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                                 (i32.shl (memory.size) (i32.const 16))) (i32.const 16))
                                 (i32.const 1))) (i32.const -1))
              (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "trading_strategy_name") (param i32 i32) (result i64) (i64.const {name_ret}))
  {getters}
  (func (export "trading_strategy_process_data") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $r i64)
    ;; Each bar starts allocating where the first bar did: what earlier bars were given
    ;; (host responses) is garbage by now, and the heap never outgrows one bar's needs.
    (if (i32.eqz (global.get $bar)) (then (global.set $bar_heap (global.get $heap))))
    (global.set $heap (global.get $bar_heap))
    (global.set $bar (i32.add (global.get $bar) (i32.const 1)))
    {expand(process_data)}
    (i64.const 0))
  {expand(extra)}
)"""
    return bytes(wasmtime.wat2wasm(wat))


def _wat_string(blob: bytes) -> str:
    return "".join("\\" + format(byte, "02x") for byte in blob)


def repeat(body: str, times: int) -> str:
    """``body`` in a loop, ``times`` times (the loop counter is ``$i``)."""
    return f"""
    (local.set $i (i32.const 0))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))"""


# -- running one under `kubetrade run` ---------------------------------------------------


def bars_csv(path: Path, count: int, *, symbol: str = "BTCUSDT") -> Path:
    t0 = 1_704_067_200_000
    lines = ["time,symbol,open,high,low,close,volume"]
    lines += [f"{t0 + i * 60_000},{symbol},100,103,97,{98 + i % 5},10" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def session(
    tmp: Path, wasm: bytes, *, bars: int = 5, engine: str = "", name: str = "hostile"
) -> Path:
    """A session file running ``wasm`` over ``bars`` replayed bars with the paper broker."""
    strategy = tmp / f"{name}.wasm"
    strategy.write_bytes(wasm)
    data = bars_csv(tmp / f"{name}.csv", bars)
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: {name}}}
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy: {{path: {strategy}}}
  marketData:
    provider: replay
    config: {{path: {data}}}
  trading: {{provider: paper}}
  engine: {{{engine}}}
"""
    )
    return path


@dataclass(frozen=True, slots=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    stderr_bytes: int
    peak_rss_mib: float  # the runner's own peak resident set
    seconds: float
    ended: float  # time.monotonic() when the process was reaped


def run(
    *args: str | Path,
    options: tuple[str, ...] = (),
    timeout: float = 60,
    http: bool = False,
    while_running: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> Run:
    """``kubetrade OPTIONS run ARGS`` as a real process, with its own peak RSS (through
    tests/peak_rss.py). ``while_running(proc)`` runs meanwhile (to probe it, or signal it:
    the wrapper passes SIGTERM on)."""
    # No compiled-module cache: each run pays for compiling, as a first start does.
    env = {**os.environ, "PYTHONSAFEPATH": "1", "KUBETRADE_CACHE": "off"}
    started = time.monotonic()
    # KUBETRADE_TEST_COMMAND runs another build instead (to show a test fails without a fix).
    runner = shlex.split(os.environ.get("KUBETRADE_TEST_COMMAND", "")) or [str(KUBETRADE)]
    peak_file = Path(tempfile.mkdtemp()) / "peak"
    command = [
        sys.executable, str(Path(__file__).with_name("peak_rss.py")), str(peak_file),
        *runner, *options, "run", *([] if http else ["--no-http"]), *map(str, args),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    streams: dict[str, bytes] = {}

    def drain(name: str, pipe: IO[bytes]) -> None:
        streams[name] = pipe.read()

    readers = [
        threading.Thread(target=drain, args=(name, pipe), daemon=True)
        for name, pipe in (("out", proc.stdout), ("err", proc.stderr))
        if pipe is not None
    ]
    for reader in readers:
        reader.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        if while_running is not None:
            while_running(proc)
        proc.wait()
    finally:
        killer.cancel()
    ended = time.monotonic()
    for reader in readers:
        reader.join()
    err = streams.get("err", b"")
    peak_kib = int(peak_file.read_text()) if peak_file.exists() else 0
    shutil.rmtree(peak_file.parent, ignore_errors=True)
    return Run(
        returncode=proc.returncode,
        stdout=streams.get("out", b"").decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        stderr_bytes=len(err),
        peak_rss_mib=peak_kib / 1024,  # ru_maxrss is in KiB on Linux
        seconds=ended - started,
        ended=ended,
    )
