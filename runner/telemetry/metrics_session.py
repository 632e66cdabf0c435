"""What the session itself holds, exported at scrape time: account, positions, drawdown,
risk state and journal commits.

Nothing here costs the bar path anything: the figures are read from the session when
Prometheus asks (on the HTTP thread, while the engine may be changing them; the server
retries a read that meets a dict changing size).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubetrade.runner.session import Session
from kubetrade.runner.telemetry.metrics import SessionMetrics


class SessionCollector(Collector):
    def __init__(self, metrics: SessionMetrics, state: Session) -> None:
        self._metrics = metrics
        self._state = state

    def collect(self) -> Iterator[Metric]:
        m, state = self._metrics, self._state
        account = state.book.account()
        for name, help_text, value in (
            ("cash", "Cash in the account", account.balance),
            ("equity", "Account equity: cash plus positions at their last close", account.equity),
            ("realized_pnl", "Realized PnL (fees not included)", account.realized_pnl),
            ("unrealized_pnl", "Unrealized PnL of open positions", account.unrealized_pnl),
        ):
            yield m.gauge(f"kubetrade_{name}", help_text, value)
        yield m.counter("kubetrade_fees", "Fees paid", account.total_fees)
        peak = max(state.peak_equity, account.equity)
        drawdown = peak - account.equity
        yield m.gauge(
            "kubetrade_equity_peak", "Highest equity after a bar since the runner started", peak
        )
        yield m.gauge("kubetrade_drawdown", "Equity below its peak", drawdown)
        yield m.gauge(
            "kubetrade_drawdown_ratio",
            "Equity below its peak, as a fraction of the peak",
            drawdown / peak if peak > 0 else 0.0,
        )
        yield from self._positions(m, state)
        yield m.gauge(
            "kubetrade_risk_halted",
            "1 while new entries are halted for the day (spec.risk.maxDailyLoss)",
            float(state.risk.halted),
        )
        yield state.journal_commits.family(
            "kubetrade_journal_commit_duration_seconds",
            "Time of each journal transaction written (its fsync included, with a state directory)",
            m.label_names,
            m.label_values,
        )

    @staticmethod
    def _positions(m: SessionMetrics, state: Session) -> Iterator[Metric]:
        names = [*m.label_names, "symbol"]
        quantity = GaugeMetricFamily(
            "kubetrade_position", "Quantity held, in the symbol's base unit", labels=names
        )
        notional = GaugeMetricFamily(
            "kubetrade_position_notional",
            "Quantity held times its last close, in the account's currency",
            labels=names,
        )
        marks = state.book.marks
        positions = state.book.ledger.positions
        for symbol in state.symbols:
            position = positions.get(symbol)
            held = position.quantity if position is not None else 0.0
            mark = marks.get(symbol, position.average_cost if position is not None else 0.0)
            quantity.add_metric([*m.label_values, symbol], held)
            notional.add_metric([*m.label_values, symbol], held * mark)
        yield quantity
        yield notional
