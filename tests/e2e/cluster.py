"""The e2e harness: a real Kubernetes control plane and a node agent, as local processes.

`start_cluster()` builds tools/apiserver once per machine (scripts/build-apiserver.sh),
starts it (embedded etcd + kube-apiserver + a kube-controller-manager with the garbage
collector, namespace, service-account and root-CA controllers) on a free loopback port,
and returns a `Cluster`: the admin kubeconfig, the server URL, kubectl helpers, identities
for users and ServiceAccounts, and `start_node_agent()` for a node that runs pods as local
processes (node_agent.py), or as podman containers of their images (runtime="podman").
`start_cluster(controllers=STORAGE_CLUSTER)` adds the PersistentVolume binder and the claim
and volume protection controllers, so that PersistentVolumeClaims get node-local volumes
from the node agent (node_storage.py); `WORKLOAD_CONTROLLERS` adds the Deployment and
ReplicaSet controllers to those. Everything lives under one temporary directory that `stop()`
removes (set KUBETRADE_E2E_KEEP=1 to keep it for a post-mortem).

Every child process gets `--exit-on-stdin-eof` and a pipe as stdin, so a pytest that dies
takes the whole cluster with it; the next start removes the directory it left behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .image import podman, podman_env
from .node_storage import storage_class

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = ROOT / "scripts" / "build-apiserver.sh"
KUBETRADE = Path(sys.executable).parent / "kubetrade"
NODE_NAME = "kubetrade-node"
# kubetrade-apiserver's default controllers (tools/apiserver/serve.go), and the same with
# the Deployment and ReplicaSet controllers, for tests that install workloads (a chart's
# Deployment then gets its ReplicaSet and its Pod).
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)
# Claims get volumes (the node agent provisions them) and go only once no pod uses them.
STORAGE_CONTROLLERS = (
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
)
STORAGE_CLUSTER = (*DEFAULT_CONTROLLERS, *STORAGE_CONTROLLERS)
WORKLOAD_CONTROLLERS = (*STORAGE_CLUSTER, "deployment-controller", "replicaset-controller")
PROVISIONER_USER = "kubetrade-e2e:volume-provisioner"

T = TypeVar("T")
_PREFIX = "kubetrade-e2e-"
_KEPT = "KEPT"  # marks a directory kept on purpose (KUBETRADE_E2E_KEEP)
Obj = dict[str, Any]


class HarnessError(Exception):
    """The harness could not build or start something; the message says what and where."""


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def find_kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise HarnessError("the e2e tests drive the cluster with kubectl, which is not on PATH")
    return found


def build_apiserver(*, timeout: float = 3600) -> Path:
    """Build (or find in the cache) the kubetrade-apiserver binary; return its path."""
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(
            [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=errors, timeout=timeout, check=False
        )
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if result.returncode != 0:
        raise HarnessError(f"{BUILD_SCRIPT.name} failed (exit {result.returncode}):\n{stderr}")
    return Path(result.stdout.decode().strip().splitlines()[-1])


def wait_until(
    what: str, check: Callable[[], T | None], *, timeout: float, every: float = 0.1
) -> T:
    """Poll `check` until it returns something other than None/False; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def _stop_process(process: subprocess.Popen[bytes], *, grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class NodeAgent:
    """A running node agent (node_agent.py) and where its files are."""

    name: str
    work_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]  # holds our end of its stdin pipe: see module doc
    runtime: str = "process"  # or "podman": pods run as containers (node_container.py)

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's output so far (every restart, each after a `--- start` line)."""
        logs = self.work_dir / "logs"
        for directory in sorted(logs.glob(f"{namespace}_{pod}_*")):
            path = directory / f"{container}.log"
            if path.exists():
                return path.read_text(errors="replace")
        return ""

    def running(self) -> bool:
        return self.process.poll() is None

    def containers(self, namespace: str | None = None) -> list[Obj]:
        """podman's records (`podman ps --all`) of the containers this agent runs now, of
        the pods in `namespace` or of every pod."""
        if self.runtime != "podman":
            return []
        filters = [f"--filter=label=io.kubetrade.e2e.agent-pid={self.process.pid}"]
        if namespace is not None:
            filters.append(f"--filter=label=io.kubernetes.pod.namespace={namespace}")
        listing = podman("ps", "--all", "--format=json", *filters, timeout=60)
        found: list[Obj] = json.loads(listing.stdout or "[]")
        return found

    def stop(self) -> None:
        _stop_process(self.process, grace=30)
        # An agent stops its containers as it stops; any it could not (killed) go here.
        for container in self.containers():
            podman("rm", "--force", "--time=0", container["Id"], timeout=120)


