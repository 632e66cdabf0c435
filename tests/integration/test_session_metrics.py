"""What /metrics reports after a run: the counts match what the engine did.

The bar path counts in plain numbers and the collector turns them into
Prometheus families at scrape time; this checks the figures against the
engine's own summary for the example SMA strategy over the sample data.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import SAMPLE_CSV, SMA_WASM
from prometheus_client.parser import text_string_to_metric_families

from kubetrade.runner import events as ev
from kubetrade.runner.engine import Engine
from kubetrade.runner.telemetry.histogram import FastHistogram

SPEC = f"""
symbols: [BTCUSDT]
interval: 1m
strategy:
  path: {SMA_WASM}
  config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.01}}
marketData:
  provider: replay
  config: {{path: {SAMPLE_CSV}}}
trading:
  provider: paper
  config: {{initialCash: 100000, feeBps: 1}}
"""


def samples(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = engine.metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_what_the_engine_did(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(SPEC, max_bars=2_000, name="metrics")
    before = samples(engine)
    session = (("session", "metrics"),)
    assert before[("kubetrade_fills_total", session)] == 0
    assert before[("kubetrade_strategy_errors_total", session)] == 0
    summary = None
    async for event in engine.run():
        if isinstance(event, ev.EngineStopped):
            summary = event.summary
    assert summary is not None and summary.orders > 10
    after = samples(engine)

    def total(name: str, **labels: str) -> float:
        """Summed over every label not named (side, type, ...)."""
        return sum(
            value
            for (metric, pairs), value in after.items()
            if metric == name and {**dict(pairs), **labels}.items() <= dict(pairs).items()
        )

    placed = total("kubetrade_orders_total", session="metrics", status="PLACED")
    filled = total("kubetrade_orders_total", session="metrics", status="FILLED")
    assert placed == summary.orders
    assert filled == summary.fills == after[("kubetrade_fills_total", session)]
    # The SMA strategy trades market orders on both sides.
    assert total("kubetrade_orders_total", side="BUY", type="MARKET", status="PLACED") > 0
    assert total("kubetrade_orders_total", side="SELL", type="MARKET", status="PLACED") > 0
    assert after[("kubetrade_bars_total", (*session, ("symbol", "BTCUSDT")))] == summary.bars
    assert after[("kubetrade_strategy_errors_total", session)] == 0
    assert after[("kubetrade_equity", session)] == summary.equity
    assert after[("kubetrade_realized_pnl", session)] == summary.realized_pnl
    # Every bar's strategy call is timed, and every order's way to the broker.
    assert after[("kubetrade_strategy_call_duration_seconds_count", session)] == summary.bars
    assert after[("kubetrade_tick_to_order_seconds_count", session)] == summary.orders
    inf = (("le", "+Inf"), *session)
    assert after[("kubetrade_strategy_call_duration_seconds_bucket", inf)] == summary.bars
    assert after[("kubetrade_strategy_call_duration_seconds_sum", session)] > 0
    # Drawdown is measured from the highest equity after a bar.
    peak = after[("kubetrade_equity_peak", session)]
    assert peak >= summary.equity
    assert after[("kubetrade_drawdown", session)] == pytest.approx(peak - summary.equity)
    held = after[("kubetrade_position", (*session, ("symbol", "BTCUSDT")))]
    notional = after[("kubetrade_position_notional", (*session, ("symbol", "BTCUSDT")))]
    assert held >= 0 and notional == pytest.approx(held * engine.state.book.marks["BTCUSDT"])
    assert after[("kubetrade_fees_total", session)] > 0
    assert after[("kubetrade_risk_halted", session)] == 0
    build = [labels for (name, labels) in after if name == "kubetrade_build_info"]
    assert [dict(b)["abi"] for b in build] == ["1"]


async def test_risk_refusals_are_counted_by_reason(make_engine: Callable[..., Engine]) -> None:
    # Orders of 0.01 BTC at ~60,000 are ~600 in notional: a 100 cap refuses every one.
    engine = make_engine(SPEC + "risk: {maxOrderNotional: 100}\n", max_bars=500, name="refused")
    async for _ in engine.run():
        pass
    after = samples(engine)
    session = (("session", "refused"),)
    refused = after[("kubetrade_order_rejections_total", (("reason", "risk_limit"), *session))]
    assert refused > 0
    assert refused == sum(
        v for (n, labels), v in after.items()
        if n == "kubetrade_orders_total" and ("status", "REJECTED") in labels
    )  # fmt: skip
    assert not any(
        n == "kubetrade_orders_total" and ("status", "PLACED") in labels for n, labels in after
    )


def test_the_fast_histogram_counts_as_prometheus_does() -> None:
    histogram = FastHistogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(value)
    # Cumulative, a value equal to a bound in that bound's bucket (le), +Inf last.
    assert histogram.buckets() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert histogram.count == 4
    assert histogram.sum == pytest.approx(2.65)
