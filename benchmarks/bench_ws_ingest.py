"""Websocket messages per second through the binance and polygon providers into the engine; JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_ws_ingest.py [--seconds 3] [--symbols 4]

Each local venue server (tests/servers) runs in its own process with its clock
unthrottled (`--period 0`), so it streams as fast as it can. Per venue:
- raw_frames_per_s: frames a bare websockets client reads and drops: the
  server's and the loopback's ceiling, which bounds every other figure;
- provider_*: through `stream()` alone (decode, backfill bookkeeping, order and
  duplicate checks);
- engine_*: through the Engine with the example SMA strategy (WebAssembly) and
  the paper broker, as `kubetrade run` does it.
The *_per_s figures are wall-clock rates and include waiting for the server;
the *_cpu_us_* figures are this process's CPU time per frame or bar, which is
what the provider and the engine cost, whatever else the machine is doing.
A frame is one websocket message. Binance sends two per closed bar (the closed
kline, then the next kline in progress); Polygon sends one per step, holding an
aggregate event for every symbol. Each figure is the best of --runs runs (3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import build_engine
from kubetrade.runner.app.session_file import load_session
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.marketdata import binance, polygon
from kubetrade.runner.marketdata.feed import Decoder, LiveFeed

ROOT = Path(__file__).resolve().parents[1]
SMA_WASM = ROOT / "strategies" / "examples" / "sma" / "sma.wasm"
KEY = "bench-key"
VENUES = {
    "binance": ("binance_market", ["--interval", "1m"], "BTC{}USDT"),
    "polygon": ("polygon_market", ["--keys", KEY], "TICK{}"),
}


@contextlib.asynccontextmanager
async def server(venue: str, symbols: list[str]) -> AsyncIterator[dict[str, str]]:
    """A venue server in its own process, streaming as fast as it can."""
    module, extra, _ = VENUES[venue]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"servers.{module}", "--period", "0",
        "--symbols", ",".join(symbols), *extra,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests"), "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        yield json.loads(await process.stdout.readline())
    finally:
        process.terminate()
        await process.wait()


def session_file(directory: Path, venue: str, symbols: list[str], urls: dict[str, str]) -> Path:
    path = directory / f"{venue}.yaml"
    config = {"wsUrl": urls["ws_url"], "restUrl": urls["rest_url"]}
    path.write_text(
        f"""apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: bench-{venue}}}
spec:
  symbols: {json.dumps(symbols)}
  interval: 1m
  strategy:
    path: {SMA_WASM}
    config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.01}}
  marketData: {{provider: {venue}, config: {json.dumps(config)}}}
  trading: {{provider: paper, config: {{initialCash: 1000000000}}}}
"""
    )
    return path


def count_frames(feed: LiveFeed) -> list[int]:
    """Make `feed` count the frames its decoders read; the count is the list's one item."""
    frames = [0]
    venue: Any = feed.venue
    opened = venue.connect

    async def connect_counting() -> tuple[Any, Decoder]:
        ws, decode = await opened()

        def counting(frame: str | bytes) -> Any:
            frames[0] += 1
            observations: Any = decode(frame)
            return observations

        return ws, counting

    venue.connect = connect_counting
    return frames


async def raw_rate(venue: str, urls: dict[str, str], symbols: list[str], seconds: float) -> float:
    path = (
        "/stocks"
        if venue == "polygon"
        else "/stream?streams=" + "/".join(f"{s.lower()}@kline_1m" for s in symbols)
    )
    async with connect(urls["ws_url"] + path, max_queue=1024) as ws:
        if venue == "polygon":
            await ws.recv()
            await ws.send(json.dumps({"action": "auth", "params": KEY}))
            await ws.recv()
            channels = ",".join(f"AM.{s}" for s in symbols)
            await ws.send(json.dumps({"action": "subscribe", "params": channels}))
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            await ws.recv()
            count += 1
        return count / (time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class Run:
    frames: int
    bars: int
    wall: float  # seconds from the first bar
    cpu: float  # seconds of this process's CPU time over the same span

    def per_s(self, count: int) -> float:
        return count / self.wall


async def provider_run(
    venue: str, urls: dict[str, str], symbols: list[str], seconds: float, directory: Path
) -> Run:
    spec = load_session(session_file(directory, venue, symbols, urls)).session.spec
    credentials = Credentials(venue, {"api_key": KEY})
    feed = (binance if venue == "binance" else polygon).create(spec, credentials=credentials)
    frames = count_frames(feed)
    bars, started, cpu = 0, 0.0, 0.0
    async for _bar in feed.stream():
        if not bars:  # from the first bar: connecting and checking symbols excluded
            started, cpu, frames[0] = time.perf_counter(), time.process_time(), 0
        bars += 1
        if bars % 256 == 0 and time.perf_counter() - started >= seconds:
            break
    run = Run(frames[0], bars, time.perf_counter() - started, time.process_time() - cpu)
    await feed.close()
    return run


async def engine_run(
    venue: str, urls: dict[str, str], symbols: list[str], seconds: float, directory: Path
) -> Run:
    os.environ["KUBETRADE_POLYGON_API_KEY"] = KEY
    engine = build_engine(load_session(session_file(directory, venue, symbols, urls)))
    assert isinstance(engine.market_data, LiveFeed)
    frames = count_frames(engine.market_data)
    bars, started, cpu = 0, 0.0, 0.0
    async for event in engine.run():
        if isinstance(event, ev.MarketData):
            if not bars:
                started, cpu, frames[0] = time.perf_counter(), time.process_time(), 0
            bars += 1
            if bars % 256 == 0 and time.perf_counter() - started >= seconds:
                engine.request_stop()
    return Run(frames[0], bars, time.perf_counter() - started, time.process_time() - cpu)


async def best_run(make: Callable[[], Awaitable[Run]], runs: int) -> Run:
    return max([await make() for _ in range(runs)], key=lambda run: run.bars / run.wall)


async def measure(venue: str, n_symbols: int, seconds: float, runs: int) -> dict[str, object]:
    symbols = [VENUES[venue][2].format(i) for i in range(n_symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        async with server(venue, symbols) as urls:
            raw = max([await raw_rate(venue, urls, symbols, seconds) for _ in range(runs)])
            feed = await best_run(
                lambda: provider_run(venue, urls, symbols, seconds, directory), runs
            )
            engine = await best_run(
                lambda: engine_run(venue, urls, symbols, seconds, directory), runs
            )
    return {
        "symbols": n_symbols,
        "raw_frames_per_s": round(raw),
        "provider_frames_per_s": round(feed.per_s(feed.frames)),
        "provider_bars_per_s": round(feed.per_s(feed.bars)),
        "provider_cpu_us_per_frame": round(feed.cpu / feed.frames * 1e6, 1),
        "engine_frames_per_s": round(engine.per_s(engine.frames)),
        "engine_bars_per_s": round(engine.per_s(engine.bars)),
        "engine_cpu_us_per_bar": round(engine.cpu / engine.bars * 1e6, 1),
    }


async def main(seconds: float, symbols: int, runs: int) -> dict[str, object]:
    return {
        "benchmark": "ws_ingest",
        "python": platform.python_version(),
        "seconds_per_figure": seconds,
        "binance": await measure("binance", symbols, seconds, runs),
        "polygon": await measure("polygon", symbols, seconds, runs),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per run")
    parser.add_argument("--symbols", type=int, default=4, help="symbols per session")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the best counts)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.seconds, args.symbols, args.runs)), indent=2))
