"""One pod on the node agent: its processes, probes, proxy, status and deletion.

A PodWorker is the kubelet's pod worker in miniature. It materializes the volumes, runs the
init containers one after another and then the containers side by side as local processes,
restarts them by the pod's restartPolicy with the kubelet's back-off (immediately, then
base, 2*base, ... up to max; reset after a run of 2*max), probes them, and reports phase,
conditions and container states through pods/status. When the pod is deleted it sends
SIGTERM, waits out the grace period, sends SIGKILL, reports the final state and deletes the
object with grace period 0, as the kubelet does.

Networking: each pod gets its own loopback address (127.B.x.y) as its podIP, and every
declared TCP containerPort is reachable at podIP:containerPort through a small proxy to a
free host port on which the process must listen instead: `kubetrade run` is told so by
`--http-port` (see node_files.container_argv), any program finds it in the environment
variable KUBETRADE_HOST_PORT_<containerPort>. Clients and probes address a pod as they would
in a cluster. A process that binds its containerPort itself collides with the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from . import node_container as runtime
from .kubeclient import ApiError, KubeClient
from .node_files import (
    PodRef,
    PodSetupError,
    Volume,
    base_env,
    container_argv,
    container_env,
    lay_out_mounts,
    lay_out_root,
    path_rewriter,
    served_port,
    volume_files,
)

log = logging.getLogger("node_agent.pod")

Obj = dict[str, Any]
# (pod, "Normal" | "Warning", reason, message): records a Kubernetes Event about the pod.
Emit = Callable[[Obj, str, str, str], Awaitable[None]]
# namespace -> {Service name as a pod there may write it: pod IP behind it} (container mode).
ServiceHosts = Callable[[str], Awaitable[Mapping[str, str]]]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


PROCESS = "process"
PODMAN = "podman"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    node_name: str
    kubetrade: Path
    work_dir: Path
    host_ip: str = "127.0.0.1"
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    # PROCESS: containers as local processes; PODMAN: as containers of their images
    # (node_container.py).
    runtime: str = PROCESS
    # The API server's URL, for KUBERNETES_SERVICE_HOST/PORT in container mode.
    api_server: str = ""
    # Registries pulled from over plain HTTP (host:port), like a kubelet's runtime config.
    insecure_registries: frozenset[str] = frozenset()


@dataclass
class Container:
    """One container's live record; `status()` renders it as a ContainerStatus."""

    spec: Obj
    init: bool
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    process: asyncio.subprocess.Process | None = None
    log_offset: int = 0
    probe_kill: asyncio.Event = field(default_factory=asyncio.Event)
    # Container mode: podman's name and id of the current run, the image's digest, and
    # the failed pulls in a row (for the back-off).
    runtime_name: str = ""
    container_id: str = ""
    image_id: str = ""
    pull_failures: int = 0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> Obj:
        container_id = self.container_id
        if not container_id and self.process:
            container_id = f"kubetrade-node-agent://{self.process.pid}"
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "containerID": container_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])


