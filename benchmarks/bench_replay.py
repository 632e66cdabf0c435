"""How fast the replay and synthetic providers produce bars at speed 0; prints JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_replay.py [--seconds 2]

Figures: load time of the sample CSV and Parquet files, and bars per second the
consumer receives from `stream()` (each best of 3 runs): the file as loaded (repeated
passes), with `loop=True` (later passes build time-shifted Bars), and synthetic bars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kubetrade.runner.marketdata.replay import YIELD_EVERY, ReplayProvider
from kubetrade.runner.marketdata.synthetic import SyntheticProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from kubetrade.runner.domain import Bar

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
MINUTE = 60_000


def load(name: str) -> tuple[ReplayProvider, float]:
    best, provider = float("inf"), None
    for _ in range(3):
        started = time.perf_counter()
        provider = ReplayProvider(path=DATA / name, symbols=["BTCUSDT"], interval_ms=MINUTE)
        best = min(best, time.perf_counter() - started)
    assert provider is not None
    return provider, best


async def rate(streams: Callable[[], AsyncIterator[Bar]], seconds: float) -> float:
    """Bars per second taken from fresh streams for about `seconds`; best of 3."""
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        deadline = started + seconds / 3
        while time.perf_counter() < deadline:
            async for _bar in streams():
                count += 1
                if count % 100_000 == 0 and time.perf_counter() >= deadline:
                    break
        best = max(best, count / (time.perf_counter() - started))
    return best


async def main(seconds: float) -> dict[str, object]:
    csv_provider, csv_load = load("btcusdt_1m_synthetic.csv")
    _, parquet_load = load("btcusdt_1m_synthetic.parquet")
    looped = ReplayProvider(
        path=DATA / "btcusdt_1m_synthetic.csv", symbols=["BTCUSDT"], interval_ms=MINUTE, loop=True
    )
    synthetic = SyntheticProvider(
        symbols=["A", "B"], interval_ms=MINUTE, start_time_ms=0, bars=50_000
    )
    return {
        "benchmark": "replay",
        "python": platform.python_version(),
        "yield_every": YIELD_EVERY,
        "sample_bars": 5000,
        "load_csv_s": round(csv_load, 4),
        "load_parquet_s": round(parquet_load, 4),
        "replay_bars_per_s": round(await rate(csv_provider.stream, seconds)),
        "replay_loop_bars_per_s": round(await rate(looped.stream, seconds)),
        "synthetic_bars_per_s": round(await rate(synthetic.stream, seconds)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per stream figure")
    print(json.dumps(asyncio.run(main(parser.parse_args().seconds)), indent=2))
