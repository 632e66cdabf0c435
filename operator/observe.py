"""The reconciler and the API client, observed: what they do, counted into the operator's
metrics (metrics.py) without a metrics call inside the code that does the work."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from kubetrade.operator import children
from kubetrade.operator.kube import ApiError, Kube, Obj
from kubetrade.operator.metrics import OperatorMetrics
from kubetrade.operator.plan import Observed, Plan, previous_status
from kubetrade.operator.reconcile import Reconciler


class ObservedKube(Kube):
    """Counts every refused or unanswered request, by method and code."""

    metrics: OperatorMetrics

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        fenced: bool = True,
        metadata_only: bool = False,
    ) -> Obj:
        try:
            return await super().request(
                method,
                path,
                body=body,
                params=params,
                content_type=content_type,
                fenced=fenced,
                metadata_only=metadata_only,
            )
        except ApiError as exc:
            self.metrics.api_errors.labels(method, str(exc.status)).inc()
            raise
        except (aiohttp.ClientError, TimeoutError):
            self.metrics.api_errors.labels(method, "unreachable").inc()
            raise


class ObservedReconciler(Reconciler):
    """Times each reconciliation, counts its result, and notes the phase it recorded."""

    metrics: OperatorMetrics

    async def reconcile(self, namespace: str, name: str) -> float | None:
        metrics = self.metrics
        started = time.monotonic()
        try:
            after = await super().reconcile(namespace, name)
        except BaseException:
            metrics.reconciliations.labels("error").inc()
            metrics.reconcile_errors.inc()
            raise
        finally:
            metrics.duration.observe(time.monotonic() - started)
        metrics.reconciliations.labels("ok").inc()
        if after is None:  # deleted: no longer served
            metrics.forget(namespace, name)
        return after

    async def _record(self, observed: Observed, step: Plan, *, precondition: bool = False) -> bool:
        recorded = await super()._record(observed, step, precondition=precondition)
        if recorded:
            session = observed.session
            meta = session["metadata"]
            phase = step.outcome.phase
            previous = previous_status(session)
            if phase == "RolledBack" and (previous is None or previous.phase != "RolledBack"):
                self.metrics.rollbacks.inc()
            self.metrics.phase(meta["namespace"], meta["name"], phase)
        return recorded


def observed(
    kube: Kube, settings: children.RunnerSettings, metrics: OperatorMetrics, **options: Any
) -> ObservedReconciler:
    """A reconciler reporting into `metrics` (its API client must be an ObservedKube);
    `options` as Reconciler's."""
    reconciler = ObservedReconciler(kube, settings, **options)
    reconciler.metrics = metrics
    return reconciler
