"""Prometheus metrics of one session.

Each session gets its own registry (not the process-global one), so tests and
embedded engines never see each other's figures. Figures the bar path changes
(bars, last bar time, orders, fills, strategy errors, call durations) are kept as
plain numbers and turned into metrics only when Prometheus scrapes: the bar
path runs at replay speed, scrapes come every few seconds. Figures the session
already holds (account, positions, risk, journal commits) are read from it at
scrape time (metrics_session.py).

Every series carries the session's name, and its namespace and strategy digest
when they are known (the operator writes the namespace into the runner's session
file and pins an OCI strategy by digest); a local run leaves them out rather than
exporting empty labels. Names follow Prometheus' conventions: counters end in
`_total`, durations are `_seconds`, money is in the account's currency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from time import perf_counter, time
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kubetrade.runner import events as ev
from kubetrade.runner.domain import Fill, Order, OrderStatus
from kubetrade.runner.marketdata.health import FeedHealth
from kubetrade.runner.telemetry.build_info import BuildCollector
from kubetrade.runner.telemetry.histogram import LATENCY_BUCKETS, FastHistogram

if TYPE_CHECKING:
    from kubetrade.runner.session import Session
    from kubetrade.runner.strategy.errors import StrategyError

_REASON: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")  # a machine word, not a message
_MAX_REASONS: Final = 32  # distinct rejection reasons before the rest count as "other"


class SessionMetrics:
    # Slots: the bar path reads and writes a few of these on every bar.
    __slots__ = (
        "_halted_day", "bars", "feed", "fills", "interval_s", "is_ready", "label_names",
        "label_values", "last_bar", "orders", "processed_at", "provider", "real_money",
        "registry", "rejections", "risk_halts", "session", "speed", "state", "strategy_calls",
        "strategy_errors", "strategy_restarts", "strategy_timeouts", "strategy_traps",
        "tick_to_order",
    )  # fmt: skip

    def __init__(
        self,
        session: str,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "",
        strategy_digest: str = "",
        interval_s: float = 0.0,
        speed: float = 1.0,
    ) -> None:
        self.session = session
        names, values = ["session"], [session]
        for name, value in (("namespace", namespace), ("strategy_digest", strategy_digest)):
            if value:
                names.append(name)
                values.append(value)
        self.label_names: tuple[str, ...] = tuple(names)  # on every series of the session
        self.label_values: tuple[str, ...] = tuple(values)
        self.registry = r = registry or CollectorRegistry()
        self.interval_s = interval_s  # the bars' interval (spec.interval)
        # How many times faster than real time bars come: 1 for live data, N for a replay
        # at speed N, 0 for an unpaced replay (no bar is ever late).
        self.speed = speed
        self.is_ready = False
        self.provider = ""  # the broker, once known
        self.real_money = False
        # Per symbol: bars processed, and the open time (ms) of the last one. The engine
        # counts into these inline; `watch_session` enters every symbol of the session.
        self.bars: dict[str, int] = {}
        self.last_bar: dict[str, int] = {}
        self.processed_at = 0.0  # perf_counter() when the last bar was done; 0: none yet
        # Orders that reached a status, by (side, type, status); refusals by reason.
        self.orders: dict[tuple[str, str, str], int] = {}  # (side, type, status)
        self.rejections: dict[str, int] = {}
        self.fills = 0
        self.strategy_errors = 0
        self.strategy_traps = 0
        self.strategy_timeouts = 0
        self.strategy_restarts = 0
        self.risk_halts = 0
        self._halted_day = -1
        # The bar path writes these two directly (see Engine._on_bar): a method call per
        # bar would cost as much as the observation.
        self.strategy_calls = FastHistogram(LATENCY_BUCKETS)
        self.tick_to_order = FastHistogram(LATENCY_BUCKETS)
        self.state: Session | None = None
        self.feed: FeedHealth | None = None  # a network feed's health, once watched
        r.register(_BarCollector(self))
        r.register(BuildCollector("runner", self.labels))

    @property
    def labels(self) -> dict[str, str]:
        return dict(zip(self.label_names, self.label_values, strict=True))

    def watch_session(self, state: Session) -> None:
        """Export the session's account, positions, risk and journal, read at every scrape."""
        from kubetrade.runner.telemetry.metrics_session import SessionCollector

        self.state = state
        for symbol in state.symbols:
            self.bars.setdefault(symbol, 0)
        self._halted_day = state.risk.halted_day  # a halt restored from the journal is old
        self.registry.register(SessionCollector(self, state))

    def watch_feed(self, health: FeedHealth) -> None:
        """Export a network feed's health, read fresh at every scrape."""
        self.feed = health
        self.registry.register(_FeedCollector(self, health))

    def order(self, order: Order, status: str) -> None:
        key = (order.side, order.order_type, status)  # StrEnums: str keys without .value
        self.orders[key] = self.orders.get(key, 0) + 1
        if status in (OrderStatus.REJECTED, OrderStatus.FAILED):
            self._rejected(order.reason)

    def _rejected(self, reason: str) -> None:
        if not _REASON.fullmatch(reason) or (
            reason not in self.rejections and len(self.rejections) >= _MAX_REASONS
        ):
            reason = "other"  # a venue's free text must not make a series per message
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def strategy_events(self, events: Iterable[ev.Event]) -> None:
        """Count what the strategy's host calls decided during a bar: orders the risk gate
        refused, orders withdrawn before they were sent, and a daily-loss halt."""
        refused = False
        for event in events:
            if isinstance(event, ev.OrderRejected):
                self.order(event.order, event.order.status.value)
                refused = True
            elif isinstance(event, ev.OrderCancelled):
                self.order(event.order, OrderStatus.CANCELLED.value)
        if refused and self.state is not None:
            day = self.state.risk.halted_day
            if day != self._halted_day:
                self._halted_day = day
                self.risk_halts += 1

    def fill(self, fill: Fill | None = None) -> None:
        self.fills += 1

    def strategy_error(self, error: StrategyError | None = None) -> None:
        self.strategy_errors += 1
        if error is not None and error.trapped:
            self.strategy_traps += 1
            if error.timed_out:
                self.strategy_timeouts += 1

    def strategy_restart(self) -> None:
        self.strategy_restarts += 1

    def trading(self, *, provider: str, real_money: bool) -> None:
        """Say which broker the session trades through, and whether real money is at stake."""
        self.provider = provider
        self.real_money = real_money

    def ready(self, value: bool) -> None:
        self.is_ready = value

    def processed_wall_time(self) -> float | None:
        """Unix seconds when the last bar was done (the bar path keeps perf_counter()
        for speed; converted at every read, so a wall clock step does not skew it)."""
        if not self.processed_at:
            return None
        return self.processed_at + (time() - perf_counter())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- for the collectors --------------------------------------------------------------

    def counter(self, name: str, documentation: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation, labels=self.label_names)
        family.add_metric(self.label_values, value)
        return family

    def gauge(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, documentation, labels=self.label_names)
        family.add_metric(self.label_values, value)
        return family


