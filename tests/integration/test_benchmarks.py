"""Every benchmark still runs and prints the figures its README promises.

Speed is never asserted here (figures depend on the machine); this only keeps
the benchmarks from rotting: each runs briefly, as `scripts/bench.sh` would
run it, and must print one JSON object with its key figures, non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# Each benchmark with short settings and the figures (dotted paths) it must report.
CASES: dict[str, tuple[list[str], list[str]]] = {
    "bench_engine": (["--bars", "2000", "--runs", "1"], ["bars_per_s", "per_bar_us.p50"]),
    "bench_journal": (
        # The baseline: the runner before the session core, from this repository's history,
        # run as it was (the benchmark refuses a mix with this checkout's modules).
        ["--bars", "2000", "--runs", "1", "--baseline", "ee2f5dd", "--baseline-bars", "200"],
        [
            "journaled_bars_per_s",
            "no_state_dir_bars_per_s",
            "journaled_vs_no_state",
            "baseline.journaled_bars_per_s",
            "speedup_vs_baseline",
        ],
    ),
    "bench_latency": (
        ["--bars", "2000", "--runs", "1"],
        ["fast.p50_us", "stock.p99_us", "guest_floor.p50_us"],
    ),
    "bench_operator_scale": (
        # A real API server and two operator candidates: five sessions, a short steady
        # phase, and the leader killed at the end (takeover takes the chart's 15 s lease).
        [
            "--sessions",
            "5",
            "--namespaces",
            "1",
            "--singles",
            "2",
            "--single-interval",
            "0.2",
            "--steady-seconds",
            "5",
            "--settle-seconds",
            "1",
            "--timeout",
            "120",
        ],
        [
            "create.to_pod_created_s.p50",
            "rollout.all_running_s",
            "operator_rss_mb_peak",
            "failover.takeover_s",
            "failover.every_session_looked_at_s",
        ],
    ),
    "bench_replay": (["--seconds", "0.2"], ["replay_bars_per_s", "synthetic_bars_per_s"]),
    "bench_wasm_calls": (
        ["--calls", "200", "--rounds", "1"],
        ["host_to_guest.ratio", "guest_to_host.fast_us", "process_data.fast_us"],
    ),
    "bench_ws_ingest": (
        ["--seconds", "0.2", "--symbols", "1", "--runs", "1"],
        ["binance.engine_bars_per_s", "polygon.provider_frames_per_s"],
    ),
}


def figure(result: dict[str, Any], dotted: str) -> Any:
    value: Any = result
    for key in dotted.split("."):
        value = value[key]
    return value


def test_every_benchmark_is_covered() -> None:
    assert {p.stem for p in BENCHMARKS.glob("bench_*.py")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_and_reports(name: str) -> None:
    args, figures = CASES[name]
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert isinstance(result, dict) and result
    for dotted in figures:
        assert figure(result, dotted) > 0, dotted
