"""The node agent's light mode: pods that look Running and Ready, and runners that answer
/status, without a process behind them.

For the operator's scale benchmark (benchmarks/bench_operator_scale.py), where a thousand
real runners would measure the runners, not the operator. A `LightPod` reports its pod
Running and Ready as soon as it is bound here (one status write), and, once it is
deleted, terminated with exit code 0 and then gone (one status write, one delete), as a
runner that finishes its bar at SIGTERM would. No volumes, no probes, no Events: the
API server's load is the operator's, plus what a kubelet cannot avoid.

Each pod gets its own loopback address as its podIP (as in process mode) and its
`metrics` containerPort is served there by `StatusServer`: one aiohttp application with
one listening site per pod, so the operator reads `http://podIP:port/status` as it reads a
real runner's. The figures are made up from the time since the pod started: `pace` bars
a second (default 1: every read the operator makes, at most every few seconds, sees new
figures, which is what a 1 s session does to a real runner's /status and the worst case
for status writes), an order every 10 bars, equity drifting, no strategy error, ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .kubeclient import ApiError, KubeClient

log = logging.getLogger("node_agent.light")

Obj = dict[str, Any]
BAR_MS = 1000  # the made-up bars are 1 s bars


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def figures(started: float, now: float, pace: float) -> Obj:
    """A runner's /status as `kubetrade run` answers it, `now - started` seconds in."""
    bars = int(max(0.0, now - started) * pace)
    orders = bars // 10
    return {
        "bars": bars,
        "orders": orders,
        "fills": orders,
        "rejected": 0,
        "realized_pnl": round(math.sin(bars / 50) * 100, 2),
        "unrealized_pnl": round(math.cos(bars / 30) * 20, 2),
        "equity": round(10000 + math.sin(bars / 50) * 100, 2),
        "strategy_errors": 0,
        "duration_s": round(now - started, 3),
        "ready": True,
        "real_money": False,
        "last_bar_time": int(started * 1000) + bars * BAR_MS if bars else None,
    }


@dataclass
class StatusServer:
    """/status (and /healthz, /readyz) for every light pod, each on podIP:port."""

    pace: float = 1.0
    _runner: web.AppRunner | None = None
    _sites: dict[tuple[str, int], web.TCPSite] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)  # pod IP -> monotonic start

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_get("/healthz", self._ok)
        app.router.add_get("/readyz", self._ok)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve(self, ip: str, port: int) -> None:
        """Answer for the pod at ip:port from now on (its runner just started)."""
        assert self._runner is not None
        self._started[ip] = time.monotonic()
        if (ip, port) not in self._sites:
            site = web.TCPSite(self._runner, ip, port, reuse_address=True)
            await site.start()
            self._sites[ip, port] = site

    async def forget(self, ip: str, port: int) -> None:
        """The pod's runner stopped: nothing answers at ip:port any more."""
        self._started.pop(ip, None)
        site = self._sites.pop((ip, port), None)
        if site is not None:
            await site.stop()

    async def _status(self, request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        started = self._started.get(sockname[0]) if sockname else None
        if started is None:
            return web.Response(status=503, text="not running\n")
        return web.json_response(figures(started, time.monotonic(), self.pace))

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")


def metrics_port(pod: Obj) -> int | None:
    """The first container's `metrics` port (the runner's), or its first TCP port."""
    ports = (pod["spec"].get("containers") or [{}])[0].get("ports") or []
    named = [p for p in ports if p.get("name") == "metrics"] or ports
    return int(named[0]["containerPort"]) if named else None


class LightPod:
    """One pod on a light node: Running and Ready at once, terminated when deleted."""

    def __init__(
        self, *, client: KubeClient, pod: Obj, pod_ip: str, host_ip: str, server: StatusServer
    ) -> None:
        self.client = client
        self.pod = pod
        self.pod_ip = pod_ip
        self.host_ip = host_ip
        self.server = server
        meta = pod["metadata"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.port = metrics_port(pod)
        self.started_at = _now()
        self.stopping = asyncio.Event()
        self.gone = False
        self.node_shutdown = False  # the agent stops: the pod object stays as it is

    # The agent's calls, as for a PodWorker.
    def update(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.stopping.set()

    def deleted(self, pod: Obj) -> None:
        self.gone = True
        self.stopping.set()

    def stop(self, grace: float) -> None:
        self.stopping.set()

    async def run(self) -> None:
        if self.port is not None:
            try:
                await self.server.serve(self.pod_ip, self.port)
            except OSError as exc:  # the address is taken: say so, the pod still "runs"
                log.warning("%s: cannot serve %s:%s: %s", self.key, self.pod_ip, self.port, exc)
        try:
            await self._publish(self._status(running=True))
            await self.stopping.wait()
        finally:
            if self.port is not None:
                await self.server.forget(self.pod_ip, self.port)
            if not (self.gone or self.node_shutdown):
                await self._publish(self._status(running=False))
                await self._delete()

    def _status(self, *, running: bool) -> Obj:
        container = self.pod["spec"]["containers"][0]
        state: Obj
        if running:
            state = {"running": {"startedAt": self.started_at}}
        else:
            state = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": self.started_at,
                    "finishedAt": _now(),
                }
            }
        ready = "True" if running else "False"
        conditions = [
            {"type": kind, "status": status, "lastTransitionTime": _now(), "lastProbeTime": None}
            for kind, status in (
                ("PodReadyToStartContainers", ready),
                ("Initialized", "True"),
                ("ContainersReady", ready),
                ("Ready", ready),
            )
        ]
        scheduled = [
            c for c in (self.pod.get("status") or {}).get("conditions") or []
            if c["type"] == "PodScheduled"
        ]  # fmt: skip
        return {
            "phase": "Running" if running else "Succeeded",
            "conditions": [*conditions, *scheduled],
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.started_at,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"kubetrade-light://{self.pod['metadata']['uid'][:12]}",
                    "ready": running,
                    "started": running,
                    "restartCount": 0,
                    "state": state,
                    "lastState": {},
                }
            ],
        }

    async def _publish(self, status: Obj) -> None:
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        for attempt in range(5):
            try:
                # The uid precondition keeps a stale worker off a new pod of the same name.
                body = {"metadata": {"uid": meta["uid"]}, "status": status}
                self.pod = await self.client.merge_patch(path, body)
                return
            except ApiError as exc:
                if exc.status in (404, 409, 422):  # gone or replaced
                    return
                log.warning("%s: status update failed (%s), attempt %d", self.key, exc, attempt)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("%s: status update failed (%s), attempt %d", self.key, exc, attempt)
            await asyncio.sleep(0.5 * (attempt + 1))

    async def _delete(self) -> None:
        meta = self.pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.client.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body
            )
