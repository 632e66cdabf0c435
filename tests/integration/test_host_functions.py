"""Every host function of the ABI, called by a compiled Go strategy through the engine.

The hostcheck strategy runs a fixed script and reports what each host function
answered via `log`; the expected figures below are worked out by hand from the
bars and the paper broker's rules (fills at the close, fee 10 bps).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import FAULTY_WASM, HOSTCHECK_WASM, MINUTE, T0, flat_rows, write_bars

from kubetrade.runner import events as ev
from kubetrade.runner.domain import format_ms
from kubetrade.runner.engine import Engine

EngineFactory = Callable[..., Engine]


def iso(minute: int) -> str:
    return format_ms(T0 + minute * MINUTE)


def spec(wasm: Path, data: Path, config: str, engine: str = "") -> str:
    return f"""
    symbols: [BTC]
    interval: 1m
    strategy:
      path: {wasm}
      config: {config}
    marketData:
      provider: replay
      config: {{path: {data}}}
    trading:
      provider: paper
      config: {{initialCash: 10000, feeBps: 10}}
    engine: {{{engine}}}
    """


async def run(engine: Engine) -> list[ev.Event]:
    return [event async for event in engine.run()]


def checks(events: list[ev.Event]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for e in events:
        if isinstance(e, ev.StrategyLog) and e.message == "check":
            assert e.fields["step"] not in out, f"step {e.fields['step']} reported twice"
            out[e.fields["step"]] = e.fields
    return out


async def test_hostcheck_script_sees_what_the_host_did(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    closes = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109]
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows(closes))
    events = await run(make_engine(spec(HOSTCHECK_WASM, data, "{symbol: BTC}")))
    errors = [e for e in events if isinstance(e, ev.StrategyError)]
    assert errors == []
    c = checks(events)

    def num(step: str, key: str) -> float:
        return float(c[step][key])

    # bar 1: a limit far below the market rests
    assert (c["bar1.open_orders"]["count"], c["bar1.open_orders"]["ids"]) == ("1", "rest-1")
    # bar 2: still pending; once cancel is asked it is no longer open to the strategy
    assert c["bar2.status"]["value"] == "ORDER_STATUS_PENDING"
    assert c["bar2.cancel"]["open_orders"] == "0"
    # bar 3: the venue confirmed the cancel; a market buy of 2 goes out at 102
    assert c["bar3.status"]["value"] == "ORDER_STATUS_CANCELLED"
    assert c["bar3.placed"]["order_id"] == "mkt-1"
    # bar 4: filled at 102 with a 0.204 fee
    assert c["bar4.status"]["value"] == "ORDER_STATUS_FILLED"
    assert num("bar4.position", "quantity") == 2
    assert num("bar4.position", "total_in_quantity") == 2
    assert num("bar4.position", "total_in_amount") == pytest.approx(204)
    assert num("bar4.position", "total_in_fee") == pytest.approx(0.204)
    assert num("bar4.position", "total_out_quantity") == 0
    assert (c["bar4.positions"]["count"], c["bar4.positions"]["symbols"]) == ("1", "BTC")
    assert num("bar4.account", "balance") == pytest.approx(10_000 - 204.204)
    assert num("bar4.account", "equity") == pytest.approx(10_000 - 204.204 + 2 * 103)
    assert num("bar4.account", "buying_power") == pytest.approx(10_000 - 204.204)
    assert num("bar4.account", "unrealized_pnl") == pytest.approx(2)
    assert num("bar4.account", "realized_pnl") == 0
    assert num("bar4.account", "total_fees") == pytest.approx(0.204)
    assert (c["bar4.last"]["time"], num("bar4.last", "close")) == (iso(3), 103)
    assert c["bar4.range"]["count"] == "3"
    assert (c["bar4.range"]["first"], c["bar4.range"]["last"]) == (iso(1), iso(3))
    # bar 5: two resting limits, then cancel_all withdraws both before they are sent
    assert (c["bar5.open_orders"]["count"], c["bar5.open_orders"]["ids"]) == (
        "2",
        "rest-2,rest-3",
    )
    assert c["bar5.cancel_all"]["open_orders"] == "0"
    # bar 6: both cancelled; sell 1 at 105
    assert c["bar6.open_orders"]["count"] == "0"
    assert c["bar6.status.rest-2"]["value"] == "ORDER_STATUS_CANCELLED"
    assert c["bar6.status.rest-3"]["value"] == "ORDER_STATUS_CANCELLED"
    # bar 7: the partial close realized (105 - 102) * 1
    assert c["bar7.status"]["value"] == "ORDER_STATUS_FILLED"
    assert num("bar7.position", "quantity") == 1
    assert num("bar7.position", "total_out_quantity") == 1
    assert num("bar7.position", "total_out_amount") == pytest.approx(105)
    assert num("bar7.position", "total_out_fee") == pytest.approx(0.105)
    balance = 10_000 - 204.204 + 105 - 0.105
    assert num("bar7.account", "balance") == pytest.approx(balance)
    assert num("bar7.account", "equity") == pytest.approx(balance + 106)
    assert num("bar7.account", "realized_pnl") == pytest.approx(3)
    assert num("bar7.account", "unrealized_pnl") == pytest.approx(4)
    assert num("bar7.account", "total_fees") == pytest.approx(0.309)
    # Every check of the script was reported.
    assert len([s for s in c if s.startswith("bar")]) == 21


async def test_host_error_traps_the_call_and_the_engine_goes_on(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 9))
    events = await run(make_engine(spec(HOSTCHECK_WASM, data, "{symbol: BTC, mode: trap}")))
    errors = [e for e in events if isinstance(e, ev.StrategyError)]
    assert [e.bar.time for e in errors if e.bar] == [T0 + m * MINUTE for m in (2, 5, 8)]
    assert all("cancel_order" in e.message and "no-such-order" in e.message for e in errors)
    alive = [int(e.fields["bar"]) for e in events if isinstance(e, ev.StrategyLog)]
    assert alive == [1, 2, 4, 5, 7, 8]
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped) and stopped.error is None
    assert stopped.summary.strategy_errors == 3 and stopped.summary.bars == 9


async def test_errors_are_reported_and_a_panicked_strategy_is_restarted(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    # faulty counts bars in memory: errors on its even bars, a panic on its 5th.
    # After the panic the engine starts a fresh instance, whose count restarts.
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 10))
    events = await run(make_engine(spec(FAULTY_WASM, data, "{panicEvery: 5, errorEvery: 2}")))
    errors = {
        (e.bar.time - T0) // MINUTE + 1: e.message
        for e in events
        if isinstance(e, ev.StrategyError) and e.bar
    }
    assert sorted(errors) == [2, 4, 5, 7, 9, 10]
    assert "deliberate error on bar 2" in errors[2] and "deliberate error on bar 4" in errors[4]
    assert "deliberate panic on bar 5" in errors[5] and "deliberate error on bar 2" in errors[7]
    restarts = [e for e in events if isinstance(e, ev.EngineError) and "restarted" in e.message]
    assert len(restarts) == 2
    ok = [int(e.fields["bar"]) for e in events if isinstance(e, ev.StrategyLog)]
    assert ok == [1, 3, 1, 3]
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped) and stopped.error is None
    assert stopped.summary.bars == 10 and stopped.summary.strategy_errors == 6


async def test_strategy_that_fails_to_initialize_stops_the_session(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 3))
    events = await run(make_engine(spec(FAULTY_WASM, data, "{initError: true}")))
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped)
    assert stopped.error is not None and "initialize" in stopped.error
    assert stopped.summary.bars == 0


async def test_consecutive_failures_beyond_the_threshold_stop_the_session(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 10))
    engine = make_engine(
        spec(FAULTY_WASM, data, "{panicEvery: 1}", "maxConsecutiveStrategyErrors: 3")
    )
    events = await run(engine)
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped)
    assert stopped.error is not None and "3 consecutive" in stopped.error
    assert stopped.summary.bars == 3


async def test_infinite_loop_is_cut_off_and_next_bars_still_run(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 4))
    engine = make_engine(
        spec(FAULTY_WASM, data, "{loopOnBar: 2}", "strategyCallTimeoutSeconds: 0.5")
    )
    events = await run(engine)
    # The loop on its 2nd bar is cut off; the fresh instance loops on its own 2nd bar.
    errors = [e for e in events if isinstance(e, ev.StrategyError)]
    assert [(e.bar.time - T0) // MINUTE + 1 for e in errors if e.bar] == [2, 4]
    assert all("exceeded 0.5s" in e.message for e in errors)
    ok = [int(e.fields["bar"]) for e in events if isinstance(e, ev.StrategyLog)]
    assert ok == [1, 1]


async def test_callbacks_see_every_phase_and_stop_is_always_called(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100, 101, 102, 103, 104]))
    seen: list[str] = []
    callbacks = ev.EngineCallbacks(
        on_engine_start=lambda e: seen.append("start"),
        on_engine_stop=lambda e: seen.append("stop"),
        on_market_data=lambda e: seen.append("bar"),
        on_order_placed=lambda e: seen.append("placed"),
        on_order_filled=lambda e: seen.append("filled"),
        on_order_cancelled=lambda e: seen.append("cancelled"),
        on_strategy_log=lambda e: None,
    )
    summary = await make_engine(spec(HOSTCHECK_WASM, data, "{symbol: BTC}")).run_with(callbacks)
    assert seen[0] == "start" and seen[-1] == "stop" and seen.count("stop") == 1
    assert seen.count("bar") == 5 and summary.bars == 5
    # rest-1, mkt-1, rest-2, rest-3 placed; mkt-1 filled; the three limits cancelled
    assert (seen.count("placed"), seen.count("filled"), seen.count("cancelled")) == (4, 1, 3)

    # A callback that raises still gets on_engine_stop called.
    stops: list[ev.EngineStopped] = []

    def explode(event: ev.MarketData) -> None:
        raise RuntimeError("callback failed")

    broken = ev.EngineCallbacks(on_market_data=explode, on_engine_stop=stops.append)
    with pytest.raises(RuntimeError, match="callback failed"):
        await make_engine(spec(HOSTCHECK_WASM, data, "{symbol: BTC}")).run_with(broken)
    assert len(stops) == 1


async def test_stop_request_finishes_the_bar_in_hand(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100.0] * 50))
    engine = make_engine(spec(FAULTY_WASM, data, "{}"))
    bars = 0
    async for event in engine.run():
        if isinstance(event, ev.MarketData):
            bars += 1
            if bars == 7:
                engine.request_stop()
        if isinstance(event, ev.EngineStopped):
            assert event.error is None and event.summary.bars == 7
    assert bars == 7


async def test_take_profit_and_stop_loss_ride_on_the_entry(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    rows = [
        (0, 100, 100, 100, 100),  # entry: buy 2 at 100 with exits at 110 / 95
        (1, 100, 103, 99, 102),  # neither exit reached: both rest
        (2, 102, 108, 101, 107),
        (3, 107, 112, 106, 111),  # high 112: the take-profit fills at 110
        (4, 111, 111, 90, 91),  # the stop was cancelled with it: nothing happens
    ]
    data = write_bars(tmp_path / "bars.csv", "BTC", rows)
    config = "{symbol: BTC, mode: bracket, takeProfit: 110, stopLoss: 95}"
    engine = make_engine(spec(HOSTCHECK_WASM, data, config))
    events = await run(engine)
    c = checks(events)
    assert c["bar2.position"]["quantity"] == "2"
    assert c["bar2.open"]["count"] == "2"  # the two exits rest at the venue
    assert c["bar4.position"]["quantity"] == "0"  # take-profit filled before bar 4's call
    assert c["bar4.open"]["count"] == "0"  # and the stop went with it
    fills = [e.fill for e in events if isinstance(e, ev.OrderFilled)]
    assert [(f.side, f.quantity, f.price) for f in fills] == [("BUY", 2, 100), ("SELL", 2, 110)]
    book = engine.state.book
    exits = {o.client_order_id[-2:]: o for o in book.orders.values() if o.parent_id}
    assert (exits["tp"].status, exits["tp"].reason) == ("FILLED", "take_profit")
    assert exits["sl"].status == "CANCELLED"
    assert book.ledger.realized_pnl == pytest.approx(20)


async def test_a_stop_loss_above_a_long_entry_is_refused(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    data = write_bars(tmp_path / "bars.csv", "BTC", flat_rows([100, 100, 100]))
    config = "{symbol: BTC, mode: bracket, takeProfit: 110, stopLoss: 105}"
    events = await run(make_engine(spec(HOSTCHECK_WASM, data, config)))
    [refused] = [e.order for e in events if isinstance(e, ev.OrderRejected)]
    assert refused.reason == "invalid_price" and "stop_loss.price 105" in refused.message
    assert checks(events)["bar2.position"]["quantity"] == "0"
