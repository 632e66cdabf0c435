"""Watching what the API server reports while a test acts: every runner pod and session
event of one namespace, recorded in a thread, to check afterwards what no single look at
the cluster can: that a session never had two runner pods at once, in which order its pods
came and went, what its status said on the way.

    with recording(cluster, namespace) as seen:
        ...  # apply, patch, delete
    assert seen.most_runner_pods_at_once() == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .cluster import Cluster
from .kubeclient import KubeClient, load_credentials

Obj = dict[str, Any]


@dataclass
class Seen:
    at: float
    resource: str  # "pod" or "session"
    kind: str  # ADDED, MODIFIED, DELETED
    obj: Obj


@dataclass
class Recorder:
    """Every pod and session event of one namespace, in the API server's order per resource."""

    events: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, resource: str) -> list[Seen]:
        with self.lock:
            return [e for e in self.events if e.resource == resource]

    def most_runner_pods_at_once(self) -> int:
        present: set[str] = set()
        most = 0
        for seen in self.of("pod"):
            uid = seen.obj["metadata"]["uid"]
            if seen.kind == "DELETED":
                present.discard(uid)
            else:
                present.add(uid)  # a terminating pod is still a pod
            most = max(most, len(present))
        return most

    def most_runner_pods_per_session(self) -> dict[str, int]:
        """For each session (its pods' kubetrade.io/session label), the most runner pods
        it had at once."""
        present: dict[str, set[str]] = {}
        most: dict[str, int] = {}
        for seen in self.of("pod"):
            meta = seen.obj["metadata"]
            session = (meta.get("labels") or {}).get("kubetrade.io/session", "")
            pods = present.setdefault(session, set())
            if seen.kind == "DELETED":
                pods.discard(meta["uid"])
            else:
                pods.add(meta["uid"])
            most[session] = max(most.get(session, 0), len(pods))
        return most

    def pod_uids(self) -> list[str]:
        uids: list[str] = []
        for seen in self.of("pod"):
            uid = seen.obj["metadata"]["uid"]
            if uid not in uids:
                uids.append(uid)
        return uids

    def last_container_state(self, uid: str) -> Obj:
        state: Obj = {}
        for seen in self.of("pod"):
            if seen.obj["metadata"]["uid"] == uid:
                statuses = seen.obj.get("status", {}).get("containerStatuses") or []
                state = statuses[0].get("state", state) if statuses else state
        return state


@contextlib.contextmanager
def recording(cluster: Cluster, namespace: str) -> Iterator[Recorder]:
    """Watch the namespace's runner pods and sessions in a thread while the block runs."""
    recorder = Recorder()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    tasks: list[asyncio.Task[None]] = []

    async def follow(client: KubeClient, path: str, resource: str) -> None:
        async for kind, obj in client.watch(path):
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                with recorder.lock:
                    recorder.events.append(Seen(time.monotonic(), resource, kind, obj))
            elif kind == "SYNCED" and resource == "pod":
                started.set()

    async def main() -> None:
        async with KubeClient(load_credentials(cluster.kubeconfig)) as client:
            sessions = f"/apis/kubetrade.io/v1alpha1/namespaces/{namespace}/livetradingsessions"
            tasks.extend(
                [
                    asyncio.create_task(
                        follow(client, f"/api/v1/namespaces/{namespace}/pods", "pod")
                    ),
                    asyncio.create_task(follow(client, sessions, "session")),
                ]
            )
            # return_exceptions: wait for both watches to end, not just the first.
            await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30), "the pod watch did not start"
    try:
        yield recorder
    finally:
        for task in tasks:
            loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        loop.close()
