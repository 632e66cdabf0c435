"""What the watches said last: sessions, their runner pods, ConfigMaps and claims, in
memory, by session.

kopf's watch events feed it (handlers.py) before they ask for a reconciliation, so a pass
that starts after an event sees at least what that event said. The reconciler plans from
it first: a pass that finds nothing to do and nothing new to say costs no API request at
all, which is what most passes at a thousand sessions are. A pass that must act reads
afresh from the API server and acts on that (reconcile.py): the cache may be a moment
behind, and the rules that keep a session to one runner pod are kept on quorum reads.

Children are known by their labels (`kubetrade.io/session`), as the operator made them;
the watches are label-selected, so nothing else of the cluster is held here. Only what
planning reads is kept of each object: a pod's managedFields, for one, are dropped.

An event that only echoes the operator's own write (the object at the resourceVersion
its write returned: a status written, a pod created) updates the cache but asks for no
pass: the pass that wrote it has already taken that step, and what follows waits for
someone else's change (a kubelet's, a person's). At a thousand sessions that is most of
the events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from kubetrade.operator.children import LABEL_SESSION

Obj = dict[str, Any]
Key = tuple[str, str]  # namespace, session name

_ECHOES: Final = 4  # own writes of one object remembered until their events come


def _slim(obj: Obj) -> Obj:
    """The object without what no plan reads: managedFields, and of a pod's spec all but
    its node and its containers' ports (a pod is otherwise most of the cache's bytes)."""
    meta = obj.get("metadata") or {}
    slim = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    if obj.get("kind") == "Pod" and "spec" in obj:
        spec = obj["spec"]
        containers = [
            {"name": c.get("name"), "ports": c.get("ports") or []}
            for c in spec.get("containers") or []
        ]
        slim["spec"] = {"nodeName": spec.get("nodeName"), "containers": containers}
    return slim


def _session_of(obj: Obj) -> Key | None:
    meta = obj.get("metadata") or {}
    session = (meta.get("labels") or {}).get(LABEL_SESSION)
    namespace = meta.get("namespace")
    return (namespace, session) if session and namespace else None


@dataclass
class Cache:
    sessions: dict[Key, Obj] = field(default_factory=dict)
    pods: dict[Key, dict[str, Obj]] = field(default_factory=dict)  # by session, by name
    config_maps: dict[Key, dict[str, Obj]] = field(default_factory=dict)
    claims: dict[Key, dict[str, Obj]] = field(default_factory=dict)
    # (resource, namespace, name) -> resourceVersions the operator's own writes returned
    # (a pass may write one object twice: the finalizer, then the status)
    _echoes: dict[tuple[str, str, str], deque[str]] = field(default_factory=dict)

    def wrote(self, resource: str, answer: Obj) -> None:
        """The operator wrote an object and the API server answered with it."""
        meta = answer.get("metadata") or {}
        version = meta.get("resourceVersion")
        if version and meta.get("name") and answer.get("kind") != "Status":
            where = (resource, meta.get("namespace") or "", meta["name"])
            self._echoes.setdefault(where, deque(maxlen=_ECHOES)).append(str(version))

    def session_event(self, kind: str | None, body: Obj) -> Key | None:
        """Keep the session; its key if the event is news (not an echo of our write)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self.sessions.pop(key, None)
        else:
            self.sessions[key] = _slim(body)
        return key if self._news("sessions", kind, body) else None

    def pod_event(self, kind: str | None, body: Obj) -> Key | None:
        return self._child("pods", self.pods, kind, body)

    def config_map_event(self, kind: str | None, body: Obj) -> Key | None:
        return self._child("configmaps", self.config_maps, kind, body)

    def claim_event(self, kind: str | None, body: Obj) -> Key | None:
        return self._child("persistentvolumeclaims", self.claims, kind, body)

    def _news(self, resource: str, kind: str | None, body: Obj) -> bool:
        meta = body["metadata"]
        where = (resource, meta.get("namespace") or "", meta["name"])
        if kind == "DELETED":
            self._echoes.pop(where, None)
            return True
        echoes = self._echoes.get(where)
        version = meta.get("resourceVersion")
        if echoes is None or version not in echoes:
            return True  # someone else's change (or ours, seen before its answer came)
        echoes.remove(version)
        if not echoes:
            del self._echoes[where]
        return False

    def children(self, key: Key) -> tuple[list[Obj], dict[str, Obj], dict[str, Obj]]:
        """The session's runner pods, and its ConfigMaps and claims by name."""
        return (
            list(self.pods.get(key, {}).values()),
            self.config_maps.get(key, {}),
            self.claims.get(key, {}),
        )

    def pod_gone(self, key: Key, name: str) -> None:
        """A read found the pod gone: its DELETED event was missed (a watch that relists
        after a gap does not send one), so the cache must not keep it."""
        pods = self.pods.get(key)
        if pods is not None:
            pods.pop(name, None)

    def _child(
        self, resource: str, store: dict[Key, dict[str, Obj]], kind: str | None, body: Obj
    ) -> Key | None:
        news = self._news(resource, kind, body)
        key = _session_of(body)
        name = body["metadata"]["name"]
        if key is None:
            # Its session label was edited away: no longer this cache's, wherever it was;
            # its session is told (the pod may still be its runner, found by its name).
            uid = body["metadata"].get("uid")
            for owner, by_name in store.items():
                if (by_name.get(name) or {}).get("metadata", {}).get("uid") == uid:
                    del by_name[name]
                    return owner
            return None
        if kind == "DELETED":
            known = store.get(key)
            if known is not None:
                known.pop(name, None)
                if not known:
                    del store[key]
        else:
            store.setdefault(key, {})[name] = _slim(body)
        return key if news else None
