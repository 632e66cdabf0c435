"""Hostile strategies under `kubetrade run`: every limit holds, and the runner's peak RSS stays
within the strategy's memory cap plus a fixed host overhead.

Each module here is written to make the host (not only the guest) spend: a second memory,
a growing table, one fd_write pointing 32 vectors at all of memory, host functions
called in a loop until the session's state balloons, a DuckDB query that builds a
gigabyte, megabytes of output per bar, slow host calls. Each runs as a real runner
process, with its own peak RSS read by tests/peak_rss.py.

The host overhead (``HOST_OVERHEAD_MIB``) is what a runner needs besides its strategy's
memory: the interpreter and its libraries, compiling the module (each run compiles: no
module cache), DuckDB once a strategy queries, and what the host keeps for a strategy
within its caps (``budget``: the cache up to 16 Mi characters, marks, log lines,
output). Measured on the 2-core development machine with a 64 MiB cap: 62-74 MiB for a
strategy that is refused or keeps to its caps, 98-120 MiB for the cache filler and the
DuckDB query, 129-135 MiB for one that fills its 64 MiB (about 70 MiB over the cap),
and 182 MiB to compile a module of 20,000 functions, the most a module may have (about
120 MiB over the cap, whatever the cap). The test allows 160 MiB over the cap, room for
the machine's noise and for the runner growing; before these limits the same modules
reached 471 MiB (cache), 527 MiB (marks), 629 MiB (ten memories), 2.0-2.3 GB (the
DuckDB query, fd_write, table.grow), and the log module printed 1.2 GB.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hostile import MIB, module, repeat, run, session

from kubetrade.runner.strategy.budget import MAX_LOG_BYTES_PER_CALL
from kubetrade.runner.strategy.pb import strategy_pb2 as pb
from kubetrade.runner.strategy.preflight import MAX_FUNCTIONS

CAP_MIB = 64
HOST_OVERHEAD_MIB = 160
ENGINE = f"strategyMemoryLimitMiB: {CAP_MIB}"

# Grows memory to the cap and touches every page: the guest's own share of the budget.
GREEDY = """
  (block $full (loop $more
    (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
    (br $more)))
  (memory.fill (i32.const 0) (i32.const 1) (i32.shl (memory.size) (i32.const 16)))"""


def _fd_write_iovecs(count: int, length: int) -> str:
    """One fd_write of ``count`` vectors, each all of [0, length); iovecs at 64 KiB."""
    fill = repeat(
        "(i32.store (i32.add (i32.const 65536) (i32.shl (local.get $i) (i32.const 3)))"
        " (i32.const 0))"
        "(i32.store (i32.add (i32.const 65540) (i32.shl (local.get $i) (i32.const 3)))"
        f" (i32.const {length}))",
        count,
    )
    return fill + (
        f"(drop (call $fd_write (i32.const 1) (i32.const 65536) (i32.const {count})"
        " (i32.const 131072)))"
    )


def _hoarder(name: str, request: bytes, times: int, key_at: int | None = None) -> bytes:
    """Calls env.<name> ``times`` times a bar with ``request``; ``key_at``: the offset in
    the request of 3 letters rewritten from the loop counter before each call (distinct keys)."""
    store = "".join(
        f"(i32.store8 (i32.add {{ptr:req}} (i32.const {key_at + k}))"
        f" (i32.add (i32.const 97) (i32.rem_u (i32.div_u (local.get $i) (i32.const {26**k}))"
        " (i32.const 26))))"
        for k in range(3)
        if key_at is not None
    )
    body = f"{store} (drop (call ${name} {{ptr:req}} {{len:req}}))"
    return module(data={"req": request}, process_data=repeat(body, times))


def _cache_request() -> tuple[bytes, int]:
    request = pb.SetRequest(key="k-000", value="v" * (1 << 20)).SerializeToString()
    return request, request.index(b"000")


CACHE_REQUEST, CACHE_KEY_AT = _cache_request()
BIG_TEXT = "x" * 60_000
MARK = pb.MarkRequest(mark=pb.Mark(message=BIG_TEXT)).SerializeToString()
LOG = pb.LogRequest(message=BIG_TEXT).SerializeToString()
SQL = pb.ExecuteSQLRequest(query="SELECT repeat('x', 1000000000) AS s").SerializeToString()

# name -> (module, bars, what the runner says about it)
HOSTILE: dict[str, tuple[bytes, int, str]] = {
    # The guest's whole cap, for comparison: the host's share is what is over it.
    "greedy": (module(process_data=GREEDY), 3, ""),
    # Nine more linear memories, each grown to the cap and filled (the store's memory limit
    # held for each memory alone): refused before it is instantiated.
    "more_memories": (
        module(
            memory='(memory (export "memory") 17)'
            + "".join(f"(memory $m{k} 1)" for k in range(1, 10)),
            process_data="".join(
                f"(drop (memory.grow $m{k} (i32.const 1000)))"
                f"(memory.fill $m{k} (i32.const 0) (i32.const 1)"
                f" (i32.shl (memory.size $m{k}) (i32.const 16)))"
                for k in range(1, 10)
            ),
        ),
        3,
        "declares 10 linear memories; a strategy has exactly one",
    ),
    # A table of 8M elements (64 MB) a time: table.grow fails (tables keep their size).
    "table_grow": (
        module(
            extra="(table $t 1 funcref)",
            process_data=repeat("(drop (table.grow $t (ref.null func) (i32.const 8000000)))", 12),
        ),
        3,
        "",
    ),
    # One fd_write pointing 32 times at all 16 MiB of memory: 512 MiB asked to be printed.
    "fd_write_iovecs": (
        module(
            memory='(memory (export "memory") 256)', process_data=_fd_write_iovecs(32, 16 * MIB)
        ),
        3,
        "",
    ),
    # As many functions as a module may have: compiling them is the host's to pay.
    "many_functions": (
        module(
            extra="".join(
                "(func (result i32) (i32.add (i32.const 1) (i32.const 2)))"
                for _ in range(MAX_FUNCTIONS - 100)
            )
        ),
        2,
        "",
    ),
    # Host state grown by host calls in a loop.
    "marks": (_hoarder("mark", MARK, 2000), 4, "bytes; a mark's texts may have 4096"),
    "cache": (
        _hoarder("set_cache", CACHE_REQUEST, 400, CACHE_KEY_AT),
        4,
        "strategy cache is full: its keys and values would hold more than 16777216 characters",
    ),
    "log": (_hoarder("log", LOG, 5000), 4, "more than 65536 bytes of log text"),
    # DuckDB builds a gigabyte string in one call of one function: nothing interrupts it.
    "sql_repeat": (
        _hoarder("execute_sql", SQL, 1),
        2,
        "repeat(): the result would be longer than 16777216 characters",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_strategy_keeps_the_runner_within_its_budget(tmp_path: Path, name: str) -> None:
    wasm, bars, said = HOSTILE[name]
    path = session(tmp_path, wasm, bars=bars, engine=ENGINE, name=name.replace("_", "-"))
    result = run(path)
    output = len(result.stdout) + result.stderr_bytes
    print(f"{name}: exit {result.returncode}, peak RSS {result.peak_rss_mib:.0f} MiB, "
          f"{result.seconds:.1f}s, output {output} B")  # fmt: skip
    assert result.peak_rss_mib <= CAP_MIB + HOST_OVERHEAD_MIB, (name, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    # Output stays small whatever the strategy does: the summary, one line per bar naming the
    # cap it hit, and what the strategy may log (the log module's first 60 kB line a bar).
    assert output < 5_000 + bars * MAX_LOG_BYTES_PER_CALL, result.stderr[-2000:]
    assert result.returncode == (2 if name == "more_memories" else 0), result.stderr[-2000:]
    assert said in result.stdout + result.stderr


def test_output_without_newlines_is_cut_and_rate_limited(tmp_path: Path) -> None:
    # 4 MiB of 'x' without a newline, written on each of 30 bars: 120 MiB asked for.
    wasm = module(
        memory='(memory (export "memory") 128)',
        initialize="(memory.fill (i32.const 1048576) (i32.const 120) (i32.const 4194304))",
        process_data=(
            "(i32.store (i32.const 65536) (i32.const 1048576))"
            "(i32.store (i32.const 65540) (i32.const 4194304))"
            "(drop (call $fd_write (i32.const 2) (i32.const 65536) (i32.const 1)"
            " (i32.const 131072)))"
        ),
    )
    result = run(session(tmp_path, wasm, bars=30, engine=ENGINE), "--quiet")
    assert result.returncode == 0
    # 64 Ki characters a call and a line saying what was left out, instead of 120 MiB.
    assert result.stderr_bytes < 30 * (64 * 1024 + 8 * 1024), result.stderr_bytes
    assert result.stderr.count("more characters of stderr, not shown") == 30
    longest = max(len(line) for line in result.stderr.splitlines())
    assert longest < 4096 + 200


def _slow_session(tmp_path: Path, calls: int) -> Path:
    """get_range over a 20,000-bar window (~0.1 s each), ``calls`` times in a row per bar,
    straight-line (no loop: wasm code never reaches an epoch check between the calls)."""
    request = pb.GetRangeRequest(symbol="BTCUSDT").SerializeToString()
    body = "(drop (call $get_range {ptr:req} {len:req}))" * calls
    wasm = module(data={"req": request}, process_data=body)
    engine = (
        f"{ENGINE}, marketDataCacheSize: 20000, warmupBars: 20000, strategyCallTimeoutSeconds: 1"
    )
    return session(tmp_path, wasm, bars=20_050, engine=engine, name="slow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> float:
    """Seconds until the answer (any status); inf if none came within 10 s."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10):
            pass
    except urllib.error.HTTPError:
        pass
    except OSError:
        return float("inf")
    return time.monotonic() - started


def test_slow_host_calls_are_stopped_at_the_deadline_and_healthz_and_sigterm_answer(
    tmp_path: Path,
) -> None:
    port = _free_port()
    latencies: list[float] = []
    sent: list[float] = []

    def probe(proc: subprocess.Popen[bytes]) -> None:
        # Wait until the runner is ready: its bar loop is then busy with the slow strategy.
        ready_by = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10):
                    break
            except OSError:
                assert time.monotonic() < ready_by, "the runner never became ready"
                time.sleep(0.1)
        until = time.monotonic() + 3
        while time.monotonic() < until:
            latencies.append(_get(f"http://127.0.0.1:{port}/healthz"))
            time.sleep(0.05)
        sent.append(time.monotonic())
        proc.send_signal(signal.SIGTERM)

    path = _slow_session(tmp_path, calls=60)  # ~6 s of host time per bar, at a 1 s timeout
    result = run(path, "--http-port", str(port), http=True, timeout=90, while_running=probe)
    stop_s = result.ended - sent[0]
    print(f"healthz max {max(latencies):.3f}s over {len(latencies)}, SIGTERM to exit {stop_s:.2f}s")
    assert result.returncode == 0, result.stderr[-2000:]
    # The bars were stopped at the deadline, inside a host function, and said so.
    assert "exceeded 1s and was stopped inside host function get_range" in result.stdout
    assert "spec.engine.strategyCallTimeoutSeconds" in result.stdout
    # /healthz answered while strategy calls ran.
    assert max(latencies) < 1.0, latencies
    # SIGTERM: the bar in hand ends at its deadline, then the runner exits.
    assert stop_s < 4.0
