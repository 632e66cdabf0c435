"""The operator's Prometheus metrics: sessions by phase, reconciliations (their duration,
errors and queue), rollbacks and API errors.

One registry per process (the operator is one process); the reconciler and the API
client report into it through `ObservedReconciler` and `ObservedKube` (observe.py), so
the code that does the work carries no metrics calls. Nothing here is on a hot path: a
reconciliation takes milliseconds, so prometheus_client's own metric types do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubetrade.operator.status import Phase
from kubetrade.runner.telemetry.build_info import BuildCollector

PHASES: Final = tuple(get_args(Phase))
# Seconds: a reconciliation is a handful of API calls, slower when it resolves an OCI tag
# or waits on a runner's /status (3 s at most).
_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.reconciliations = Counter(
            "kubetrade_operator_reconciliations",
            "Reconciliations of one session, by result (ok, error)",
            ["result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "kubetrade_operator_reconcile_errors",
            "Reconciliations that failed (kopf retries them)",
            registry=r,
        )
        self.duration = Histogram(
            "kubetrade_operator_reconcile_duration_seconds",
            "Time of one reconciliation, waiting for the session's turn not included",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "kubetrade_operator_queue_depth",
            "Reconciliations asked for and not yet done (waiting for their session or running)",
            registry=r,
        )
        self.rollbacks = Counter(
            "kubetrade_operator_rollbacks",
            "Sessions rolled back to their last stable spec",
            registry=r,
        )
        self.api_errors = Counter(
            "kubetrade_operator_api_errors",
            "Kubernetes API requests refused (by HTTP code) or unanswered (code 'unreachable');"
            " 404 and 409 are the normal course: a lookup of something absent, a lost race",
            ["method", "code"],
            registry=r,
        )
        self.leader = Gauge(
            "kubetrade_operator_leader",
            "1 while this operator reconciles (standalone, or holding the leader lease), 0 while"
            " it is a standby",
            registry=r,
        )
        for result in ("ok", "error"):
            self.reconciliations.labels(result)  # both series from the start, at 0
        # Per session (namespace, name): the phase its status was last given.
        self.phases: dict[tuple[str, str], str] = {}
        r.register(_PhaseCollector(self))
        r.register(BuildCollector("operator"))

    def phase(self, namespace: str, name: str, phase: str) -> None:
        self.phases[namespace, name] = phase

    def forget(self, namespace: str, name: str) -> None:
        self.phases.pop((namespace, name), None)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _PhaseCollector(Collector):
    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = dict.fromkeys(PHASES, 0)
        for phase in list(self._metrics.phases.values()):
            counts[phase] = counts.get(phase, 0) + 1
        family = GaugeMetricFamily(
            "kubetrade_operator_sessions",
            "LiveTradingSessions the operator serves, by status.phase",
            labels=["phase"],
        )
        for phase, count in counts.items():
            family.add_metric([phase], float(count))
        yield family
