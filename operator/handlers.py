"""kopf wiring: every event feeds the cache and asks for a pass of its session.

There is no create handler, no update handler, no timer and no diff: a session event, a
runner pod, ConfigMap or claim event each update the watches' cache (cache.py) and ask
the work queue (workqueue.py) for a pass of the session, which converges the session's
children to what its current spec asks for (reconcile.py); the queue also looks at each
session again when its pass said it should (figures due, probation, resync). The
operator keeps its finalizer itself, so kopf writes nothing: no finalizer, no progress or
last-handled-configuration annotations.

Watches carry only what the operator owns: sessions, and pods, ConfigMaps and claims
labelled `app.kubernetes.io/managed-by: kubetrade-operator`, selected by the API server.
Nothing watches CRDs or namespaces, so the operator needs no permissions beyond its own
resources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from kubetrade.operator.cache import Cache, Key, Obj
from kubetrade.operator.children import LABEL_MANAGED_BY, MANAGED_BY
from kubetrade.operator.crd import PLURAL
from kubetrade.operator.login import Login
from kubetrade.operator.workqueue import WorkQueue
from kubetrade.runner.spec import GROUP, VERSION

IDLE_WORKER_SECONDS: Final = 0.5
# Objects per page of a watch's first listing (a start, a takeover, a relist after a gap):
# unpaged, the listing of a thousand runner pods is ~10 MB of JSON parsed into ~50 MB of
# dicts at once, all alive until the last of them is handled; a page of 100 is a tenth.
LIST_PAGE: Final = 100

# The operator's children, as the API server selects them for a watch.
CHILDREN: dict[str, Callable[[Cache], Callable[[str | None, Obj], Key | None]]] = {
    "pods": lambda cache: cache.pod_event,
    "configmaps": lambda cache: cache.config_map_event,
    "persistentvolumeclaims": lambda cache: cache.claim_event,
}


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled state: no handler of ours compares an object with one, and kopf
    would otherwise deep-copy every object of every event to build it (an eighth of the
    operator's CPU while a thousand sessions are applied)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> None:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = NoDiffBase()
    # kopf runs a worker task per object, kept for `idle_timeout` after its last event
    # (5 s by default). Our handlers only feed the cache, so a worker is done at once;
    # kept 5 s, a thousand sessions applied or rolled at once held some four thousand
    # idle workers (sessions, pods, ConfigMaps, claims) and their frames in memory.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    settings.watching.chunk_size = LIST_PAGE
    # Our events are posted by the reconciler, with reasons a person can act on.
    settings.posting.enabled = False
    # No CRD or namespace watching: the served resources and namespaces are fixed at start.
    settings.scanning.disabled = True
    # Only the operator's children travel from the API server, not every pod, ConfigMap
    # and claim of the cluster.
    for kind in CHILDREN:
        settings.watching.label_selectors["v1", kind] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    return settings


def build_registry(queue: WorkQueue, cache: Cache, login: Login) -> kopf.OperatorRegistry:
    """A kopf registry whose every handler feeds `cache` and kicks a pass on `queue`."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def log_in(**_: Any) -> kopf.ConnectionInfo:
        # kopf acts as the same identity as the reconciler. It asks at start and again
        # when the API server refuses what it has (a rotated token): read it afresh.
        return login.info(refresh=True)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def session_event(event: Mapping[str, Any], **_: Any) -> None:
        # A deleted session gets one more pass too: it finds the session gone and forgets it.
        key = cache.session_event(event.get("type"), event["object"])
        if key is not None:
            queue.kick(*key, urgent=True)  # created, changed or deleted: a pod may follow

    for kind, feed in CHILDREN.items():
        kopf.on.event("v1", kind, id=f"{kind}_event", registry=registry)(
            _child_handler(feed(cache), queue)
        )
    return registry


def _child_handler(
    feed: Callable[[str | None, Obj], Key | None], queue: WorkQueue
) -> Callable[..., Any]:
    async def child_event(event: Mapping[str, Any], **_: Any) -> None:
        # A child changed (a runner started, became ready, crashed, went away; a file or
        # claim edited): its session may have a step to take.
        kind = event.get("type")
        key = feed(kind, event["object"])
        if key is not None:
            # A child gone may have a successor waiting; other changes only describe.
            queue.kick(*key, urgent=kind == "DELETED")

    return child_event