@dataclass
class Cluster:
    """A running test cluster. `kubeconfig` is the admin's (group system:masters)."""

    dir: Path
    binary: Path
    url: str
    kubeconfig: Path
    ca_file: Path
    log_path: Path
    startup_seconds: float
    process: subprocess.Popen[bytes]
    kubectl_path: str
    agents: list[NodeAgent] = field(default_factory=list)

    # --- kubectl ---------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str | Path,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the machine's kubectl against this cluster (as admin unless `kubeconfig`)."""
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        command = [
            self.kubectl_path,
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            # Discovery caches per cluster; keep them with the cluster, not in ~/.kube.
            f"--cache-dir={self.dir / 'kubectl-cache'}",
            *map(str, args),
        ]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"kubectl {' '.join(map(str, args))} failed ({result.returncode}):\n"
                f"{result.stderr.strip()}"
            )
        return result

    def apply(
        self, manifest: str | Path, *, namespace: str | None = None, kubeconfig: Path | None = None
    ) -> str:
        """`kubectl apply` a file, or YAML text; return kubectl's output."""
        ns = [f"--namespace={namespace}"] if namespace else []
        if isinstance(manifest, Path):
            return self.kubectl("apply", "-f", manifest, *ns, kubeconfig=kubeconfig).stdout
        return self.kubectl("apply", "-f", "-", *ns, kubeconfig=kubeconfig, input=manifest).stdout

    def get(
        self, kind: str, name: str | None = None, *, namespace: str | None = None
    ) -> Obj | None:
        """One object (or a List without `name`) as JSON, or None if it does not exist."""
        ns = [f"--namespace={namespace}"] if namespace else []
        result = self.kubectl(
            "get", kind, *([name] if name else []), *ns, "-o", "json", check=False
        )
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise HarnessError(f"kubectl get {kind} {name or ''} failed:\n{result.stderr.strip()}")
        obj: Obj = json.loads(result.stdout)
        return obj

    def wait_for_object(
        self,
        kind: str,
        name: str,
        check: Callable[[Obj], bool],
        *,
        namespace: str | None = None,
        timeout: float = 60,
        what: str = "",
    ) -> Obj:
        """Poll one object until `check(obj)` holds; return it."""

        def probe() -> Obj | None:
            obj = self.get(kind, name, namespace=namespace)
            return obj if obj is not None and check(obj) else None

        return wait_until(what or f"{kind} {name}", probe, timeout=timeout, every=0.2)

    def create_namespace(self, name: str) -> None:
        """Create a namespace and wait for its default ServiceAccount (pods need it)."""
        self.kubectl("create", "namespace", name)
        wait_until(
            f"the default ServiceAccount of {name}",
            lambda: self.get("serviceaccount", "default", namespace=name),
            timeout=30,
        )

    # --- identities ---------------------------------------------------------------------

    def user_kubeconfig(self, user: str, groups: Iterable[str] = ()) -> Path:
        """A kubeconfig for `user` in `groups`, by a client certificate from the cluster's CA.

        The identity has only what RBAC grants it (and group system:authenticated's basics).
        """
        out = self.dir / "identities" / f"user-{user.replace(':', '_')}.kubeconfig"
        command = [str(self.binary), "mint", f"--dir={self.dir}", f"--user={user}", f"--out={out}"]
        command += [f"--group={g}" for g in groups]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            raise HarnessError(f"minting a certificate for {user}: {result.stderr.strip()}")
        return out

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, create: bool = True, duration: str = "24h"
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name by a bound token
        from the TokenRequest API (what an operator pod gets in a real cluster)."""
        if create and self.get("serviceaccount", name, namespace=namespace) is None:
            self.kubectl("create", "serviceaccount", name, f"--namespace={namespace}")
        token = self.kubectl(
            "create", "token", name, f"--namespace={namespace}", f"--duration={duration}"
        ).stdout.strip()
        out = self.dir / "identities" / f"sa-{namespace}-{name}.kubeconfig"
        out.parent.mkdir(parents=True, exist_ok=True)
        ca = self.ca_file.read_text()
        _write_token_kubeconfig(
            out, self.url, ca, f"system:serviceaccount:{namespace}:{name}", token
        )
        return out

    # --- the node agent ------------------------------------------------------------------

    def start_node_agent(
        self,
        name: str = NODE_NAME,
        *,
        backoff_base: float = 10.0,
        backoff_max: float = 300.0,
        runtime: str = "process",
        insecure_registries: Sequence[str] = (),
        provision_volumes: bool = True,
        light: bool = False,
        light_pace: float = 1.0,
        timeout: float = 30,
    ) -> NodeAgent:
        """Start node_agent.py as node `name` and wait until its Node is Ready.

        runtime="podman" runs pods as containers of their images (podman with the project's
        settings, scripts/containers/env.sh), pulling from `insecure_registries` over HTTP.
        provision_volumes: the agent provisions PersistentVolumeClaims of the default
        StorageClass `kubetrade-node-local`, which this installs (claims bind where the
        cluster runs STORAGE_CONTROLLERS). light=True runs nothing: pods are Running and
        Ready at once and their runners' /status is made up, `light_pace` bars a second
        (node_light.py).
        """
        node_kubeconfig = self.user_kubeconfig(f"system:node:{name}", ["system:nodes"])
        binder_kubeconfig = self.user_kubeconfig("system:kube-scheduler")
        provisioner = []
        if provision_volumes:
            self.apply(json.dumps(storage_class()))
            self.apply(json.dumps(_provisioner_binding()))
            kubeconfig = self.user_kubeconfig(PROVISIONER_USER)
            provisioner = [f"--provisioner-kubeconfig={kubeconfig}"]
        work_dir = self.dir / "nodes" / name
        work_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / f"node-agent-{name}.log"
        base = podman_env() if runtime == "podman" else os.environ
        env = {**base, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(E2E_DIR.parent)}
        options = [f"--runtime={runtime}"]
        options += [f"--insecure-registry={registry}" for registry in insecure_registries]
        if light:
            options += ["--light", f"--light-pace={light_pace}"]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "e2e.node_agent",
                    f"--kubeconfig={node_kubeconfig}",
                    f"--binder-kubeconfig={binder_kubeconfig}",
                    *provisioner,
                    f"--node-name={name}",
                    f"--work-dir={work_dir}",
                    f"--kubetrade={KUBETRADE}",
                    f"--backoff-base={backoff_base}",
                    f"--backoff-max={backoff_max}",
                    *options,
                    "--exit-on-stdin-eof",
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work_dir,
            )
        agent = NodeAgent(name, work_dir, log_path, process, runtime)
        self.agents.append(agent)

        def ready() -> bool:
            if process.poll() is not None:
                raise HarnessError(f"node agent exited ({process.returncode}):\n{_tail(log_path)}")
            node = self.get("node", name)
            conditions = (node or {}).get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_until(f"node {name} to be Ready", ready, timeout=timeout, every=0.2)
        return agent

    # --- the end ---------------------------------------------------------------------------

    def logs(self, *, pods: int = 5) -> str:
        """The last lines of the control plane's and the agents' logs, and of the `pods`
        most recently written container logs: what a failure report needs."""
        parts = [f"== {self.log_path} ==\n{_tail(self.log_path)}"]
        for agent in self.agents:
            parts.append(f"== {agent.log_path} ==\n{_tail(agent.log_path)}")
            recent = sorted(
                (agent.work_dir / "logs").glob("*/*.log"), key=lambda p: p.stat().st_mtime
            )
            parts += [f"== {path} ==\n{_tail(path, 20)}" for path in recent[-pods:]]
        return "\n".join(parts)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        _stop_process(self.process, grace=60)
        if os.environ.get("KUBETRADE_E2E_KEEP"):
            (self.dir / _KEPT).touch()
            print(f"\nkubetrade e2e: cluster files kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _provisioner_binding() -> Obj:
    """The node agent's provisioner gets what a cluster gives an external provisioner."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubetrade-e2e-volume-provisioner"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:persistent-volume-provisioner",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PROVISIONER_USER}
        ],
    }


