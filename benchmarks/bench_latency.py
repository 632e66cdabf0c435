"""In-process tick-to-order latency: bar received -> order handed to the broker; prints JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_latency.py [--bars 20000] [--runs 3]

Runs the example SMA strategy (compiled Go, in the wasm sandbox) over synthetic
bars with the paper broker, as `kubetrade run` would (no journal), once per call
path. For every bar on which the strategy orders, it measures the time from the
engine receiving the bar (entry of the per-bar step, after the market data
provider produced it) to the engine calling the broker's ``submit`` with the
order: the venue's step, the window, the strategy call with its host calls
(get_position, log, place_order and the risk check), events, then the send.
Samples from all runs are pooled; figures in µs.

``guest_floor`` is what is left without the host functions' own work: the same
bars through the same strategy on the fast path with host functions that do
nothing (a canned position, the log line and the order dropped), timing
``process_data`` on the bars on which the strategy orders. It still counts the
Go guest, the crossings, the host parsing each request and the call's
bookkeeping; it runs outside the engine, so its caches stay warm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2

from kubetrade.runner.app.assemble import build_engine
from kubetrade.runner.app.session_file import load_session
from kubetrade.runner.domain import Bar, Order, Position
from kubetrade.runner.engine import Engine
from kubetrade.runner.strategy import WasmStrategy, wire
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import SMA, percentiles_us, session  # as the throughput benchmark


class TimedBroker:
    """The session's broker, noting when each order is handed to it."""

    def __init__(self, broker: Any, samples: list[float]) -> None:
        self._broker = broker
        self._samples = samples
        self.received = 0.0  # when the engine received the bar in hand

    async def submit(self, order: Order) -> Any:
        self._samples.append(time.perf_counter() - self.received)
        return await self._broker.submit(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


async def run_once(engine: Engine) -> list[float]:
    """Latencies in seconds, one per order."""
    samples: list[float] = []
    broker = TimedBroker(engine.broker, samples)
    on_bar = engine._on_bar

    async def timed_bar(bar: Bar) -> Any:
        broker.received = time.perf_counter()
        return await on_bar(bar)

    engine._on_bar = timed_bar  # type: ignore[method-assign]
    engine.broker = engine.orders.broker = broker  # the router is what sends
    async for _ in engine.run():
        pass
    return samples


def measure(path: Path, runs: int, call_path: str) -> dict[str, Any]:
    os.environ["KUBETRADE_WASM_PATH"] = call_path  # read when the strategy is instantiated
    samples: list[float] = []
    for _ in range(runs):
        samples += asyncio.run(run_once(build_engine(load_session(path))))
    return per_order(samples)


def per_order(samples: list[float]) -> dict[str, Any]:
    return {"orders": len(samples), **{f"{k}_us": v for k, v in percentiles_us(samples).items()}}


class IdleHost(HostFunctions):
    """The session's host functions, but the three on an order bar's path do no work."""

    def __init__(self, engine: Engine, quantity: float) -> None:
        super().__init__(engine.state)
        symbol = next(iter(engine.state.symbols))
        self._flat = wire.position(Position(symbol), "")
        self._long = wire.position(Position(symbol, quantity=quantity), "")
        self.held = False
        self.ordered = False

    def get_position(self, request: pb.GetPositionRequest) -> wire.PackedPosition:
        return self._long if self.held else self._flat

    def log(self, request: pb.LogRequest) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    def place_order(self, request: pb.ExecuteOrder) -> empty_pb2.Empty:
        self.ordered = True
        self.held = request.side == pb.PURCHASE_TYPE_BUY
        return empty_pb2.Empty()


def guest_floor(path: Path, runs: int) -> dict[str, Any]:
    """process_data on order bars with host functions that do nothing (see the docstring)."""
    os.environ["KUBETRADE_WASM_PATH"] = "fast"  # for the session's own strategy instance
    session = load_session(path)
    config = session.session.spec.strategy.config
    samples: list[float] = []
    for _ in range(runs):
        engine = build_engine(session)
        quantity = config["quantity"]
        assert isinstance(quantity, int | float)
        host = IdleHost(engine, quantity)
        strategy = WasmStrategy(SMA.read_bytes(), host, session="bench", fast=True)
        strategy.initialize(json.dumps(config))
        bars = asyncio.run(replayed(engine))
        for bar in bars:
            host.ordered = False
            start = time.perf_counter()
            strategy.process_data(bar)
            elapsed = time.perf_counter() - start
            if host.ordered:
                samples.append(elapsed)
        strategy.close()
        engine.strategy.close()
    return per_order(samples)


async def replayed(engine: Engine) -> list[Bar]:
    bars = [bar async for bar in engine.market_data.stream()]
    await engine.market_data.close()
    return bars


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = session(Path(tmp), args.bars)
        results = {p: measure(path, args.runs, p) for p in ("fast", "stock")}
        results["guest_floor"] = guest_floor(path, args.runs)
    print(
        json.dumps(
            {
                "benchmark": "tick_to_order_latency_sma_paper",
                **results,
                "bars": args.bars,
                "runs": args.runs,
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
