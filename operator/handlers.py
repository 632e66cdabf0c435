"""kopf wiring: every trigger runs the same level-based reconciliation.

There is no create handler, no update handler and no diff: a session event, a runner
pod event and a periodic resync all call `Reconciler.reconcile`, which converges the
session's children to what its current spec asks for. Only deletion has a handler of its
own, because kopf holds the finalizer until it returns: it returns once the runner pod
has stopped.

kopf's own bookkeeping (finalizer, progress of the deletion handler, last-handled
configuration) is kept in annotations under kubetrade.io, and nothing watches CRDs or
namespaces, so the operator needs no permissions beyond its own resources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import kopf

from kubetrade.operator.children import FINALIZER, LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY
from kubetrade.operator.crd import PLURAL
from kubetrade.operator.login import Login
from kubetrade.operator.reconcile import Reconciler
from kubetrade.runner.spec import GROUP, VERSION

RESYNC_SECONDS: Final = 10.0  # how stale a status or a missed event may get
STOP_POLL_SECONDS: Final = 1.0  # how often deletion looks again for a stopping runner


def _namespaced(namespace: str | None) -> str:
    if namespace is None:  # sessions and pods are namespaced; kopf types allow for others
        raise kopf.PermanentError("a namespaced object without a namespace")
    return namespace


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Our events are posted by the reconciler, with reasons a person can act on.
    settings.posting.enabled = False
    # No CRD or namespace watching: the served resources and namespaces are fixed at start.
    settings.scanning.disabled = True
    # Only runner pods travel from the API server, not every pod of the cluster.
    settings.watching.label_selectors["v1", "pods"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    return settings


def build_registry(
    reconciler: Reconciler, login: Login, *, resync_seconds: float = RESYNC_SECONDS
) -> kopf.OperatorRegistry:
    """A kopf registry whose every handler converges one session."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def log_in(**_: Any) -> kopf.ConnectionInfo:
        # kopf acts as the same identity as the reconciler. It asks at start and again
        # when the API server refuses what it has (a rotated token): read it afresh.
        return login.info(refresh=True)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def session_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
        if type != "DELETED":
            await reconciler.reconcile(_namespaced(namespace), name)

    @kopf.on.event(
        "v1",
        "pods",
        labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_SESSION: kopf.PRESENT},
        registry=registry,
    )
    async def runner_pod_event(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
        # A runner pod changed (started, became ready, crashed, went away): its session
        # may have a step to take, e.g. create the successor of a pod that is now gone.
        await reconciler.reconcile(_namespaced(namespace), labels[LABEL_SESSION])

    @kopf.timer(GROUP, VERSION, PLURAL, interval=resync_seconds, registry=registry)
    async def resync(name: str, namespace: str | None, **_: Any) -> None:
        # Refreshes the runner's figures and heals anything an event did not report.
        await reconciler.reconcile(_namespaced(namespace), name)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def stop_runner(name: str, namespace: str | None, **_: Any) -> None:
        # kopf removes the finalizer only when this returns: the runner gets its SIGTERM
        # and grace period, finishes its bar and exits before the session is gone. Waiting
        # here rather than raising kopf.TemporaryError keeps kopf from logging an error
        # for what is the normal course of a deletion.
        while True:
            if await reconciler.reconcile(_namespaced(namespace), name):
                return
            await asyncio.sleep(STOP_POLL_SECONDS)  # the runner has its grace period to stop

    return registry
