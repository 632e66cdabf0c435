"""What /metrics reports after a run: the counts match what the engine did.

The bar path counts in plain numbers and the collector turns them into
Prometheus families at scrape time; this checks the figures against the
engine's own summary for the example SMA strategy over the sample data.
"""

from __future__ import annotations

from collections.abc import Callable

from helpers import SAMPLE_CSV, SMA_WASM
from prometheus_client.parser import text_string_to_metric_families

from kubetrade.runner import events as ev
from kubetrade.runner.engine import Engine

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
    placed = after[("kubetrade_orders_total", (*session, ("status", "PLACED")))]
    filled = after[("kubetrade_orders_total", (*session, ("status", "FILLED")))]
    assert placed == summary.orders
    assert filled == summary.fills == after[("kubetrade_fills_total", session)]
    assert after[("kubetrade_bars_total", (*session, ("symbol", "BTCUSDT")))] == summary.bars
    assert after[("kubetrade_strategy_errors_total", session)] == 0
    assert after[("kubetrade_equity", session)] == summary.equity
