"""The kubetrade operator as the e2e tests run it: a process of its own, logged in as its
ServiceAccount, with what deploy/rbac.yaml grants and nothing more.

The `crd` fixture applies crds/ and waits until the CRD is Established; the `operator`
fixture (module scope: each test module gets its own) applies deploy/rbac.yaml and runs
`kubetrade operator --all-namespaces` against the `cluster`, its liveness endpoint up
before the first test. `start_operator` runs one with other flags (two leader-election
candidates, the scale benchmark's). Helpers: `eventually` (wait_until with the operator's log in a
failure), `condition`, `session_events`, `patch`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .cluster import ROOT, Cluster, NodeAgent, wait_until

Obj = dict[str, Any]
T = TypeVar("T")

CRD = ROOT / "crds" / "livetradingsessions.kubetrade.io.yaml"
RBAC = ROOT / "deploy" / "rbac.yaml"
DEPLOYMENT = ROOT / "deploy" / "operator.yaml"
EXAMPLE = ROOT / "examples" / "k8s" / "session.yaml"
KUBETRADE = Path(sys.executable).parent / "kubetrade"
OPERATOR_NAMESPACE = "kubetrade-system"
OPERATOR_ACCOUNT = "kubetrade-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"


# --- the operator process -----------------------------------------------------------------


def _die_with_parent() -> None:
    # prctl(PR_SET_PDEATHSIG, SIGTERM): the operator must not outlive a killed pytest.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0  # its HTTP port: /healthz (kopf's liveness) and /metrics

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        """Whether its liveness endpoint answers 200; an exited operator fails with its log."""
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited ({self.process.returncode}):\n{self.tail()}")
        url = f"http://127.0.0.1:{self.port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
        return False

    def stop(self, grace: float = 30) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def apply_crd(cluster: Cluster) -> None:
    """crds/ applied, and Established."""
    cluster.apply(CRD)
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/livetradingsessions.kubetrade.io",
        "--timeout=60s",
    )


def operator_kubeconfig(cluster: Cluster) -> Path:
    """deploy/rbac.yaml applied; a kubeconfig with a bound token of its ServiceAccount."""
    cluster.apply(RBAC)
    return cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, create=False)


def start_operator(
    cluster: Cluster,
    *,
    args: Sequence[str] = ("--resync-seconds=5",),
    log_name: str = "operator.log",
    kubeconfig: Path | None = None,
    wait: bool = True,
) -> Operator:
    """`kubetrade operator --all-namespaces` as its ServiceAccount, with `args` besides;
    its liveness endpoint up unless `wait` is false (a leader-election standby serves it
    at once, too)."""
    kubeconfig = kubeconfig or operator_kubeconfig(cluster)
    port = _free_port()
    log_path = cluster.dir / log_name
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PYTHONSAFEPATH"] = "1"
    command = [
        str(KUBETRADE),
        "operator",
        f"--kubeconfig={kubeconfig}",
        "--all-namespaces",
        "--runner-image=ghcr.io/kubetrade/kubetrade:e2e",
        # The node agent cannot mount an emptyDir at /tmp (it pre-creates <root>/tmp).
        "--runner-scratch-dir=/var/tmp",
        f"--liveness=http://127.0.0.1:{port}/healthz",
        *args,
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cluster.dir,
            preexec_fn=_die_with_parent,
        )
    running = Operator(process, log_path, port)
    if wait:
        wait_until("the operator's liveness endpoint", running.alive, timeout=60, every=0.3)
    return running


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    apply_crd(cluster)
    applied = cluster.get("crd", "livetradingsessions.kubetrade.io")
    assert applied is not None
    kinds = {c["type"]: c["status"] for c in applied["status"]["conditions"]}
    assert kinds.get("NonStructuralSchema") is None, kinds  # the API server found it structural


@pytest.fixture(scope="module")
def operator(cluster: Cluster, node_agent: NodeAgent, crd: None) -> Iterator[Operator]:
    running = start_operator(
        cluster, args=["--standalone", "--resync-seconds=5", "--summary-seconds=5"]
    )
    yield running
    running.stop()


# --- helpers --------------------------------------------------------------------------------


def eventually(operator: Operator, what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """wait_until, with the operator's log in the failure."""
    try:
        return wait_until(what, probe, timeout=timeout, every=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- operator log ---\n{operator.tail()}") from None


def condition(obj: Obj, kind: str) -> Obj:
    found: Obj = next(c for c in obj["status"]["conditions"] if c["type"] == kind)
    return found


def session_events(cluster: Cluster, namespace: str, name: str) -> list[Obj]:
    listing = cluster.get("events", namespace=namespace) or {"items": []}
    return [e for e in listing["items"] if e["involvedObject"]["name"] == name]


def patch(cluster: Cluster, namespace: str, name: str, spec: Obj) -> None:
    body = json.dumps({"spec": spec})
    cluster.kubectl("patch", "lts", name, "-n", namespace, "--type=merge", "-p", body)
