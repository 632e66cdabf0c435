"""`helm install` as a user does it, proven with real images and real containers.

The kubetrade image (scripts/build-image.sh) is pushed to a real registry with basic auth
(registry.py). helm (scripts/build-helm.sh) installs the chart into a real API server with
the Deployment and ReplicaSet controllers, taking the image from that registry by digest
with a pull secret (helm/kubetrade/examples/local-registry.yaml). The node agent runs every
pod as a podman container of its image: the operator with its ServiceAccount token
(in-cluster authentication, the chart's RBAC and nothing more), and the runner pod it
creates for the example session (examples/k8s/session.yaml, the SMA strategy xz-compressed
in a ConfigMap, as examples/k8s/README.md says). Then `helm upgrade` with changed values
replaces the operator (Recreate: the old pod goes before the new one comes) and leaves the
session's runner alone, and `helm uninstall` removes the release's objects and leaves the
CRD, the sessions and their runners.

`helm test` runs too: its pod reaches the operator by the Service's name, which the node
agent puts in the container's /etc/hosts (this cluster has no DNS and no Service routing;
the name leads to the operator pod's IP, where the Service's port is its containerPort).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import lzma
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import SMA_WASM

from .cluster import ROOT, Cluster, NodeAgent, wait_until
from .image import podman
from .kubeclient import KubeClient, load_credentials
from .registry import Registry

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
T = TypeVar("T")

CHART = ROOT / "helm" / "kubetrade"
VALUES = CHART / "examples" / "local-registry.yaml"
SESSION = ROOT / "examples" / "k8s" / "session.yaml"
RELEASE = "kubetrade"
SYSTEM = "kubetrade-system"
TRADING = "trading"
ACCOUNT = f"system:serviceaccount:{SYSTEM}:{RELEASE}"
SESSION_NAME = "sma-paper"
RUNNER = f"{SESSION_NAME}-runner"
UID = 65532


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """`helm ARGS` against the workload cluster's admin kubeconfig, with a scratch home;
    its stdout. Fails the test with helm's output if it fails."""
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-helm.sh")], capture_output=True, text=True, timeout=1800
    )
    if build.returncode != 0:
        pytest.fail(f"scripts/build-helm.sh failed:\n{build.stderr[-3000:]}", pytrace=False)
    binary = build.stdout.strip()
    home = tmp_path_factory.mktemp("helm-home")

    def run(*args: str, kubeconfig: Path, timeout: float = 600) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
        env |= {
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(kubeconfig),
        }
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    return run


@pytest.fixture(scope="module")
def sma_xz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SMA strategy as `xz -9e` compresses it (examples/k8s/README.md, step 2)."""
    path = tmp_path_factory.mktemp("strategy") / "sma.wasm.xz"
    path.write_bytes(lzma.compress(SMA_WASM.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    return path


# --- watching the operator's pods -----------------------------------------------------------


@dataclass
class PodLog:
    """Every ADDED / DELETED operator pod of a namespace, in the API server's order."""

    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, uid)

    def most_at_once(self) -> int:
        present: set[str] = set()
        most = 0
        for kind, uid in self.events:
            if kind == "DELETED":
                present.discard(uid)
            else:
                present.add(uid)  # a terminating pod is still a pod
            most = max(most, len(present))
        return most


@contextlib.contextmanager
def watching_pods(cluster: Cluster, namespace: str) -> Iterator[PodLog]:
    seen = PodLog()
    loop = asyncio.new_event_loop()
    synced = threading.Event()

    async def follow() -> None:
        async with KubeClient(load_credentials(cluster.kubeconfig)) as client:
            pods = f"/api/v1/namespaces/{namespace}/pods"
            params = {"labelSelector": "app.kubernetes.io/component=operator"}
            async for kind, pod in client.watch(pods, params=params):
                if kind in ("ADDED", "DELETED"):
                    seen.events.append((kind, pod["metadata"]["uid"]))
                elif kind == "SYNCED":
                    synced.set()

    task = loop.create_task(follow())

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert synced.wait(30), "the pod watch did not start"
    try:
        yield seen
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        loop.close()


# --- reading the cluster --------------------------------------------------------------------


def operator_pods(cluster: Cluster) -> list[Obj]:
    listing = cluster.get("pods", namespace=SYSTEM) or {"items": []}
    return [
        p
        for p in listing["items"]
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"
    ]


