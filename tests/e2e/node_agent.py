"""The node agent: plays the kubelet (and the scheduler's binding step) for the e2e tests.

    PYTHONPATH=tests python -m e2e.node_agent --kubeconfig NODE.kubeconfig \
        --binder-kubeconfig SCHED.kubeconfig [--provisioner-kubeconfig PROV.kubeconfig] \
        --node-name NAME --work-dir DIR \
        [--kubetrade PATH] [--runtime process|podman [--insecure-registry HOST:PORT]...] \
        [--light [--light-pace BARS_PER_S]] [--exit-on-stdin-eof]

It registers a Ready Node, binds unscheduled pods to it (as the scheduler would, with the
binder identity, system:kube-scheduler), and runs every pod bound to it as local processes
(see node_pod.py and node_files.py for the rules), or, with `--runtime podman`, as
containers of their images (node_container.py; podman runs with the caller's
CONTAINERS_CONF, which the harness takes from scripts/containers/env.sh). With a
provisioner identity it also provisions the node-local volumes of PersistentVolumeClaims
(node_storage.py). With `--light` it runs nothing: pods are reported Running and Ready at
once and their runners' /status is made up (node_light.py), for the operator's scale
benchmark. It runs as its
own process with its own log, authenticated as system:node:NAME in group system:nodes, so
the API server's Node authorizer and NodeRestriction admission hold it to exactly what a
kubelet may do.

It is a module of the tests.e2e package so that it can share kubeclient.py; with tests/ on
PYTHONPATH (the harness sets it) it runs as `python -m e2e.node_agent`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from . import node_container
from .kubeclient import ApiError, KubeClient, load_credentials
from .node_light import LightPod, StatusServer
from .node_pod import PODMAN, PROCESS, AgentSettings, PodWorker, now
from .node_storage import Provisioner

log = logging.getLogger("node_agent")

Obj = dict[str, Any]

AGENT_VERSION = "kubetrade-node-agent/0.1"
HEARTBEAT_SECONDS = 20


class PodAddresses:
    """Hands out one loopback address per pod from a /16 of 127.0.0.0/8 chosen at random,
    so two agents on one machine (two test runs) rarely pick the same addresses."""

    def __init__(self) -> None:
        self._base = random.randrange(16, 250)
        self._next = 2
        self._free: list[str] = []

    def take(self) -> str:
        if self._free:
            return self._free.pop()
        n, self._next = self._next, self._next + 1
        return f"127.{self._base}.{n // 256}.{n % 256}"

    def give_back(self, address: str) -> None:
        self._free.append(address)


class NodeAgent:
    def __init__(
        self,
        settings: AgentSettings,
        node: KubeClient,
        binder: KubeClient | None,
        provisioner: KubeClient | None = None,
        light: StatusServer | None = None,
    ):
        self.settings = settings
        self.node = node
        self.binder = binder
        self.provisioner = provisioner
        self.light = light  # light mode: pods run nothing, their /status is made up
        self.workers: dict[str, PodWorker | LightPod] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.finished: set[str] = set()
        self.addresses = PodAddresses()

    @property
    def name(self) -> str:
        return self.settings.node_name

    async def run(self, stop: asyncio.Event) -> None:
        await self.register()
        loops: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.heartbeat(), name="heartbeat"),
            asyncio.create_task(self.kubelet(), name="kubelet"),
        ]
        if self.binder is not None:
            loops.append(asyncio.create_task(self.bind_unscheduled(), name="binder"))
        if self.provisioner is not None:
            volumes = Provisioner(
                self.provisioner,
                node_name=self.name,
                directory=self.settings.work_dir / "persistent-volumes",
            )
            loops.append(asyncio.create_task(volumes.run(), name="provisioner"))
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*loops, waiter], return_when=asyncio.FIRST_COMPLETED)
        for task in loops:
            task.cancel()
        for task in done:
            if task is not waiter and not task.cancelled() and task.exception():
                log.error("%s failed", task.get_name(), exc_info=task.exception())
        await self.shutdown()

    async def shutdown(self) -> None:
        # Like a node going down: processes get a short grace, pod objects stay.
        for worker in self.workers.values():
            worker.node_shutdown = True
            worker.stop(
                min(5.0, float(worker.pod["spec"].get("terminationGracePeriodSeconds", 30)))
            )
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=15)

    # --- the Node object -----------------------------------------------------------------

    def _node_status(self) -> Obj:
        stamp = now()

        def condition(kind: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self._started,
            }

        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 1024}Ki",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        return {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition(
                    "Ready", "True", "KubeletReady", f"{AGENT_VERSION} is posting ready status"
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.settings.host_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": (
                    "kubetrade e2e node agent (podman containers)"
                    if self.settings.runtime == PODMAN
                    else "kubetrade e2e node agent (local processes)"
                ),
                "containerRuntimeVersion": (
                    "podman://"
                    if self.settings.runtime == PODMAN
                    else AGENT_VERSION.replace("/", "://")
                ),
                "kubeletVersion": "v0.0.0-kubetrade",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register(self) -> None:
        self._started = now()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubetrade.io/node-agent": "true",
                },
            },
        }
        try:
            await self.node.create("/api/v1/nodes", body)
        except ApiError as exc:
            if exc.status != 409:  # already registered by an earlier run: take it over
                raise
        await self.node.merge_patch(
            f"/api/v1/nodes/{self.name}/status", {"status": self._node_status()}
        )
        log.info("node %s registered and Ready", self.name)

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                body = {"status": self._node_status()}
                await self.node.merge_patch(f"/api/v1/nodes/{self.name}/status", body)
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("heartbeat failed: %s", exc)

    # --- Services: names for container mode's /etc/hosts -----------------------------------

    async def service_hosts(self, namespace: str) -> dict[str, str]:
        """Each Service's names, as a pod in `namespace` may write them, to the IP of a ready
        pod on this node that it selects. The cluster has no DNS and no Service routing, so
        a name leads to one pod, at the Service's port: that works where the port is the
        pod's containerPort (the agent's proxy listens there)."""
        try:
            listing = await self.node.get("/api/v1/services")
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("listing Services failed: %s", exc)
            return {}
        hosts: dict[str, str] = {}
        for service in listing.get("items") or []:
            name, where = service["metadata"]["name"], service["metadata"]["namespace"]
            selector = service["spec"].get("selector") or {}
            ready = [
                worker
                for worker in self.workers.values()
                if isinstance(worker, PodWorker)
                and selector
                and worker.pod["metadata"]["namespace"] == where
                and not worker.pod["metadata"].get("deletionTimestamp")
                and selector.items() <= (worker.pod["metadata"].get("labels") or {}).items()
                and all(c.ready for c in worker.containers)
            ]
            if not ready:
                continue
            names = [f"{name}.{where}", f"{name}.{where}.svc", f"{name}.{where}.svc.cluster.local"]
            if where == namespace:
                names.append(name)
            hosts.update(dict.fromkeys(names, ready[0].pod_ip))
        return hosts

    # --- events ----------------------------------------------------------------------------

    async def emit(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        await self._event(self.node, "kubelet", pod, kind, reason, message)

    async def _event(
        self, client: KubeClient, component: str, pod: Obj, kind: str, reason: str, message: str
    ) -> None:
        meta = pod["metadata"]
        stamp = now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": component, "host": self.name},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await client.create(f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("event %s for %s not recorded: %s", reason, meta["name"], exc)

    # --- scheduling: bind what nobody has bound ------------------------------------------

    async def bind_unscheduled(self) -> None:
        assert self.binder is not None
        params = {"fieldSelector": "spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed"}
        async for kind, pod in self.binder.watch("/api/v1/pods", params=params):
            if kind not in ("ADDED", "MODIFIED"):
                continue
            meta, spec = pod["metadata"], pod["spec"]
            if meta.get("deletionTimestamp") or spec.get("nodeName"):
                continue
            if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
                continue  # another scheduler's pod
            await self.bind(pod)

    async def bind(self, pod: Obj) -> None:
        assert self.binder is not None
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
        try:
            await self.binder.create(path, body)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone, or bound meanwhile
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)
            return
        message = f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.name}"
        if self.light is not None:
            return  # the benchmark's API server load is the operator's: no Events, no lines
        log.info("%s", message)
        await self._event(self.binder, "default-scheduler", pod, "Normal", "Scheduled", message)

    # --- the kubelet's loop: pods bound here -----------------------------------------------

    async def kubelet(self) -> None:
        params = {"fieldSelector": f"spec.nodeName={self.name}"}
        async for kind, pod in self.node.watch("/api/v1/pods", params=params):
            if kind == "SYNCED":
                continue
            uid = pod["metadata"]["uid"]
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.deleted(pod)
                continue
            if worker is not None:
                worker.update(pod)
            elif pod["metadata"].get("deletionTimestamp"):
                await self.delete_without_worker(pod)
            elif uid not in self.finished:
                self.start_worker(pod)

    async def delete_without_worker(self, pod: Obj) -> None:
        """A pod being deleted that runs nothing here (finished, or never started): like the
        kubelet, remove it at once, or it would stay Terminating for ever."""
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiError):
            await self.node.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body
            )

    def start_worker(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp"):
            # Finished before this agent started: nothing to run, nothing to report.
            self.finished.add(uid)
            return
        address = self.addresses.take()
        worker: PodWorker | LightPod
        if self.light is not None:
            worker = LightPod(
                client=self.node,
                pod=pod,
                pod_ip=address,
                host_ip=self.settings.host_ip,
                server=self.light,
            )
        else:
            worker = PodWorker(
                settings=self.settings,
                client=self.node,
                pod=pod,
                pod_ip=address,
                emit=self.emit,
                service_hosts=self.service_hosts,
            )
        self.workers[uid] = worker
        task = asyncio.create_task(worker.run(), name=f"pod {worker.key}")
        self.tasks[uid] = task

        def done(task: asyncio.Task[None]) -> None:
            self.workers.pop(uid, None)
            self.tasks.pop(uid, None)
            self.finished.add(uid)
            self.addresses.give_back(address)
            if not task.cancelled() and task.exception():
                log.error("pod %s failed", worker.key, exc_info=task.exception())

        task.add_done_callback(done)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the node's identity")
    parser.add_argument(
        "--binder-kubeconfig", type=Path, help="identity that binds pods (system:kube-scheduler)"
    )
    parser.add_argument(
        "--provisioner-kubeconfig",
        type=Path,
        help="identity that provisions claims' volumes (system:persistent-volume-provisioner)",
    )
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--work-dir", type=Path, required=True, help="pod roots and logs")
    parser.add_argument(
        "--kubetrade",
        type=Path,
        default=Path(sys.executable).parent / "kubetrade",
        help="the program that `kubetrade` in a container's command means",
    )
    parser.add_argument(
        "--runtime",
        choices=[PROCESS, PODMAN],
        default=PROCESS,
        help="run containers as local processes (default) or as podman containers",
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="pull from this registry over plain HTTP (podman mode; repeatable)",
    )
    parser.add_argument(
        "--light",
        action="store_true",
        help="run nothing: report pods Running and Ready and make up their runners' /status",
    )
    parser.add_argument(
        "--light-pace",
        type=float,
        default=1.0,
        metavar="BARS_PER_S",
        help="light mode: bars a second in the made-up /status (default: %(default)s)",
    )
    parser.add_argument("--backoff-base", type=float, default=10.0, help="seconds (kubelet: 10)")
    parser.add_argument("--backoff-max", type=float, default=300.0, help="seconds (kubelet: 300)")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes: the harness that started us is gone",
    )
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    settings = AgentSettings(
        node_name=args.node_name,
        kubetrade=args.kubetrade,
        work_dir=args.work_dir.resolve(),
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
        runtime=args.runtime,
        api_server=load_credentials(args.kubeconfig).server,
        insecure_registries=frozenset(args.insecure_registry),
    )
    if settings.runtime == PODMAN:
        # Fail at once, and say why, on a machine without a working podman.
        try:
            version = await node_container.podman("version", "--format={{.Client.Version}}")
        except (OSError, node_container.PodmanError) as exc:
            raise SystemExit(
                f"node agent: --runtime podman needs a working podman"
                f" (scripts/install-container-tools.sh installs it): {exc}"
            ) from None
        log.info("running containers with podman %s", version.strip())
        for name in await node_container.remove_orphans([os.getpid()]):
            log.info("removed %s, left by an agent that is gone", name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            while await reader.read(4096):
                pass
            log.info("stdin closed; stopping")
            stop.set()

        stdin_task = asyncio.create_task(watch_stdin())
    agent_name = f"{AGENT_VERSION} ({args.node_name})"
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            KubeClient(load_credentials(args.kubeconfig), user_agent=agent_name)
        )
        binder = None
        if args.binder_kubeconfig:
            binder = await stack.enter_async_context(
                KubeClient(load_credentials(args.binder_kubeconfig), user_agent=agent_name)
            )
        provisioner = None
        if args.provisioner_kubeconfig:
            provisioner = await stack.enter_async_context(
                KubeClient(load_credentials(args.provisioner_kubeconfig), user_agent=agent_name)
            )
        light = None
        if args.light:
            light = StatusServer(pace=args.light_pace)
            await light.start()
            stack.push_async_callback(light.stop)
        await NodeAgent(settings, node, binder, provisioner, light).run(stop)
    if args.exit_on_stdin_eof:
        stdin_task.cancel()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
