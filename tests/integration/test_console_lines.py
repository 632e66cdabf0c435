"""The console names the symbol of every strategy log line, and a strategy's ERROR log is
not a strategy error.

Both come from real runs: the example SMA strategy trading two symbols logs
before each of its orders (with the symbol among its fields, which the line
must agree with), and the faulty strategy logs on some bars and fails on
others.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

from helpers import FAULTY_WASM, SMA_WASM

from kubetrade.runner import events as ev
from kubetrade.runner.app.console import ConsoleReporter
from kubetrade.runner.domain import Bar
from kubetrade.runner.engine import Engine


def printed(engine: Engine) -> tuple[list[ev.Event], list[str]]:
    out = io.StringIO()
    console = ConsoleReporter(out=out)

    async def run() -> list[ev.Event]:
        events = []
        async for event in engine.run():
            console(event)
            events.append(event)
        return events

    events = asyncio.run(run())
    return events, out.getvalue().splitlines()


def test_each_strategy_log_line_names_the_bar_symbol(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(
        """
        symbols: [BTCUSDT, ETHUSDT]
        interval: 1m
        strategy: {path: SMA, config: {fastPeriod: 3, slowPeriod: 8, quantity: 0.01}}
        marketData: {provider: synthetic, config: {seed: 3, bars: 400, volatility: 0.004}}
        trading: {provider: paper}
        """.replace("SMA", str(SMA_WASM))
    )
    events, lines = printed(engine)
    logs = [e for e in events if isinstance(e, ev.StrategyLog)]
    assert {log.symbol for log in logs} == {"BTCUSDT", "ETHUSDT"}
    assert all(log.symbol == log.fields["symbol"] for log in logs)  # the bar's own symbol
    logged = [line for line in lines if "strategy log" in line]
    assert len(logged) == len(logs)
    for line, log in zip(logged, logs, strict=True):
        assert line.split()[1] == log.fields["symbol"]
        assert " strategy log INFO: " in line


def test_an_error_log_and_a_strategy_error_read_differently() -> None:
    out = io.StringIO()
    console = ConsoleReporter(out=out)
    bar = Bar("ETHUSDT", 1_704_067_260_000, 1, 2, 0.5, 1.5, 1)
    console(ev.StrategyLog(bar.time, "error", "order refused", {"why": "no cash"}, "ETHUSDT"))
    console(ev.StrategyError(bar, "trading_strategy_process_data aborted: boom"))
    console(ev.StrategyLog(0, "info", "initialized"))  # outside a bar: no symbol
    assert out.getvalue().splitlines() == [
        "2024-01-01T00:01:00Z  ETHUSDT  strategy log ERROR: order refused why=no cash",
        "2024-01-01T00:01:00Z  ETHUSDT  strategy call failed: "
        "trading_strategy_process_data aborted: boom",
        "1970-01-01T00:00:00Z  -  strategy log INFO: initialized",
    ]


def test_failed_bars_and_logged_bars_of_a_real_run(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(
        """
        symbols: [BTCUSDT]
        interval: 1m
        strategy: {path: FAULTY, config: {errorEvery: 3}}
        marketData: {provider: synthetic, config: {seed: 1, bars: 9}}
        trading: {provider: paper}
        """.replace("FAULTY", str(FAULTY_WASM))
    )
    events, lines = printed(engine)
    failed = [line for line in lines if "strategy call failed" in line]
    logged = [line for line in lines if "strategy log" in line]
    errors = [e for e in events if isinstance(e, ev.StrategyError)]
    assert len(failed) == len(errors) == 3
    assert len(logged) == 6
    assert all(line.split()[1] == "BTCUSDT" for line in failed + logged)
    assert not any("strategy call failed" in line for line in logged)