class _BarCollector(Collector):
    """The figures the bar path counts (bars, orders, fills, errors, call durations), turned
    into metrics at scrape time: a prometheus_client Counter takes a lock on every inc."""

    def __init__(self, metrics: SessionMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        names, values = list(m.label_names), list(m.label_values)
        # What /readyz answers: started, and a network feed connected.
        ready = m.is_ready and (m.feed is None or m.feed.connected)
        yield m.gauge(
            "kubetrade_ready",
            "1 when the runner is ready: strategy started, market data connected",
            float(ready),
        )
        if m.provider:
            real = GaugeMetricFamily(
                "kubetrade_real_money",
                "1 when the session's broker can trade real money (a live venue, confirmed)",
                labels=[*names, "provider"],
            )
            real.add_metric([*values, m.provider], float(m.real_money))
            yield real
        bars = CounterMetricFamily(
            "kubetrade_bars", "Closed bars processed", labels=[*names, "symbol"]
        )
        last = GaugeMetricFamily(
            "kubetrade_last_bar_time_seconds",
            "Open time of the last processed bar (Unix seconds)",
            labels=[*names, "symbol"],
        )
        for symbol, count in sorted(m.bars.items()):
            bars.add_metric([*values, symbol], float(count))
            if symbol in m.last_bar:
                last.add_metric([*values, symbol], m.last_bar[symbol] / 1000)
        yield bars
        yield last
        yield from self._stream(m)
        orders = CounterMetricFamily(
            "kubetrade_orders",
            "Orders that reached a status (PLACED: sent to the broker), by side and type",
            labels=[*names, "side", "type", "status"],
        )
        for (side, kind, status), count in sorted(m.orders.items()):
            orders.add_metric([*values, str(side), str(kind), str(status)], float(count))
        yield orders
        rejections = CounterMetricFamily(
            "kubetrade_order_rejections",
            "Orders refused by the risk gate (REJECTED) or the broker (FAILED), by reason",
            labels=[*names, "reason"],
        )
        for reason, count in sorted(m.rejections.items()):
            rejections.add_metric([*values, reason], float(count))
        yield rejections
        for name, help_text, count in (
            ("fills", "Fills received from the broker", m.fills),
            ("strategy_errors", "Strategy calls that failed or trapped", m.strategy_errors),
            ("strategy_traps", "Strategy calls that trapped (timeouts included)", m.strategy_traps),
            (
                "strategy_timeouts",
                "Strategy calls stopped at spec.engine.strategyCallTimeoutSeconds",
                m.strategy_timeouts,
            ),
            (
                "strategy_restarts",
                "Strategy instances replaced after a trap of their own",
                m.strategy_restarts,
            ),
            ("risk_halts", "Daily-loss halts of new entries", m.risk_halts),
        ):
            yield m.counter(f"kubetrade_{name}", help_text, float(count))
        yield _histogram(
            m,
            "kubetrade_strategy_call_duration_seconds",
            "Time of the strategy's call on each bar (ProcessData, in the sandbox)",
            m.strategy_calls,
        )
        yield _histogram(
            m,
            "kubetrade_tick_to_order_seconds",
            "From the bar handed to the strategy to the broker receiving each order placed on it",
            m.tick_to_order,
        )

    @staticmethod
    def _stream(m: SessionMetrics) -> Iterator[Metric]:
        yield m.gauge("kubetrade_bar_interval_seconds", "The bars' interval", m.interval_s)
        yield m.gauge(
            "kubetrade_stream_speed",
            "Bars come this many times faster than real time: 1 live, N a replay at speed N,"
            " 0 a replay as fast as possible",
            m.speed,
        )
        done = m.processed_wall_time()
        if done is None or not m.last_bar:
            return
        yield m.gauge(
            "kubetrade_last_bar_processed_timestamp_seconds",
            "When the last bar was processed (Unix seconds, wall clock)",
            done,
        )
        # The newest bar is the one just processed (bars come in time order).
        closed = max(m.last_bar.values()) / 1000 + m.interval_s
        yield m.gauge(
            "kubetrade_stream_lag_seconds",
            "From the close of the newest processed bar to its processing",
            done - closed,
        )


def _histogram(
    m: SessionMetrics, name: str, documentation: str, histogram: FastHistogram
) -> HistogramMetricFamily:
    return histogram.family(name, documentation, m.label_names, m.label_values)


class _FeedCollector(Collector):
    def __init__(self, metrics: SessionMetrics, health: FeedHealth) -> None:
        self._metrics = metrics
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        m, h = self._metrics, self._health
        names = [*m.label_names, "provider"]
        labels = [*m.label_values, h.provider]
        connected = GaugeMetricFamily(
            "kubetrade_marketdata_connected", "1 while the market data stream is open", labels=names
        )
        connected.add_metric(labels, 1.0 if h.connected else 0.0)
        yield connected
        lag = h.lag_ms(int(time() * 1000))
        if lag is not None:
            family = GaugeMetricFamily(
                "kubetrade_marketdata_lag_seconds",
                "Now minus the close time of the newest bar received",
                labels=names,
            )
            family.add_metric(labels, lag / 1000)
            yield family
        for name, help_text, value in (
            ("reconnects", "Market data reconnections", h.reconnects),
            ("malformed_frames", "Market data frames skipped as malformed", h.malformed_frames),
            ("duplicate_bars", "Bars dropped as repeats or late", h.duplicates_dropped),
            ("backfilled_bars", "Bars fetched over REST after a gap", h.backfilled_bars),
            (
                "auth_refusals",
                "Refusals of market data credentials accepted before (retried)",
                h.auth_refusals,
            ),
        ):
            counter = CounterMetricFamily(f"kubetrade_marketdata_{name}", help_text, labels=names)
            counter.add_metric(labels, float(value))
            yield counter
