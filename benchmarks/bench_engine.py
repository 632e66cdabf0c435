"""End-to-end replay throughput and per-bar latency of the engine; prints JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_engine.py [--bars 20000] [--runs 3]

Runs the example SMA strategy (compiled Go, in the wasm sandbox) over replayed
bars (a CSV of seeded synthetic bars written first) with the paper broker, as
`kubetrade run` would, and reports bars/s for the whole run (best of N, from
engine start to stop) and, from one more run, the distribution of time spent
per bar inside the engine (broker step, window, strategy call, order
submission).

``--journal`` runs each time with a fresh state directory, as `kubetrade run
--state-dir` does: the journal (one transaction, and its fsync, per bar, with
the epoch check that fences a stale runner) and the durable paper venue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import load_session
from kubetrade.runner.engine import Engine
from kubetrade.runner.marketdata.synthetic import SyntheticProvider

ROOT = Path(__file__).resolve().parents[1]
SMA = ROOT / "strategies" / "examples" / "sma" / "sma.wasm"


def write_bars(path: Path, bars: int) -> None:
    """Seeded synthetic bars as a replay file (generating them is not what is measured)."""

    async def generate() -> list[str]:
        provider = SyntheticProvider(
            symbols=["BTCUSDT"], interval_ms=60_000, seed=7, start_price=60_000,
            volatility=0.001, bars=bars, start_time_ms=1_704_067_200_000,
        )  # fmt: skip
        rows = ["time,symbol,open,high,low,close,volume"]
        async for b in provider.stream():
            rows.append(f"{b.time},{b.symbol},{b.open},{b.high},{b.low},{b.close},{b.volume}")
        return rows

    path.write_text("\n".join(asyncio.run(generate())) + "\n")


def session(directory: Path, bars: int) -> Path:
    data = directory / "bars.csv"
    write_bars(data, bars)
    path = directory / "bench.yaml"
    path.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: bench}}
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy:
    path: {SMA}
    config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.01}}
  marketData:
    provider: replay
    config: {{path: {data}}}
  trading:
    provider: paper
    config: {{initialCash: 1000000, feeBps: 1}}
"""
    )
    return path


async def run_once(engine: Engine, per_bar: list[float] | None) -> tuple[float, ev.Summary]:
    """The run's wall time and summary; with ``per_bar``, also each bar's time in it (the
    timing itself costs about 0.3 µs a bar, so throughput runs go without)."""
    if per_bar is not None:
        on_bar = engine._on_bar  # time the per-bar work, not the event plumbing around it

        async def timed(bar):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            out = await on_bar(bar)
            per_bar.append(time.perf_counter() - start)
            return out

        engine._on_bar = timed  # type: ignore[method-assign]
    start = time.perf_counter()
    summary = None
    async for event in engine.run():
        if isinstance(event, ev.EngineStopped):
            summary = event.summary
    assert summary is not None
    return time.perf_counter() - start, summary


def percentiles_us(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and max of durations given in seconds, in µs."""
    us = sorted(x * 1e6 for x in seconds)
    return {
        "p50": round(statistics.median(us), 1),
        "p99": round(us[int(len(us) * 0.99)], 1),
        "max": round(us[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--journal", action="store_true", help="keep a journal, as --state-dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = session(Path(tmp), args.bars)
        runs = iter(range(args.runs + 1))

        def engine() -> Engine:
            # A fresh state directory per run: a used one would resume, past every bar.
            state = Path(tmp) / f"state-{next(runs)}" if args.journal else None
            return build_engine(load_session(path), RunOptions(state_dir=state))

        best = float("inf")
        for _ in range(args.runs):
            elapsed, summary = asyncio.run(run_once(engine(), None))
            best = min(best, elapsed)
        latencies: list[float] = []
        asyncio.run(run_once(engine(), latencies))
    print(
        json.dumps(
            {
                "benchmark": "engine_replay_sma_paper" + ("_journal" if args.journal else ""),
                "bars": summary.bars,
                "orders": summary.orders,
                "bars_per_s": round(summary.bars / best),
                "per_bar_us": percentiles_us(latencies),
                "runs": args.runs,
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
