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
planning reads is kept of each object (a pod's managedFields, for one, are dropped), and
it is kept as compact JSON text, parsed again when a pass asks: parsed, the four objects
of a session take ~37 KiB of small dicts and strings, as text ~9 KiB (1,050 sessions: ~38
vs ~10 MB), and a watch event's parsed body is then freed whole, rather than leaving some
of its small objects pinned across the allocator's pools. Parsing them back costs a pass
~0.1 ms; each caller gets objects of its own.

An event that only echoes the operator's own write (the object at the resourceVersion
its write returned: a status written, a pod created) updates the cache but asks for no
pass: the pass that wrote it has already taken that step, and what follows waits for
someone else's change (a kubelet's, a person's). At a thousand sessions that is most of
the events.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from kubetrade.operator.children import LABEL_SESSION

Obj = dict[str, Any]
Key = tuple[str, str]  # namespace, session name

_ECHOES: Final = 4  # own writes of one object remembered until their events come
# Never read by a plan, and large: every field the API server's field manager tracks, and
# `kubectl apply`'s copy of the whole object as last applied.
_UNREAD_METADATA: Final = frozenset({"managedFields"})
_UNREAD_ANNOTATIONS: Final = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


class _Kept(NamedTuple):
    uid: str | None  # to find a child whose session label was edited away
    text: str  # the slimmed object as compact JSON


def _slim(obj: Obj) -> Obj:
    """The object without what no plan reads: managedFields, kubectl's last-applied
    annotation, and of a pod's spec all but its node and its containers' ports (a pod is
    otherwise most of the cache's bytes)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _UNREAD_METADATA}
    annotations = meta.get("annotations")
    if annotations and not _UNREAD_ANNOTATIONS.isdisjoint(annotations):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _UNREAD_ANNOTATIONS}
    slim = {**obj, "metadata": meta}
    if obj.get("kind") == "Pod" and "spec" in obj:
        spec = obj["spec"]
        containers = [
            {"name": c.get("name"), "ports": c.get("ports") or []}
            for c in spec.get("containers") or []
        ]
        slim["spec"] = {"nodeName": spec.get("nodeName"), "containers": containers}
    return slim


def _keep(obj: Obj) -> _Kept:
    return _Kept(obj["metadata"].get("uid"), json.dumps(_slim(obj), separators=(",", ":")))


def _parsed(kept: _Kept) -> Obj:
    parsed: Obj = json.loads(kept.text)
    return parsed


def _session_of(obj: Obj) -> Key | None:
    meta = obj.get("metadata") or {}
    session = (meta.get("labels") or {}).get(LABEL_SESSION)
    namespace = meta.get("namespace")
    return (namespace, session) if session and namespace else None


@dataclass
class Cache:
    sessions: dict[Key, _Kept] = field(default_factory=dict)
    pods: dict[Key, dict[str, _Kept]] = field(default_factory=dict)  # by session, by name
    config_maps: dict[Key, dict[str, _Kept]] = field(default_factory=dict)
    claims: dict[Key, dict[str, _Kept]] = field(default_factory=dict)
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
            self.sessions[key] = _keep(body)
        return key if self._news("sessions", kind, body) else None

    def session(self, key: Key) -> Obj | None:
        """The session as its watch said last, or None if it did not (or said deleted)."""
        kept = self.sessions.get(key)
        return None if kept is None else _parsed(kept)

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
            [_parsed(kept) for kept in self.pods.get(key, {}).values()],
            {name: _parsed(kept) for name, kept in self.config_maps.get(key, {}).items()},
            {name: _parsed(kept) for name, kept in self.claims.get(key, {}).items()},
        )

    def pod_gone(self, key: Key, name: str) -> None:
        """A read found the pod gone: its DELETED event was missed (a watch that relists
        after a gap does not send one), so the cache must not keep it."""
        pods = self.pods.get(key)
        if pods is not None:
            pods.pop(name, None)

    def _child(
        self, resource: str, store: dict[Key, dict[str, _Kept]], kind: str | None, body: Obj
    ) -> Key | None:
        news = self._news(resource, kind, body)
        key = _session_of(body)
        name = body["metadata"]["name"]
        if key is None:
            # Its session label was edited away: no longer this cache's, wherever it was;
            # its session is told (the pod may still be its runner, found by its name).
            uid = body["metadata"].get("uid")
            for owner, by_name in store.items():
                kept = by_name.get(name)
                if kept is not None and kept.uid == uid:
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
            store.setdefault(key, {})[name] = _keep(body)
        return key if news else None
