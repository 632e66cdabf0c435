"""The e2e harness itself: a real API server that enforces RBAC and CEL rules, a controller
manager that collects garbage, and a node agent that runs `kubetrade run` pods."""

from __future__ import annotations

import base64
import json
import os
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import SMA_WASM

from .cluster import Cluster, NodeAgent, wait_until
from .tiny_strategy import tiny_strategy_wasm

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]


def forbidden(result: Any) -> bool:
    return bool(result.returncode != 0 and "forbidden" in result.stderr.lower())


def test_rbac_forbids_a_restricted_user_until_a_role_grants_it(
    cluster: Cluster, namespace: str
) -> None:
    operator = cluster.user_kubeconfig("kubetrade-operator")
    cluster.kubectl("create", "secret", "generic", "s1", "--from-literal=k=v", "-n", namespace)

    assert forbidden(cluster.kubectl("get", "secrets", "-A", kubeconfig=operator, check=False))
    assert forbidden(
        cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=operator, check=False)
    )

    cluster.apply(
        textwrap.dedent(f"""
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {{name: read-secrets, namespace: {namespace}}}
        rules:
        - {{apiGroups: [""], resources: [secrets], verbs: [get, list]}}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {{name: operator-reads-secrets, namespace: {namespace}}}
        roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-secrets}}
        subjects:
        - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: kubetrade-operator}}
        """)
    )
    allowed = cluster.kubectl(
        "get", "secrets", "-n", namespace, "-o", "name", kubeconfig=operator, check=False
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "secret/s1" in allowed.stdout
    # A Role grants nothing outside its namespace.
    assert forbidden(cluster.kubectl("get", "secrets", "-A", kubeconfig=operator, check=False))


def test_a_service_account_token_identity_is_the_service_account(
    cluster: Cluster, namespace: str
) -> None:
    kubeconfig = cluster.service_account_kubeconfig(namespace, "kubetrade-operator")
    review = json.loads(
        cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout
    )
    assert review["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{namespace}:kubetrade-operator"
    )
    assert forbidden(
        cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    )


WIDGET_CRD = textwrap.dedent("""
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.e2e.kubetrade.io}
    spec:
      group: e2e.kubetrade.io
      names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wdg]}
      scope: Namespaced
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [minReplicas, maxReplicas]
                properties:
                  minReplicas: {type: integer, default: 1}
                  maxReplicas: {type: integer}
                x-kubernetes-validations:
                - rule: self.minReplicas <= self.maxReplicas
                  message: minReplicas must not exceed maxReplicas
    """)


def widget(namespace: str, name: str, low: int, high: int) -> str:
    return (
        f"apiVersion: e2e.kubetrade.io/v1\nkind: Widget\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{minReplicas: {low}, maxReplicas: {high}}}\n"
    )


def test_a_crd_applies_and_its_cel_rule_rejects_an_invalid_object(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.e2e.kubetrade.io", "--timeout=30s"
    )

    cluster.apply(widget(namespace, "good", 1, 3))
    assert cluster.get("wdg", "good", namespace=namespace) is not None

    bad = cluster.kubectl("apply", "-f", "-", input=widget(namespace, "bad", 5, 2), check=False)
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr
    assert cluster.get("wdg", "bad", namespace=namespace) is None


def test_the_garbage_collector_deletes_dependents_of_a_deleted_owner(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = cluster.get("configmap", "owner", namespace=namespace)
    assert owner is not None
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dependent", "namespace": namespace, "ownerReferences": [ref]},
    }
    cluster.apply(json.dumps(dependent))

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        "the dependent ConfigMap to be collected",
        lambda: cluster.get("configmap", "dependent", namespace=namespace) is None,
        timeout=60,
        every=0.5,
    )


def test_a_configmap_cannot_hold_a_go_strategy(cluster: Cluster, namespace: str) -> None:
    # Why the operator cannot mount the example strategies from a ConfigMap: objects are
    # limited to 1 MiB, and a Go-built strategy is over 4 MB.
    assert SMA_WASM.stat().st_size > 1024 * 1024
    result = cluster.kubectl(
        "create",
        "configmap",
        "sma",
        f"--from-file=strategy.wasm={SMA_WASM}",
        "-n",
        namespace,
        check=False,
    )
    assert result.returncode != 0
    assert "Too long" in result.stderr or "too large" in result.stderr.lower(), result.stderr


