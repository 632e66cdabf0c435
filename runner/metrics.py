"""Prometheus metrics of one session.

Each session gets its own registry (not the process-global one), so tests and
embedded engines never see each other's figures. Figures the bar path changes
(bars, last bar time, orders, fills, strategy errors, equity, PnL) are kept as
plain numbers and turned into metrics only when Prometheus scrapes: the bar
path runs at replay speed, scrapes come every few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from time import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubetrade.runner.domain import AccountInfo
from kubetrade.runner.marketdata.health import FeedHealth


class SessionMetrics:
    def __init__(self, session: str, registry: CollectorRegistry | None = None) -> None:
        self.session = session
        self.registry = r = registry or CollectorRegistry()
        self._ready = Gauge(
            "kubetrade_ready", "1 when the runner is ready", ["session"], registry=r
        )
        self._real_money = Gauge(
            "kubetrade_real_money",
            "1 when the session's broker can trade real money (a live venue, confirmed)",
            ["session", "provider"],
            registry=r,
        )
        self.bars: dict[str, int] = {}  # per symbol
        self.last_bar: dict[str, int] = {}  # per symbol, ms
        self.orders: dict[str, int] = {}  # per status: orders that reached it
        self.fills = 0
        self.strategy_errors = 0
        self.account_source: Callable[[], AccountInfo] | None = None
        r.register(_BarCollector(self))

    def watch_feed(self, health: FeedHealth) -> None:
        """Export a network feed's health, read fresh at every scrape."""
        self.registry.register(_FeedCollector(self.session, health))

    def bar(self, symbol: str, time_ms: int) -> None:
        self.bars[symbol] = self.bars.get(symbol, 0) + 1
        self.last_bar[symbol] = time_ms

    def order(self, status: str) -> None:
        self.orders[status] = self.orders.get(status, 0) + 1

    def fill(self) -> None:
        self.fills += 1

    def strategy_error(self) -> None:
        self.strategy_errors += 1

    def trading(self, *, provider: str, real_money: bool) -> None:
        """Say which broker the session trades through, and whether real money is at stake."""
        self._real_money.labels(self.session, provider).set(1 if real_money else 0)

    def ready(self, value: bool) -> None:
        self._ready.labels(self.session).set(1 if value else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _BarCollector(Collector):
    """The figures the bar path counts (bars, orders, fills, errors, the account), turned
    into metrics at scrape time: a prometheus_client Counter takes a lock on every inc."""

    def __init__(self, metrics: SessionMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        m = self._metrics
        bars = CounterMetricFamily(
            "kubetrade_bars", "Closed bars processed", labels=["session", "symbol"]
        )
        last = GaugeMetricFamily(
            "kubetrade_last_bar_time_seconds",
            "Open time of the last processed bar (Unix seconds)",
            labels=["session", "symbol"],
        )
        for symbol, count in sorted(m.bars.items()):
            bars.add_metric([m.session, symbol], float(count))
            last.add_metric([m.session, symbol], m.last_bar[symbol] / 1000)
        yield bars
        yield last
        orders = CounterMetricFamily(
            "kubetrade_orders", "Orders by final or current status", labels=["session", "status"]
        )
        for status, count in sorted(m.orders.items()):
            orders.add_metric([m.session, status], float(count))
        yield orders
        for name, help_text, count in (
            ("fills", "Fills received from the broker", m.fills),
            ("strategy_errors", "Strategy calls that failed or trapped", m.strategy_errors),
        ):
            counter = CounterMetricFamily(f"kubetrade_{name}", help_text, labels=["session"])
            counter.add_metric([m.session], float(count))
            yield counter
        if m.account_source is None:
            return
        account = m.account_source()
        for name, help_text, value in (
            ("equity", "Account equity", account.equity),
            ("realized_pnl", "Realized PnL", account.realized_pnl),
            ("unrealized_pnl", "Unrealized PnL", account.unrealized_pnl),
        ):
            family = GaugeMetricFamily(f"kubetrade_{name}", help_text, labels=["session"])
            family.add_metric([m.session], value)
            yield family


class _FeedCollector(Collector):
    def __init__(self, session: str, health: FeedHealth) -> None:
        self._session = session
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        h, labels = self._health, [self._session, self._health.provider]
        names = ["session", "provider"]
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
        ):
            counter = CounterMetricFamily(f"kubetrade_marketdata_{name}", help_text, labels=names)
            counter.add_metric(labels, float(value))
            yield counter