def running_and_ready(pod: Obj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return "running" in statuses[0].get("state", {}) and bool(statuses[0].get("ready"))


def the_container(agent: NodeAgent, pod: Obj) -> Obj:
    """podman's inspect record of the pod's (one) running container."""
    status = pod["status"]["containerStatuses"][0]
    assert status["containerID"].startswith("podman://"), status
    done = podman("container", "inspect", "--format=json", status["containerID"][9:])
    assert done.returncode == 0, done.stderr
    inspected: Obj = json.loads(done.stdout)[0]
    assert inspected["State"]["Running"] is True
    return inspected


def assert_hardened(inspected: Obj) -> None:
    """What the chart and the operator ask of their containers, as podman runs them."""
    assert inspected["Config"]["User"] == f"{UID}:{UID}"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["CapDrop"]  # every capability dropped
    assert not inspected["HostConfig"]["CapAdd"]
    assert "no-new-privileges" in inspected["HostConfig"]["SecurityOpt"]


def runner_status(pod: Obj) -> Obj:
    """The runner's own /status, at its pod IP as the operator reads it."""
    url = f"http://{pod['status']['podIP']}:9102/status"
    with urllib.request.urlopen(url, timeout=10) as answer:
        status: Obj = json.load(answer)
    return status


def session_bars(cluster: Cluster) -> int | None:
    """The session's status.summary.bars while it is Running, else None."""
    session = cluster.get("lts", SESSION_NAME, namespace=TRADING) or {}
    status = session.get("status") or {}
    if status.get("phase") != "Running":
        return None
    return int((status.get("summary") or {}).get("bars") or 0)


def the_operator(cluster: Cluster) -> Callable[[], Obj | None]:
    """A probe: the operator pod, once it is the only one."""

    def probe() -> Obj | None:
        pods = operator_pods(cluster)
        return pods[0] if len(pods) == 1 else None

    return probe


def bars_above(cluster: Cluster, floor: int) -> Callable[[], int | None]:
    """A probe: the session's bars once they exceed floor."""

    def probe() -> int | None:
        bars = session_bars(cluster)
        return bars if bars is not None and bars > floor else None

    return probe


def eventually(cluster: Cluster, what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """wait_until, with the operator's and the runner's output in the failure."""
    try:
        return wait_until(what, probe, timeout=timeout, every=1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None


# --- the test -------------------------------------------------------------------------------


def test_helm_install_runs_the_operator_and_a_session_in_containers_upgrades_and_uninstalls(
    workload_cluster: Cluster,
    container_agent: NodeAgent,
    registry: Registry,
    pushed_image: str,
    helm: Callable[..., str],
    sma_xz: Path,
) -> None:
    cluster, agent = workload_cluster, container_agent
    began = time.monotonic()
    repository, digest = pushed_image.split("@")
    admin = cluster.kubeconfig

    # What the chart's NOTES and examples/k8s/README.md ask a user to do around the install:
    # the pull secret where the operator runs, and in the session namespace for the runner
    # pods, which run as that namespace's default ServiceAccount; the strategy's ConfigMap.
    credentials = [
        f"--docker-server={registry.host}",
        f"--docker-username={registry.user}",
        f"--docker-password={registry.password}",
    ]
    for namespace in (SYSTEM, TRADING):
        cluster.create_namespace(namespace)
        cluster.kubectl("create", "secret", "docker-registry", "regcred", *credentials,
                        "-n", namespace)  # fmt: skip
    cluster.kubectl(
        "patch", "serviceaccount", "default", "-n", TRADING,
        "-p", '{"imagePullSecrets": [{"name": "regcred"}]}',
    )  # fmt: skip
    cluster.kubectl("create", "configmap", "sma-strategy", f"--from-file=sma.wasm.xz={sma_xz}",
                    "-n", TRADING)  # fmt: skip

    # --- install ---------------------------------------------------------------------------
    install_values = [
        "-f", str(VALUES),
        "--set", f"image.repository={repository}",
        "--set", f"image.digest={digest}",
        # Sessions' figures in status every 5 s instead of every minute: the test waits on
        # them.
        "--set-json", 'operator.extraArgs=["--resync-seconds=5","--summary-seconds=5"]',
    ]  # fmt: skip
    notes = helm("install", RELEASE, str(CHART), "-n", SYSTEM, *install_values,
                 "--wait", "--timeout=5m", kubeconfig=admin)  # fmt: skip
    assert "patch serviceaccount default" in notes
    installed = time.monotonic()

    deployment = cluster.get("deployment", RELEASE, namespace=SYSTEM)
    assert deployment is not None and deployment["status"].get("availableReplicas") == 1
    [operator] = operator_pods(cluster)
    assert operator["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert operator["spec"]["serviceAccountName"] == RELEASE
    assert running_and_ready(operator)
    status = operator["status"]["containerStatuses"][0]
    assert status["imageID"] == pushed_image  # pulled from the registry, by digest
    inspected = the_container(agent, operator)
    assert_hardened(inspected)
    pulled = [
        e["message"]
        for e in (cluster.get("events", namespace=SYSTEM) or {"items": []})["items"]
        if e["involvedObject"]["name"] == operator["metadata"]["name"] and e["reason"] == "Pulled"
    ]
    assert any(m.startswith(f'Successfully pulled image "{pushed_image}"') for m in pulled)

    # Its identity is the chart's ServiceAccount with the chart's RBAC, nothing more.
    def can(*args: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", *args, f"--as={ACCOUNT}", check=False)
        return answer.stdout.strip() == "yes"

    assert can("create", "pods", "-n", TRADING)
    assert can("patch", "livetradingsessions.kubetrade.io/status", "-n", TRADING)
    # A session's pull Secret is read by name to resolve a strategy tag; no Secret is
    # listed or watched, so none but the ones sessions name is ever seen.
    assert can("get", "secrets", "-n", TRADING)
    assert not can("list", "secrets", "-n", TRADING)
    assert not can("watch", "secrets", "-n", TRADING)
    assert not can("create", "deployments", "-n", SYSTEM)
    # The chart's own check: its test pod asks the operator's /healthz through the Service.
    tested = helm("test", RELEASE, "-n", SYSTEM, "--timeout=2m", kubeconfig=admin)
    assert re.search(r"^Phase:\s+Succeeded$", tested, re.MULTILINE), tested
    helm_tested = time.monotonic()

    # --- a session -------------------------------------------------------------------------
    cluster.kubectl("apply", "-f", SESSION, "-n", TRADING)
    first_bars = eventually(cluster, "the session to run with bars", bars_above(cluster, 0), 300)
    running = time.monotonic()
    runner = cluster.get("pod", RUNNER, namespace=TRADING)
    assert runner is not None and running_and_ready(runner)
    assert runner["spec"]["imagePullSecrets"] == [{"name": "regcred"}]  # from the account
    assert runner["status"]["containerStatuses"][0]["imageID"] == pushed_image
    assert_hardened(the_container(agent, runner))
    more_bars = eventually(cluster, "the bars to increase", bars_above(cluster, first_bars), 90)

    # --- upgrade: changed values roll the operator, the runner stays -------------------------
    with watching_pods(cluster, SYSTEM) as seen:
        helm("upgrade", RELEASE, str(CHART), "-n", SYSTEM, "--reuse-values",
             "--set-json",
             'operator.extraArgs=["--resync-seconds=5","--summary-seconds=5","--verbose"]',
             "--wait", "--timeout=5m", kubeconfig=admin)  # fmt: skip
        upgraded = eventually(cluster, "one operator after the upgrade", the_operator(cluster), 120)
    assert upgraded["metadata"]["uid"] != operator["metadata"]["uid"]
    assert "--verbose" in upgraded["spec"]["containers"][0]["args"]
    assert running_and_ready(upgraded)
    assert seen.most_at_once() == 1  # Recreate: never two operators
    assert_hardened(the_container(agent, upgraded))
    replica_sets = (cluster.get("replicasets", namespace=SYSTEM) or {"items": []})["items"]
    assert sorted(rs["status"]["replicas"] for rs in replica_sets) == [0, 1]
    still = cluster.get("pod", RUNNER, namespace=TRADING)
    assert still is not None and still["metadata"]["uid"] == runner["metadata"]["uid"]
    eventually(cluster, "the new operator to report more bars", bars_above(cluster, more_bars), 90)
    upgraded_at = time.monotonic()
    for pod in (operator, upgraded):
        log = agent.pod_log(SYSTEM, pod["metadata"]["name"], "operator")
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]

    # --- uninstall: the release goes, the CRD and the sessions stay --------------------------
    helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout=5m", kubeconfig=admin)
    eventually(cluster, "the operator pods to go", lambda: not operator_pods(cluster), 120)
    for kind, name, where in [
        ("deployment", RELEASE, SYSTEM),
        ("service", f"{RELEASE}-metrics", SYSTEM),
        ("serviceaccount", RELEASE, SYSTEM),
        ("clusterrole", RELEASE, None),
        ("clusterrolebinding", RELEASE, None),
    ]:
        assert cluster.get(kind, name, namespace=where) is None, f"{kind} {name} remains"
    eventually(
        cluster,
        "the ReplicaSets to be collected",
        lambda: not (cluster.get("replicasets", namespace=SYSTEM) or {"items": []})["items"],
        60,
    )
    assert cluster.get("crd", "livetradingsessions.kubetrade.io") is not None
    assert cluster.get("lts", SESSION_NAME, namespace=TRADING) is not None
    assert cluster.get("configmap", f"{SESSION_NAME}-runner-config", namespace=TRADING)
    # The session's runner and its data live on, trading, with no operator to report it.
    runner = cluster.get("pod", RUNNER, namespace=TRADING)
    assert runner is not None and running_and_ready(runner)
    before = runner_status(runner)["bars"]
    eventually(cluster, "the runner to go on", lambda: runner_status(runner)["bars"] > before, 30)

    print(
        f"\nhelm e2e: install {installed - began:.0f} s, helm test {helm_tested - installed:.0f} s,"
        f" the session Running {running - helm_tested:.0f} s later, more bars and the upgrade"
        f" {upgraded_at - running:.0f} s, uninstall {time.monotonic() - upgraded_at:.0f} s"
    )