# --- the node agent -----------------------------------------------------------------------

SESSION = textwrap.dedent("""
    apiVersion: kubetrade.io/v1alpha1
    kind: LiveTradingSession
    metadata: {{name: tiny}}
    spec:
      symbols: [BTCUSDT]
      interval: 1m
      strategy:
        # Relative to this file, so it resolves inside a container and under the agent alike.
        path: ../strategy/strategy.wasm
      marketData:
        provider: synthetic
        config: {{seed: 7, speed: {speed}}}
      trading:
        provider: paper
    """)


def session_objects(namespace: str, *, speed: float) -> str:
    """The ConfigMaps (session file, strategy bytes) and Secret a runner pod mounts."""
    strategy = base64.b64encode(tiny_strategy_wasm()).decode()
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "session", "namespace": namespace},
            "data": {"session.yaml": SESSION.format(speed=speed)},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "strategy", "namespace": namespace},
            "binaryData": {"strategy.wasm": strategy},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "credentials", "namespace": namespace},
            "stringData": {"api_key": "not-used-by-paper"},
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def runner_pod(namespace: str, name: str, args: list[str], *, restart: str = "Never") -> str:
    """A runner pod the way the operator will write one (hardened, probed, metrics port)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "runner",
                    "image": "ghcr.io/kubetrade/kubetrade:dev",
                    "command": ["kubetrade"],
                    "args": args,
                    "env": [{"name": "KUBETRADE_CREDENTIALS_DIR", "value": "/credentials"}],
                    "ports": [{"name": "metrics", "containerPort": 9102}],
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": "metrics"},
                        "periodSeconds": 1,
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "session", "mountPath": "/config", "readOnly": True},
                        {"name": "strategy", "mountPath": "/strategy", "readOnly": True},
                        {"name": "credentials", "mountPath": "/credentials", "readOnly": True},
                        {"name": "out", "mountPath": "/out"},
                    ],
                }
            ],
            "volumes": [
                {"name": "session", "configMap": {"name": "session"}},
                {"name": "strategy", "configMap": {"name": "strategy"}},
                {"name": "credentials", "secret": {"secretName": "credentials"}},
                {"name": "out", "emptyDir": {}},
            ],
        },
    }
    return json.dumps(pod)


def container_status(pod: Obj) -> Obj:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    status: Obj = statuses[0]
    return status


def condition(pod: Obj, kind: str) -> str | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


def test_the_node_agent_runs_a_session_pod_to_success(
    cluster: Cluster, node_agent: NodeAgent, namespace: str
) -> None:
    cluster.apply(session_objects(namespace, speed=0))
    args = [
        "run",
        "--max-bars",
        "50",
        "/config/session.yaml",
        "--http-port",
        "9102",
        "--summary-json=/out/summary.json",
    ]
    cluster.apply(runner_pod(namespace, "runner", args))

    pod = cluster.wait_for_object(
        "pod",
        "runner",
        lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
        namespace=namespace,
        timeout=90,
        what="the runner pod to finish",
    )
    log = node_agent.pod_log(namespace, "runner", "runner")
    assert pod["status"]["phase"] == "Succeeded", log
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert pod["spec"]["nodeName"] == node_agent.name  # bound by the agent
    assert condition(pod, "PodScheduled") == "True"
    assert condition(pod, "Ready") == "False"  # a finished pod is not ready
    # The runner wrote its summary into the emptyDir, through the rewritten path.
    uid8 = pod["metadata"]["uid"][:8]
    summary_path = (
        node_agent.work_dir
        / "pods"
        / f"{namespace}_runner_{uid8}"
        / "volumes"
        / "out"
        / "summary.json"
    )
    assert json.loads(summary_path.read_text())["bars"] == 50


def test_a_running_pod_is_ready_reachable_at_its_pod_ip_and_killed_on_delete(
    cluster: Cluster, node_agent: NodeAgent, namespace: str
) -> None:
    # speed 60: one 1m bar a second, so the runner is still running when we look.
    cluster.apply(session_objects(namespace, speed=60))
    cluster.apply(
        runner_pod(namespace, "runner", ["run", "/config/session.yaml"], restart="Always")
    )

    pod = cluster.wait_for_object(
        "pod",
        "runner",
        lambda p: condition(p, "Ready") == "True",
        namespace=namespace,
        timeout=60,
        what="the runner pod to be Ready",
    )
    assert pod["status"]["phase"] == "Running"
    pod_ip = pod["status"]["podIP"]
    with urllib.request.urlopen(f"http://{pod_ip}:9102/status", timeout=5) as resp:
        assert resp.status == 200
        json.loads(resp.read())
    pid = int(container_status(pod)["containerID"].rsplit("/", 1)[1])
    os.kill(pid, 0)  # the runner process is alive

    cluster.kubectl("delete", "pod", "runner", "-n", namespace, "--wait=false")
    wait_until(
        "the pod object to be deleted",
        lambda: cluster.get("pod", "runner", namespace=namespace) is None,
        timeout=40,
        every=0.2,
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(
    cluster: Cluster, node_agent: NodeAgent, namespace: str
) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ignoring SIGTERM', flush=True); time.sleep(600)"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stubborn", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "main", "image": "python", "command": ["python3", "-c", script]}
            ],
        },
    }
    cluster.apply(json.dumps(pod))
    running = cluster.wait_for_object(
        "pod",
        "stubborn",
        lambda p: "running" in container_status(p).get("state", {}),
        namespace=namespace,
        timeout=30,
    )
    pid = int(container_status(running)["containerID"].rsplit("/", 1)[1])
    wait_until(
        "the process to ignore SIGTERM",
        lambda: (
            "ignoring SIGTERM" in node_agent.pod_log(namespace, "stubborn", "main").splitlines()
        ),
        timeout=30,
    )

    started = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=false")
    wait_until(
        "the stubborn pod to be deleted",
        lambda: cluster.get("pod", "stubborn", namespace=namespace) is None,
        timeout=30,
        every=0.2,
    )
    # Not before SIGKILL at the end of the 2 s grace period (no upper bound: a busy machine).
    assert time.monotonic() - started >= 2
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_crashing_container_restarts_and_backs_off(
    cluster: Cluster, node_agent: NodeAgent, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "namespace": namespace},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"]}],
        },
    }
    cluster.apply(json.dumps(pod))
    crashed = cluster.wait_for_object(
        "pod",
        "crasher",
        lambda p: (
            container_status(p).get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
        ),
        namespace=namespace,
        timeout=30,
        what="CrashLoopBackOff",
    )
    status = container_status(crashed)
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert crashed["status"]["phase"] == "Running"
    assert condition(crashed, "Ready") == "False"


def test_a_claim_gets_a_node_local_volume_that_outlives_its_pods(
    cluster: Cluster, node_agent: NodeAgent, namespace: str
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.apply(json.dumps(claim))
    # The default StorageClass is filled in, the agent provisions, the binder binds.
    bound = cluster.wait_for_object(
        "pvc", "data", lambda c: c.get("status", {}).get("phase") == "Bound",
        namespace=namespace, timeout=60, what="the claim to be bound",
    )  # fmt: skip
    assert bound["spec"]["storageClassName"] == "kubetrade-node-local"
    volume = cluster.get("pv", bound["spec"]["volumeName"])
    assert volume is not None and volume["status"]["phase"] == "Bound"
    directory = Path(volume["spec"]["hostPath"]["path"])
    assert directory.parent == node_agent.work_dir / "persistent-volumes"

    def pod(name: str, script: str) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        })  # fmt: skip

    # What one pod writes, the next pod of the claim reads.
    for name, script in (("writer", "echo kept > /data/note"), ("reader", "cat /data/note")):
        cluster.apply(pod(name, script))
        done = cluster.wait_for_object(
            "pod", name, lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
            namespace=namespace, timeout=60, what=f"pod {name} to finish",
        )  # fmt: skip
        assert done["status"]["phase"] == "Succeeded", node_agent.pod_log(namespace, name, "c")
    assert node_agent.pod_log(namespace, "reader", "c").strip().endswith("kept")
    assert (directory / "note").read_text() == "kept\n"

    # A deleted claim (once no pod uses it) takes its volume and directory with it.
    cluster.kubectl("delete", "pod", "writer", "reader", "-n", namespace)
    cluster.kubectl("delete", "pvc", "data", "-n", namespace, "--timeout=60s")
    wait_until("the volume to go", lambda: cluster.get("pv", volume["metadata"]["name"]) is None,
               timeout=60)  # fmt: skip
    assert not directory.exists()
