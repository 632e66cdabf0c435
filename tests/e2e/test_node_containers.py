"""The node agent's container mode: a pod runs as a podman container of its image.

The image is the kubetrade image, pushed to the session's registry (basic auth) and pulled
by the node with the pod's imagePullSecret. A small Python program in it reports what the
container sees (its user and groups, its mounted files, a read-only root, no capabilities,
no new privileges, its env) and asks the API server who it is with the ServiceAccount token
the kubelet mounts, as an in-cluster client does; it serves that report over HTTP on the
pod's IP, where the readiness probe also looks. Then it exits 3 once, to be restarted, and
a pod with a wrong pull secret must not get the image at all.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import urllib.request
from typing import Any

import pytest

from .cluster import Cluster, NodeAgent
from .image import podman
from .registry import Registry

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
NAMESPACE = "container-rules"
POD = "reporter"
UID = 65532

PROGRAM = textwrap.dedent("""
    import http.server, json, os, signal, ssl, sys, urllib.request

    def attempt(action):
        try:
            action()
            return "ok"
        except OSError as error:
            return error.strerror

    def read(path):
        with open(path) as f:
            return f.read()

    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    status = dict(line.split(":\\t", 1) for line in read("/proc/self/status").splitlines())
    report = {
        "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "config": read("/etc/files/greeting.txt"),
        "key": read("/etc/keys/api_key"),
        "key_mode": oct(os.stat("/etc/keys/api_key").st_mode & 0o777),
        "write_scratch": attempt(lambda: open("/scratch/x", "w").close()),
        "write_root": attempt(lambda: open("/x", "w").close()),
        "write_config": attempt(lambda: open("/etc/files/x", "w").close()),
        "env": os.environ.get("GREETING"),
        "namespace": read(account + "/namespace"),
        "capabilities": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "hostname": os.uname().nodename,
    }
    # In-cluster configuration, as client libraries read it.
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    review = urllib.request.Request(
        f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=b'{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}',
        headers={"Authorization": "Bearer " + read(account + "/token"),
                 "Content-Type": "application/json"},
        method="POST",
    )
    tls = ssl.create_default_context(cafile=account + "/ca.crt")
    with urllib.request.urlopen(review, context=tls, timeout=10) as answer:
        report["user"] = json.load(answer)["status"]["userInfo"]["username"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(report).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if self.path == "/exit":
                os._exit(3)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listen = sys.argv[1]  # http://0.0.0.0:8080/, given the host port by the node
    port = int(listen.rsplit(":", 1)[1].strip("/"))
    print("serving on", listen, flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
""")


def reporter_pod(image: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE},
        "spec": {
            "imagePullSecrets": [{"name": "regcred"}],
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": 2000,
            },
            "containers": [
                {
                    "name": "report",
                    "image": image,
                    "imagePullPolicy": "Always",
                    "command": ["python3", "-c", PROGRAM],
                    "args": ["http://0.0.0.0:8080/"],
                    "env": [
                        {"name": "WHO", "value": "world"},
                        {"name": "GREETING", "value": "hello $(WHO)"},
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": "http"},
                        "periodSeconds": 1,
                    },
                    "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "files", "mountPath": "/etc/files"},
                        {"name": "keys", "mountPath": "/etc/keys", "readOnly": True},
                        {"name": "scratch", "mountPath": "/scratch"},
                    ],
                }
            ],
            "volumes": [
                {"name": "files", "configMap": {"name": "files"}},
                {"name": "keys", "secret": {"secretName": "keys", "defaultMode": 0o440}},
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }


def container_status(pod: Obj) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    status: Obj = statuses[0]
    return status


def ready(pod: Obj) -> bool:
    return bool(container_status(pod).get("ready"))


def fetch(pod: Obj, path: str = "/") -> Obj:
    url = f"http://{pod['status']['podIP']}:8080{path}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        report: Obj = json.load(answer)
    return report


def test_a_pod_runs_as_a_container_of_its_image_pulled_with_its_secret(
    workload_cluster: Cluster, container_agent: NodeAgent, registry: Registry, pushed_image: str
) -> None:
    cluster = workload_cluster
    ns = ["-n", NAMESPACE]
    cluster.create_namespace(NAMESPACE)
    cluster.kubectl(
        "create", "secret", "docker-registry", "regcred", f"--docker-server={registry.host}",
        f"--docker-username={registry.user}", f"--docker-password={registry.password}", *ns,
    )  # fmt: skip
    cluster.kubectl("create", "configmap", "files", "--from-literal=greeting.txt=hi", *ns)
    cluster.kubectl("create", "secret", "generic", "keys", "--from-literal=api_key=k-123", *ns)
    cluster.apply(json.dumps(reporter_pod(pushed_image)))

    pod = cluster.wait_for_object("pod", POD, ready, namespace=NAMESPACE, timeout=120)
    report = fetch(pod)
    assert (report["uid"], report["gid"]) == (UID, UID)
    assert 2000 in report["groups"]  # fsGroup
    assert report["config"] == "hi"
    assert report["key"] == "k-123"
    assert report["key_mode"] == "0o440"  # readable through the fsGroup only
    assert report["write_scratch"] == "ok"
    assert report["write_root"] == "Read-only file system"
    assert report["write_config"] == "Read-only file system"
    assert report["env"] == "hello world"
    assert report["namespace"] == NAMESPACE
    assert report["capabilities"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert report["hostname"] == POD
    # The token the kubelet mounted, verified with the ca.crt it mounted next to it.
    assert report["user"] == f"system:serviceaccount:{NAMESPACE}:default"

    status = container_status(pod)
    assert status["containerID"].startswith("podman://")
    assert status["imageID"] == pushed_image
    assert "running" in status["state"]
    reasons = [e["reason"] for e in (cluster.get("events", namespace=NAMESPACE) or {})["items"]]
    assert "Pulled" in reasons and "Started" in reasons
    [container] = container_agent.containers(NAMESPACE)
    assert container["Id"] == status["containerID"].removeprefix("podman://")
    inspection = podman("container", "inspect", "--format=json", container["Id"])
    inspected = json.loads(inspection.stdout)[0]
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["Memory"] == 256 * 2**20
    assert inspected["HostConfig"]["NanoCpus"] == 500_000_000

    # Its program exits 3: the container restarts, and the pod says so.
    with contextlib.suppress(OSError):  # the answer may or may not arrive before the exit
        fetch(pod, "/exit")

    def restarted(pod: Obj) -> bool:
        status = container_status(pod)
        return status.get("restartCount") == 1 and bool(status.get("ready"))

    pod = cluster.wait_for_object("pod", POD, restarted, namespace=NAMESPACE, timeout=120)
    last = container_status(pod)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (3, "Error")
    assert fetch(pod)["uid"] == UID

    # A wrong password: the registry refuses the pull, and the container never starts.
    cluster.kubectl(
        "create", "secret", "docker-registry", "badcred", f"--docker-server={registry.host}",
        f"--docker-username={registry.user}", "--docker-password=wrong", *ns,
    )  # fmt: skip
    refused = reporter_pod(pushed_image)
    refused["metadata"]["name"] = "refused"
    refused["spec"]["imagePullSecrets"] = [{"name": "badcred"}]
    cluster.apply(json.dumps(refused))

    def pull_refused(pod: Obj) -> bool:
        waiting = container_status(pod).get("state", {}).get("waiting") or {}
        return waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff")

    pod = cluster.wait_for_object("pod", "refused", pull_refused, namespace=NAMESPACE, timeout=60)
    events = (cluster.get("events", namespace=NAMESPACE) or {})["items"]
    failures = [e["message"] for e in events if e["involvedObject"]["name"] == "refused"]
    assert any("unauthorized" in message for message in failures), failures
    assert pod["status"]["phase"] == "Pending"

    # Deleted: SIGTERM, the container goes, then the pod object.
    cluster.kubectl("delete", "pod", POD, "refused", *ns, "--timeout=60s")
    assert container_agent.containers(NAMESPACE) == []
