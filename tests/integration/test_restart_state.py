"""Everything a restart needs comes back from the journal: the risk gate's state, the
equity curve, the strategy's cache; and a paced replay does not wait through the
bars it already processed.

A session stopped every few bars (a clean stop, as on SIGTERM or a rolled pod)
and started again from its state directory must decide exactly as one that ran
through: a daily-loss halt stays a halt across the restart, and the orders,
their refusals and the equity after every bar are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from contextlib import closing
from pathlib import Path

from helpers import SMA_WASM, T0, write_bars

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import load_session

BARS = 240


def session(tmp_path: Path, *, speed: float = 0) -> Path:
    closes = [100 + 8 * math.sin(i / 5) + 3 * math.sin(i / 1.7) for i in range(BARS)]
    data = write_bars(tmp_path / "bars.csv", "ACME", [
        (i, round(c, 2), round(c + 0.5, 2), round(c - 0.5, 2), round(c, 2))
        for i, c in enumerate(closes)
    ])  # fmt: skip
    path = tmp_path / f"session-{speed}.yaml"
    path.write_text(
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata: {name: restart-test}\n"
        "spec:\n"
        "  symbols: [ACME]\n"
        "  interval: 1m\n"
        f"  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 3, slowPeriod: 8, quantity: 7}}}}\n"
        f"  marketData: {{provider: replay, config: {{path: {data}, speed: {speed}}}}}\n"
        "  trading: {provider: paper, config: {initialCash: 10000, feeBps: 10, slippageBps: 5}}\n"
        # The SMA strategy loses 15 early on: from then on the day's entries are refused.
        "  risk: {maxDailyLoss: 15}\n"
    )
    return path


async def run(session_file: Path, state: Path, max_bars: int | None = None) -> ev.Summary:
    engine = build_engine(
        load_session(session_file), RunOptions(max_bars=max_bars, state_dir=state)
    )
    return await engine.run_with(ev.EngineCallbacks())


def journal(state: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(state / "journal.db")) as db:
        return {
            "orders": db.execute(
                "SELECT time, side, quantity, status, reason, message, round(average_price, 9) "
                "FROM orders ORDER BY seq"
            ).fetchall(),
            "equity": db.execute(
                "SELECT time, round(equity, 9), round(cash, 9) FROM equity ORDER BY time"
            ).fetchall(),
            "risk": db.execute("SELECT value FROM session WHERE key='risk'").fetchall(),
            "cursor": db.execute("SELECT symbol, time FROM cursor").fetchall(),
        }


async def test_a_restarted_session_decides_as_one_that_ran_through(tmp_path: Path) -> None:
    session_file = session(tmp_path)
    await run(session_file, tmp_path / "through")
    expected = journal(tmp_path / "through")
    refused = [o for o in expected["orders"] if o[3] == "REJECTED"]
    assert refused and "daily loss" in str(refused[0][5])  # the halt happened ...
    assert int(str(refused[-1][0])) > T0 + 100 * 60_000  # ... and refuses entries late on

    stopped = tmp_path / "stopped"
    for _ in range(BARS // 35 + 1):  # a clean stop every 35 bars
        await run(session_file, stopped, max_bars=35)
    assert journal(stopped) == expected


async def test_a_paced_replay_skips_what_it_processed_before_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    await run(session(tmp_path), state, max_bars=BARS - 1)  # all but the last bar
    # The same session paced at real time: waiting through the processed bars again would
    # take 239 minutes; resumed, only the last bar is left, and the first is not waited for.
    summary = await asyncio.wait_for(run(session(tmp_path, speed=1), state), timeout=60)
    assert summary.bars == 1
    assert journal(state)["cursor"] == [("ACME", T0 + (BARS - 1) * 60_000)]


async def test_quiet_bars_are_committed_while_the_next_bar_is_awaited(tmp_path: Path) -> None:
    # A live feed's next bar may be a minute away: the bars of an unfinished group are
    # committed once the group's time bound passes, not only when the next bar comes.
    state = tmp_path / "state"
    engine = build_engine(
        load_session(session(tmp_path, speed=6)),  # a bar every 10 s after the first
        RunOptions(state_dir=state),
    )
    events = engine.run().__aiter__()
    while not isinstance(await events.__anext__(), ev.MarketData):
        pass
    waiting = asyncio.ensure_future(events.__anext__())  # the engine waits for bar 2
    await asyncio.sleep(engine.state.group.max_seconds * 3)
    assert journal(state)["cursor"] == [("ACME", T0)]  # bar 1 is durable meanwhile
    engine.request_stop()
    with contextlib.suppress(StopAsyncIteration):
        while True:
            await waiting
            waiting = asyncio.ensure_future(events.__anext__())