def _write_token_kubeconfig(path: Path, server: str, ca_pem: str, user: str, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubetrade-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "kubetrade-test", "context": {"cluster": "kubetrade-test", "user": user}}
        ],
        "current-context": "kubetrade-test",
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML; kubectl reads either


def _remove_orphans() -> None:
    """Remove the directories of clusters whose pytest was killed: their processes went
    with it (stdin EOF), their files did not. Kept and live clusters are left alone."""
    for directory in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        if (directory / _KEPT).exists():
            continue
        try:
            pid = int(json.loads((directory / "ready.json").read_text())["pid"])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except (OSError, ValueError, KeyError):
            continue  # starting, or not ours to judge


def start_cluster(
    *,
    binary: Path | None = None,
    controllers: Sequence[str] | None = None,
    extra_apiserver_args: Sequence[str] = (),
    timeout: float = 180,
) -> Cluster:
    """Build if needed, start the control plane, wait until it serves; return the Cluster.

    `controllers` overrides the kube-controller-manager's controllers ([] runs none).
    """
    kubectl = find_kubectl()
    binary = binary or build_apiserver()
    _remove_orphans()
    work = Path(tempfile.mkdtemp(prefix=_PREFIX))
    log_path = work / "apiserver.log"
    command = [str(binary), "serve", f"--dir={work}", "--exit-on-stdin-eof"]
    if controllers is not None:
        command.append(f"--controllers={','.join(controllers)}")
    command += [f"--apiserver-arg={arg}" for arg in extra_apiserver_args]
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=work
        )

    def ready() -> Obj | None:
        if process.poll() is not None:
            raise HarnessError(
                f"kubetrade-apiserver exited ({process.returncode}) before it was ready; "
                f"log {log_path}:\n{_tail(log_path)}"
            )
        with contextlib.suppress(OSError, ValueError):
            info: Obj = json.loads((work / "ready.json").read_text())
            return info
        return None

    try:
        info = wait_until("kubetrade-apiserver to be ready", ready, timeout=timeout)
    except BaseException:
        _stop_process(process, grace=10)
        if not os.environ.get("KUBETRADE_E2E_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        raise
    return Cluster(
        dir=work,
        binary=binary,
        url=info["url"],
        kubeconfig=Path(info["kubeconfig"]),
        ca_file=Path(info["caFile"]),
        log_path=log_path,
        startup_seconds=time.monotonic() - started,
        process=process,
        kubectl_path=kubectl,
    )