def _die_with_parent() -> None:
    # prctl(PR_SET_PDEATHSIG, SIGKILL): a runner must not outlive a killed agent.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PodWorker:
    def __init__(
        self,
        *,
        settings: AgentSettings,
        client: KubeClient,
        pod: Obj,
        pod_ip: str,
        emit: Emit,
        service_hosts: ServiceHosts | None = None,
    ) -> None:
        self.settings = settings
        self.service_hosts = service_hosts
        self.client = client
        self.pod = pod
        self.pod_ip = pod_ip
        self.emit = emit
        meta = pod["metadata"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.dir = (
            settings.work_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        )
        self.log_dir = settings.work_dir / "logs" / self.dir.name
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.init_containers = [Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False) for c in spec.get("containers") or []]
        self.start_time = now()
        self.sandbox_ready = False
        self.initialized = not self.init_containers
        self.failed_init = False
        self.stopping = asyncio.Event()
        self.stop_deadline = float("inf")
        self.gone = False  # the object is deleted; nothing left to report to
        self.node_shutdown = False
        self._changed = asyncio.Event()
        self._conditions: dict[str, tuple[str, str]] = {}
        self._volumes: dict[str, Volume] = {}
        self._proxies: list[asyncio.Server] = []
        self._host_ports: dict[tuple[str, int], int] = {}
        self.in_containers = settings.runtime == PODMAN
        self.update(pod)

    # --- signals from the agent ------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            self.stop(float(meta.get("deletionGracePeriodSeconds", 30)))

    def deleted(self, pod: Obj) -> None:
        self.gone = True
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        self.stop(float(grace))

    def stop(self, grace: float) -> None:
        # A later, shorter grace period (kubectl delete --force) brings SIGKILL forward.
        self.stop_deadline = min(self.stop_deadline, time.monotonic() + grace)
        self.stopping.set()

    # --- the pod's life ----------------------------------------------------------------------

    async def run(self) -> None:
        publisher = asyncio.create_task(self._publish_loop())
        try:
            if await self._prepare():
                await self._run_all()
            await self.stopping.wait()
        finally:
            for c in self.all_containers:
                await self._terminate(c)
            for server in self._proxies:
                server.close()
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            if not self.node_shutdown:
                await self._publish()  # the final state, then the object goes
                await self._delete_object()
            await asyncio.to_thread(self._remove_dir)

    def _remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the pod is stopping; True if it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def _prepare(self) -> bool:
        ref = PodRef(self.pod, self.pod_ip, self.settings.host_ip)
        last = ""
        while not self.stopping.is_set():
            try:
                self._volumes = {
                    v["name"]: await volume_files(self.client, ref, v)
                    for v in self.pod["spec"].get("volumes") or []
                }
                await self._start_proxies()
                self.sandbox_ready = True
                self._changed.set()
                return True
            except PodSetupError as exc:
                self._set_waiting(exc.reason, exc.message)
                if exc.message != last:
                    await self.emit(self.pod, "Warning", "FailedMount", exc.message)
                    last = exc.message
            if await self._sleep(1):
                break
        return False

    async def _run_all(self) -> None:
        for c in self.init_containers:
            await self._run_container(c)
            if self.stopping.is_set():
                return
            if c.exit_code != 0:  # only a Never policy lets an init container stay failed
                self.failed_init = True
                self._changed.set()
                return
        self.initialized = True
        self._changed.set()
        await asyncio.gather(*(self._run_container(c) for c in self.containers))

    async def _run_container(self, c: Container) -> None:
        delay = 0.0
        while not self.stopping.is_set():
            began = time.monotonic()
            code = await self._run_once(c)
            if code is None or self.stopping.is_set():
                return
            policy = "OnFailure" if c.init and self.restart_policy == "Always" else None
            policy = policy or self.restart_policy
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            # The kubelet's back-off: the first restart is immediate, later ones wait
            # base * 2^n up to max; a container that ran for 2*max starts over.
            if time.monotonic() - began > 2 * self.settings.backoff_max:
                delay = 0.0
            if delay:
                meta = self.pod["metadata"]
                message = (
                    f"back-off {delay:g}s restarting failed container={c.name}"
                    f" pod={meta['name']}_{meta['namespace']}"
                )
                c.last_state = c.state
                c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
                self._changed.set()
                await self.emit(
                    self.pod, "Warning", "BackOff", "Back-off restarting failed container"
                )
                if await self._sleep(delay):
                    return
            delay = min(max(delay * 2, self.settings.backoff_base), self.settings.backoff_max)
            c.restart_count += 1

    async def _run_once(self, c: Container) -> int | None:
        """Start the container, supervise it until it exits; its exit code (None: never ran)."""
        while True:
            try:
                process = await self._spawn(c)
                break
            except PodSetupError as exc:
                self._set_waiting(exc.reason, exc.message, only=c)
                if await self._sleep(1):
                    return None
            except OSError as exc:  # e.g. no such executable: the kubelet's StartError
                return await self._start_error(c, str(exc))
        c.process = process
        started = now()
        if self.in_containers:
            info = await self._container_started(c, process)
            if info is None or not runtime.started(info):
                # podman created it but it never ran (no such executable, ...): its error
                # is the last line podman wrote.
                await process.wait()
                await runtime.remove(c.runtime_name)
                c.container_id = ""
                return await self._start_error(c, self._run_output(c).strip().splitlines()[-1:])
            started = runtime.kube_time(info["State"]["StartedAt"])
        if c.state.get("terminated"):
            c.last_state = c.state
        c.state = {"running": {"startedAt": started}}
        c.started = "startupProbe" not in c.spec
        c.ready = "readinessProbe" not in c.spec and not c.init
        c.probe_kill.clear()
        self._changed.set()
        await self.emit(self.pod, "Normal", "Started", f"Started container {c.name}")
        probes = asyncio.create_task(self._probe(c))
        try:
            code = await self._supervise(c, process)
        finally:
            probes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probes
        c.ready = False
        c.started = False
        terminated: Obj = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now(),
        }
        if self.in_containers:
            # podman's own account: the container's exit code (not podman's), OOM kills.
            info = await runtime.inspect(c.runtime_name)
            if info is not None:
                state = info["State"]
                code = terminated["exitCode"] = int(state.get("ExitCode", code))
                terminated["reason"] = "Completed" if code == 0 else "Error"
                if state.get("OOMKilled"):
                    terminated["reason"] = "OOMKilled"
                if str(state.get("FinishedAt", "")).startswith("0001-") is False:
                    terminated["finishedAt"] = runtime.kube_time(state["FinishedAt"])
            await runtime.remove(c.runtime_name)
        if code > 128:
            terminated["signal"] = code - 128
        message = self._termination_message(c, code)
        if message:
            terminated["message"] = message
        c.state = {"terminated": terminated}
        self._changed.set()
        return code

    async def _start_error(self, c: Container, message: str | list[str]) -> int:
        """The kubelet's StartError: the container was made but its command never ran."""
        text = message if isinstance(message, str) else "".join(message)
        if c.state.get("terminated"):
            c.last_state = c.state
        c.state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": text,
                "startedAt": now(),
                "finishedAt": now(),
            }
        }
        self._changed.set()
        await self.emit(self.pod, "Warning", "Failed", f"Error: {text}")
        return 128

    def _container_ports(self, c: Container) -> dict[int, int]:
        """containerPort -> the host port the agent picked for it."""
        return {number: host for (name, number), host in self._host_ports.items() if name == c.name}

    async def _spawn(self, c: Container) -> asyncio.subprocess.Process:
        if self.in_containers:
            return await self._spawn_container(c)
        ref = PodRef(self.pod, self.pod_ip, self.settings.host_ip)
        root = self.dir / "containers" / c.name
        mount_paths = await asyncio.to_thread(
            lay_out_root, root, c.spec, self._volumes, self.dir / "volumes"
        )
        env = await container_env(self.client, ref, c.spec)
        port = served_port(c.spec)
        http_port = None if port is None else (port, self._host_ports[(c.name, port)])
        argv = container_argv(
            c.spec,
            env,
            kubetrade=self.settings.kubetrade,
            root=root,
            mount_paths=mount_paths,
            http_port=http_port,
            host_ports=self._container_ports(c),
        )
        rewrite = path_rewriter(root, mount_paths)
        workdir = root
        if c.spec.get("workingDir"):
            workdir = Path(rewrite(c.spec["workingDir"]))
            if not workdir.is_relative_to(root):  # not under a mount: inside the root anyway
                workdir = root / c.spec["workingDir"].lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        full_env = base_env(root, self.pod["metadata"]["name"])
        # Any program (not only kubetrade, which gets --http-port) can find the host port
        # that stands for each of its containerPorts.
        for (name, number), host in self._host_ports.items():
            if name == c.name:
                full_env[f"KUBETRADE_HOST_PORT_{number}"] = str(host)
        full_env.update({k: rewrite(v) for k, v in env.items()})
        return await self._start_logged(c, argv, cwd=workdir, env=full_env)

    async def _start_logged(
        self, c: Container, argv: list[str], *, cwd: Path, env: dict[str, str] | None
    ) -> asyncio.subprocess.Process:
        """Start argv with its output appended to the container's log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{c.name}.log"
        with log_path.open("ab") as out:
            out.write(f"--- {now()} start #{c.restart_count}: {argv}\n".encode())
            out.flush()
            c.log_offset = out.tell()  # this run's output starts here
            log.info("%s: starting %s: %s", self.key, c.name, argv)
            return await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach its children
                preexec_fn=_die_with_parent,
            )

    def _run_output(self, c: Container) -> str:
        """What the container's current run has written so far."""
        with contextlib.suppress(OSError), (self.log_dir / f"{c.name}.log").open("rb") as out:
            out.seek(c.log_offset)
            return out.read()[-8192:].decode(errors="replace")
        return ""

    # --- container mode (node_container.py) ------------------------------------------------

    def _service_env(self) -> dict[str, str]:
        """What the kubelet gives every container about the API server, pointing at the real
        one (the `kubernetes` Service's cluster IP leads nowhere here)."""
        url = urlsplit(self.settings.api_server)
        host, port = url.hostname or "127.0.0.1", str(url.port or 443)
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }

    async def _auth_file(self) -> str | None:
        """The pod's imagePullSecrets as one podman auth file in the pod's directory."""
        meta = self.pod["metadata"]
        names = [s["name"] for s in self.pod["spec"].get("imagePullSecrets") or [] if s.get("name")]
        if not names:
            return None
        secrets = []
        for name in names:
            try:
                secrets.append(
                    await self.client.get(f"/api/v1/namespaces/{meta['namespace']}/secrets/{name}")
                )
            except ApiError as exc:
                if exc.status != 404:  # 403 right after binding: wait, as for volumes
                    message = f"image pull secret {name!r}: {exc.message}"
                    raise PodSetupError("ContainerCreating", message) from None
                # The kubelet pulls without a missing secret, and says so.
                await self.emit(
                    self.pod,
                    "Warning",
                    "FailedToRetrieveImagePullSecret",
                    f"Unable to retrieve some image pull secrets ({name}); attempting to pull"
                    " the image may not succeed.",
                )
        path = self.dir / "auth.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(runtime.docker_config(secrets)))
        return str(path)

    async def _ensure_image(self, c: Container, image: str) -> None:
        """Pull the image as its imagePullPolicy says; PodSetupError while it cannot."""
        policy = c.spec.get("imagePullPolicy") or "IfNotPresent"
        present = await runtime.image_present(image)
        if policy == "Never" or (policy == "IfNotPresent" and present):
            if not present:
                message = f'Container image "{image}" is not present with pull policy of Never'
                raise PodSetupError("ErrImageNeverPull", message)
            if c.restart_count == 0:
                message = f'Container image "{image}" already present on machine'
                await self.emit(self.pod, "Normal", "Pulled", message)
            return
        if c.pull_failures:  # the kubelet's back-off between failed pulls
            delay = min(
                self.settings.backoff_base * 2 ** (c.pull_failures - 1), self.settings.backoff_max
            )
            message = f'Back-off pulling image "{image}"'
            self._set_waiting("ImagePullBackOff", message, only=c)
            await self.emit(self.pod, "Normal", "BackOff", message)
            if await self._sleep(delay):
                raise PodSetupError("ImagePullBackOff", message)
        await self.emit(self.pod, "Normal", "Pulling", f'Pulling image "{image}"')
        began = time.monotonic()
        tls = runtime.registry_of(image) not in self.settings.insecure_registries
        try:
            await runtime.pull(image, authfile=await self._auth_file(), tls_verify=tls)
        except runtime.PodmanError as exc:
            c.pull_failures += 1
            message = f'Failed to pull image "{image}": {exc.output}'
            await self.emit(self.pod, "Warning", "Failed", message)
            raise PodSetupError("ErrImagePull", message) from None
        c.pull_failures = 0
        seconds = time.monotonic() - began
        message = f'Successfully pulled image "{image}" in {seconds:.3f}s'
        await self.emit(self.pod, "Normal", "Pulled", message)

    async def _spawn_container(self, c: Container) -> asyncio.subprocess.Process:
        """`podman run` of the container's image, attached: the process is podman's client,
        which lives as long as the container and ends with its exit code."""
        image = str(c.spec.get("image") or "")
        if not image:
            raise PodSetupError("InvalidImageName", f"container {c.name} names no image")
        await self._ensure_image(c, image)
        try:
            inspected = await runtime.image_inspect(image)
        except runtime.PodmanError as exc:
            raise PodSetupError("ErrImagePull", str(exc)) from None
        config = inspected.get("Config") or {}
        c.image_id = runtime.image_id(image, inspected)
        ref = PodRef(self.pod, self.pod_ip, self.settings.host_ip)
        pod_spec = self.pod["spec"]
        root = self.dir / "containers" / c.name
        fs_group = (pod_spec.get("securityContext") or {}).get("fsGroup")
        mounts = await asyncio.to_thread(
            lay_out_mounts, root, c.spec, self._volumes, self.dir / "volumes", fs_group
        )
        env = await container_env(self.client, ref, c.spec)
        ports = self._container_ports(c)
        port = served_port(c.spec)
        argv = container_argv(
            c.spec,
            env,
            kubetrade=None,  # the image's own
            root=root,
            mount_paths=[],  # nothing to rewrite: the mounts are where the pod says
            http_port=None if port is None else (port, ports[port]),
            host_ports=ports,
            entrypoint=config.get("Entrypoint") or [],
            image_args=config.get("Cmd") or [],
        )
        full_env = self._service_env()
        full_env.update({f"KUBETRADE_HOST_PORT_{n}": str(h) for n, h in ports.items()})
        full_env.update(env)
        options = runtime.security_options(pod_spec, c.spec, str(config.get("User") or ""))
        options += runtime.resource_options(c.spec)
        meta = self.pod["metadata"]
        name = f"k8s_{c.name}_{meta['name']}_{meta['namespace']}_{meta['uid'][:8]}"
        name += f"_{c.restart_count}"
        c.runtime_name = name
        await runtime.remove(name)  # one left by an agent that died
        arguments = runtime.run_arguments(
            name=name,
            labels={
                runtime.LABEL_AGENT_PID: str(os.getpid()),
                runtime.LABEL_NAMESPACE: meta["namespace"],
                runtime.LABEL_POD: meta["name"],
                runtime.LABEL_POD_UID: meta["uid"],
                runtime.LABEL_CONTAINER: c.name,
            },
            hostname=meta["name"][:63],
            image=image,
            argv=argv,
            env=full_env,
            mounts=mounts,
            options=options,
            workdir=c.spec.get("workingDir"),
            hosts=await self.service_hosts(meta["namespace"]) if self.service_hosts else {},
        )
        return await self._start_logged(c, ["podman", *arguments], cwd=root, env=None)

    async def _container_started(
        self, c: Container, process: asyncio.subprocess.Process
    ) -> Obj | None:
        """Wait until podman has started the container (or given up); its inspect record."""
        while True:
            info = await runtime.inspect(c.runtime_name)
            if info is not None and runtime.started(info):
                c.container_id = runtime.ID_PREFIX + str(info["Id"])
                return info
            if process.returncode is not None:
                return info
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 0.1)

    async def _supervise(self, c: Container, process: asyncio.subprocess.Process) -> int:
        exited = asyncio.create_task(process.wait())
        stop = asyncio.create_task(self.stopping.wait())
        killed = asyncio.create_task(c.probe_kill.wait())
        await asyncio.wait({exited, stop, killed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stop, killed):
            task.cancel()
        if not exited.done():
            if self.stopping.is_set():
                await self.emit(self.pod, "Normal", "Killing", f"Stopping container {c.name}")
            await self._terminate(c)
        code = await exited
        # Whatever it left behind in its process group goes too, as with a container's
        # cgroup. (A group id is not reused while any member lives.)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return 128 - code if code < 0 else code

    async def _terminate(self, c: Container) -> None:
        """SIGTERM the process group (container mode: the container), then SIGKILL at the
        deadline."""
        process = c.process
        if process is None or process.returncode is not None:
            return
        grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        deadline = self.stop_deadline if self.stopping.is_set() else time.monotonic() + grace
        if self.in_containers:
            await runtime.signal(c.runtime_name, "TERM")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        while process.returncode is None and time.monotonic() < min(deadline, self.stop_deadline):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 0.1)
        if process.returncode is None and self.in_containers:
            await runtime.signal(c.runtime_name, "KILL")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 30)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    def _termination_message(self, c: Container, code: int) -> str:
        if code == 0 or c.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        # The kubelet's fallback: the tail of this run's log, at most 80 lines and 2048 bytes.
        path = self.log_dir / f"{c.name}.log"
        with contextlib.suppress(OSError), path.open("rb") as log:
            log.seek(c.log_offset)
            tail = log.read()[-2048:].decode(errors="replace")
            return "\n".join(tail.splitlines()[-80:])
        return ""

    def _set_waiting(self, reason: str, message: str, only: Container | None = None) -> None:
        for c in [only] if only else self.all_containers:
            if "terminated" in c.state:
                c.last_state = c.state
            if "running" not in c.state:
                c.state = {"waiting": {"reason": reason, "message": message}}
        self._changed.set()

    # --- network: podIP:containerPort -> 127.0.0.1:hostPort ------------------------------

    async def _start_proxies(self) -> None:
        """Listen on podIP:containerPort for every declared TCP port (once; retried on error)."""
        for c in self.all_containers:
            for port in c.spec.get("ports") or []:
                number = int(port["containerPort"])
                if port.get("protocol", "TCP") != "TCP" or (c.name, number) in self._host_ports:
                    continue
                host = free_port()
                try:
                    server = await asyncio.start_server(
                        functools.partial(_forward, port=host), self.pod_ip, number
                    )
                except OSError as exc:
                    # Never fall back to the host port: another process holding
                    # 0.0.0.0:containerPort would then answer for this pod.
                    message = f"cannot listen on {self.pod_ip}:{number}: {exc}"
                    raise PodSetupError("CreateContainerError", message) from None
                self._proxies.append(server)
                self._host_ports[(c.name, number)] = host

    # --- probes ------------------------------------------------------------------------------

    async def _probe(self, c: Container) -> None:
        startup = c.spec.get("startupProbe")
        if startup and not await self._probe_loop(c, startup, "Startup", until_success=True):
            return
        c.started = True
        self._changed.set()
        loops = []
        if c.spec.get("readinessProbe") and not c.init:
            loops.append(self._probe_loop(c, c.spec["readinessProbe"], "Readiness"))
        if c.spec.get("livenessProbe"):
            loops.append(self._probe_loop(c, c.spec["livenessProbe"], "Liveness"))
        await asyncio.gather(*loops)

    async def _probe_loop(
        self, c: Container, probe: Obj, kind: str, *, until_success: bool = False
    ) -> bool:
        period = probe.get("periodSeconds", 10)
        failures_allowed = probe.get("failureThreshold", 3)
        successes_needed = probe.get("successThreshold", 1)
        successes = failures = 0
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        while True:
            ok, why = await self._check(c, probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "Readiness":
                ready = c.ready
                if successes >= successes_needed:
                    ready = True
                elif failures >= failures_allowed:
                    ready = False
                if ready != c.ready:
                    c.ready = ready
                    self._changed.set()
            elif ok and until_success:
                return True
            elif failures >= failures_allowed:  # Startup or Liveness: the container is killed
                await self.emit(self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {why}")
                await self.emit(
                    self.pod,
                    "Normal",
                    "Killing",
                    f"Container {c.name} failed {kind.lower()} probe, will be restarted",
                )
                c.probe_kill.set()
                return False
            if not ok and kind == "Readiness" and failures == failures_allowed:
                await self.emit(self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {why}")
            await asyncio.sleep(period)

    async def _check(self, c: Container, probe: Obj) -> tuple[bool, str]:
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            action = probe["httpGet"]
            port = self._port_number(c, action["port"])
            scheme = action.get("scheme", "HTTP").lower()
            url = f"{scheme}://{self.pod_ip}:{port}{action.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
                    # Like the kubelet: HTTPS probes do not verify the certificate.
                    s.get(url, headers=headers, allow_redirects=False, ssl=False) as resp,
                ):
                    return (
                        200 <= resp.status < 400,
                        f"HTTP probe failed with statuscode: {resp.status}",
                    )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return False, f'Get "{url}": {exc or type(exc).__name__}'
        if "tcpSocket" in probe:
            port = self._port_number(c, probe["tcpSocket"]["port"])
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.pod_ip, port), timeout
                )
                writer.close()
                return True, ""
            except (OSError, TimeoutError) as exc:
                return False, f"dial tcp {self.pod_ip}:{port}: {exc}"
        if "exec" in probe and self.in_containers:
            command = probe["exec"].get("command") or []
            return await runtime.exec_probe(c.runtime_name, command, timeout)
        # Process mode: exec and grpc probes need a container to run in; they pass.
        return True, ""

    @staticmethod
    def _port_number(c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        return 0

    # --- status --------------------------------------------------------------------------

    def _phase(self) -> str:
        if self.failed_init:
            return "Failed"
        codes = [c.exit_code for c in self.containers]
        alive = any(c.process and c.process.returncode is None for c in self.all_containers)
        if self.stopping.is_set() and not alive:
            # Stopped for deletion: the kubelet reports a terminal phase before removing it.
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        if not self.initialized:
            return "Pending"
        if all(code is not None for code in codes):  # every container has exited
            if self.restart_policy == "Never":
                return "Succeeded" if all(code == 0 for code in codes) else "Failed"
            if self.restart_policy == "OnFailure" and all(code == 0 for code in codes):
                return "Succeeded"
            return "Running"  # about to be restarted
        if all(c.restart_count == 0 and "waiting" in c.state for c in self.containers):
            return "Pending"
        return "Running"

    @property
    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers

    def _condition(self, kind: str, ok: bool, reason: str = "") -> Obj:
        status = "True" if ok else "False"
        previous = self._conditions.get(kind)
        when = previous[1] if previous and previous[0] == status else now()
        self._conditions[kind] = (status, when)
        condition: Obj = {
            "type": kind,
            "status": status,
            "lastTransitionTime": when,
            "lastProbeTime": None,
        }
        if reason:
            condition["reason"] = reason
        return condition

    def status(self) -> Obj:
        phase = self._phase()
        terminal = phase in ("Succeeded", "Failed")
        ready = not terminal and all(c.ready for c in self.containers)
        not_ready = "PodCompleted" if terminal else "ContainersNotReady"
        scheduled = [
            c
            for c in self.pod.get("status", {}).get("conditions") or []
            if c["type"] == "PodScheduled"
        ]
        status: Obj = {
            "phase": phase,
            "conditions": [
                self._condition("PodReadyToStartContainers", self.sandbox_ready and not terminal),
                self._condition(
                    "Initialized",
                    self.initialized,
                    "" if self.initialized else "ContainersNotInitialized",
                ),
                self._condition("ContainersReady", ready, "" if ready else not_ready),
                self._condition("Ready", ready, "" if ready else not_ready),
                *scheduled,
            ],
            "hostIP": self.settings.host_ip,
            "hostIPs": [{"ip": self.settings.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        return status

    async def _publish_loop(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(0.05)  # let a burst of changes settle into one update
            self._changed.clear()
            await self._publish()

    async def _publish(self) -> None:
        if self.gone:
            return
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        for attempt in range(5):
            try:
                # The uid precondition keeps a stale worker off a new pod of the same name.
                body = {"metadata": {"uid": meta["uid"]}, "status": self.status()}
                self.pod = await self.client.merge_patch(path, body)
                return
            except ApiError as exc:
                # Gone, or replaced by a new pod of the same name (the uid cannot change).
                if exc.status in (404, 409, 422):
                    return
                log.warning("%s: status update failed (%s), attempt %d", self.key, exc, attempt)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("%s: status update failed (%s), attempt %d", self.key, exc, attempt)
            await asyncio.sleep(0.5 * (attempt + 1))

    async def _delete_object(self) -> None:
        if self.gone:
            return
        meta = self.pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiError):
            await self.client.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body
            )
            log.info("%s: deleted", self.key)


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    """Join one proxied connection to the process's host port, both ways, with half-close."""
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.close()
        return

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()

    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()
