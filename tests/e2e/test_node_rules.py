"""The node agent's rules for turning a container into a process, which runner pods must fit:
paths under mounts move under the container's root, `kubetrade` is this virtualenv's, and
the runner's HTTP port becomes a host port; and in container mode, how a pod's spec becomes
`podman run` options. Pure functions; no cluster needed."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .node_container import (
    docker_config,
    image_id,
    quantity,
    registry_of,
    resource_options,
    run_arguments,
    security_options,
)
from .node_files import (
    Mount,
    PodSetupError,
    container_argv,
    expand,
    listen_on_host_ports,
    path_rewriter,
    served_port,
)

ROOT = Path("/pods/p/containers/runner")
KUBETRADE = Path("/venv/bin/kubetrade")
MOUNTS = ["/config", "/strategy", "/out"]


def argv(container: dict[str, Any], http_port: tuple[int, int] | None = None) -> list[str]:
    return container_argv(
        container,
        {"SESSION": "/config/session.yaml"},
        kubetrade=KUBETRADE,
        root=ROOT,
        mount_paths=MOUNTS,
        http_port=http_port,
    )


def test_paths_under_mounts_move_under_the_root_wherever_they_start_a_path() -> None:
    rewrite = path_rewriter(ROOT, MOUNTS)
    assert rewrite("/config/session.yaml") == f"{ROOT}/config/session.yaml"
    assert rewrite("/out") == f"{ROOT}/out"
    assert rewrite("--summary-json=/out/s.json") == f"--summary-json={ROOT}/out/s.json"
    assert rewrite('sh -c "cat /config/x"') == f'sh -c "cat {ROOT}/config/x"'
    # Not a mount path, or not at the start of a path: the "image" (this machine) is meant.
    for untouched in ("/configs/x", "/usr/bin/python3", "http://host/config", "config/x"):
        assert rewrite(untouched) == untouched


def test_kubetrade_is_the_default_entrypoint_and_resolves_to_the_virtualenv() -> None:
    assert argv({"args": ["run", "$(SESSION)"]}) == [
        str(KUBETRADE),
        "run",
        f"{ROOT}/config/session.yaml",
    ]
    assert argv({"command": ["sh", "-c", "exit 3"]}) == ["sh", "-c", "exit 3"]


def test_the_runners_http_port_becomes_its_host_port() -> None:
    given = {"command": ["kubetrade"], "args": ["run", "/config/s.yaml", "--http-port", "9102"]}
    assert argv(given, (9102, 40001))[-2:] == ["--http-port", "40001"]
    assert argv({"args": ["run", "--http-port=9102", "/config/s.yaml"]}, (9102, 40001))[2] == (
        "--http-port=40001"
    )
    # Without the flag, `kubetrade run` would serve spec.metricsPort; it gets the host port.
    assert argv({"args": ["run", "/config/s.yaml"]}, (9102, 40001))[1:4] == [
        "run",
        "--http-port",
        "40001",
    ]


def test_the_served_port_is_the_one_named_metrics_or_the_only_one() -> None:
    named = {"ports": [{"containerPort": 8080}, {"name": "metrics", "containerPort": 9102}]}
    assert served_port(named) == 9102
    assert served_port({"ports": [{"containerPort": 8080}]}) == 8080
    assert served_port({"ports": [{"containerPort": 1}, {"containerPort": 2}]}) is None
    assert served_port({}) is None


def test_variable_references_expand_like_kubernetes() -> None:
    env = {"A": "x"}
    assert expand("$(A)/$(B)", env) == "x/$(B)"
    assert expand("$$(A) costs $$5", env) == "$(A) costs $5"


def test_a_url_listening_on_a_container_port_listens_on_its_host_port() -> None:
    ports = {8080: 40002}
    assert listen_on_host_ports("--liveness=http://0.0.0.0:8080/healthz", ports) == (
        "--liveness=http://127.0.0.1:40002/healthz"
    )
    assert listen_on_host_ports("http://localhost:8080", ports) == "http://127.0.0.1:40002"
    # Another port, another host, or a port that is only a prefix: left alone.
    for untouched in ("http://0.0.0.0:9090/x", "http://example.com:8080/", "http://0.0.0.0:80801"):
        assert listen_on_host_ports(untouched, ports) == untouched


def test_container_mode_keeps_paths_and_applies_command_over_the_images_entrypoint() -> None:
    def image_argv(container: dict[str, Any]) -> list[str]:
        return container_argv(
            container,
            {},
            kubetrade=None,
            root=ROOT,
            mount_paths=[],
            http_port=None,
            entrypoint=["kubetrade"],
            image_args=["--help"],
        )

    assert image_argv({}) == ["kubetrade", "--help"]  # the image's entrypoint and arguments
    assert image_argv({"args": ["run", "/config/s.yaml"]}) == ["kubetrade", "run", "/config/s.yaml"]
    assert image_argv({"command": ["python3"]}) == ["python3"]  # the image's arguments dropped


def test_pull_secrets_become_one_auth_file() -> None:
    def secret(kind: str, key: str, value: object) -> dict[str, Any]:
        encoded = base64.b64encode(json.dumps(value).encode()).decode()
        return {"type": kind, "data": {key: encoded}}

    auth = base64.b64encode(b"u:p").decode()
    config = docker_config(
        [
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                {"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}},
            ),
            secret(
                "kubernetes.io/dockercfg", ".dockercfg", {"https://r.example/v1/": {"auth": auth}}
            ),
            {"type": "Opaque", "data": {"x": ""}},
        ]
    )
    assert config == {"auths": {"127.0.0.1:5000": {"auth": auth}, "r.example": {"auth": auth}}}
    assert registry_of("127.0.0.1:5000/kubetrade/kubetrade@sha256:ab") == "127.0.0.1:5000"
    assert registry_of("localhost/kubetrade:dev") == "localhost"
    assert registry_of("kubetrade/kubetrade:0.1.0") == "docker.io"
    assert (
        image_id("r.example/a/b:1", {"Digest": "sha256:cd", "Id": "x"}) == "r.example/a/b@sha256:cd"
    )


def test_security_context_becomes_podman_options() -> None:
    pod = {"securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 2000}}
    container = {
        "securityContext": {
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    }
    assert security_options(pod, container, "0") == [
        "--user=65532:65532",
        "--group-add=2000",
        "--read-only",
        "--read-only-tmpfs=false",
        "--security-opt=no-new-privileges",
        "--cap-drop=ALL",
    ]
    # runAsNonRoot is checked against the image's user when the pod names none.
    assert security_options({"securityContext": {"runAsNonRoot": True}}, {}, "65532:65532") == []
    for user, refusal in (("0", "will run as root"), ("app", "non-numeric user")):
        with pytest.raises(PodSetupError, match=refusal) as refused:
            security_options({"securityContext": {"runAsNonRoot": True}}, {}, user)
        assert refused.value.reason == "CreateContainerConfigError"


def test_resources_and_quantities() -> None:
    assert quantity("512Mi") == 512 * 2**20
    assert quantity("100m") == Decimal("0.1")
    assert quantity("1.5") == Decimal("1.5")
    assert quantity(2) == 2
    with pytest.raises(PodSetupError):
        quantity("lots")
    limits = {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi", "cpu": "2"}}}
    assert resource_options(limits) == ["--memory=1073741824", "--cpus=2", "--cpu-shares=102"]


def test_run_arguments_name_everything_explicitly() -> None:
    arguments = run_arguments(
        name="k8s_c_p_ns_1234_0",
        labels={"io.kubernetes.pod.name": "p"},
        hostname="p",
        image="127.0.0.1:5000/k/k@sha256:ab",
        argv=["kubetrade", "run", "/etc/s.yaml"],
        env={"A": "x=y"},
        mounts=[Mount(Path("/pods/v"), "/etc/config", True), Mount(Path("/pods/e"), "/tmp", False)],
        options=["--read-only"],
        workdir=None,
        hosts={"kubetrade-metrics.kubetrade-system.svc": "127.31.0.2"},
    )
    assert arguments[:2] == ["run", "--name=k8s_c_p_ns_1234_0"]
    assert "--add-host=kubetrade-metrics.kubetrade-system.svc:127.31.0.2" in arguments
    assert "--network=host" in arguments and "--pull=never" in arguments
    assert "--http-proxy=false" in arguments  # never the agent's proxy settings
    assert arguments[arguments.index("--env") + 1] == "A=x=y"
    assert "--mount=type=bind,source=/pods/v,destination=/etc/config,ro=true" in arguments
    assert "--mount=type=bind,source=/pods/e,destination=/tmp" in arguments
    assert arguments[-2:] == [
        '--entrypoint=["kubetrade", "run", "/etc/s.yaml"]',
        "127.0.0.1:5000/k/k@sha256:ab",
    ]
    with pytest.raises(PodSetupError, match="no command"):
        run_arguments(
            name="n", labels={}, hostname="h", image="i", argv=[], env={}, mounts=[],
            options=[], workdir=None,
        )  # fmt: skip
