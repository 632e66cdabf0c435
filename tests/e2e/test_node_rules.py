"""The node agent's rules for turning a container into a process, which runner pods must fit:
paths under mounts move under the container's root, `kubetrade` is this virtualenv's, and
the runner's HTTP port becomes a host port. Pure functions; no cluster needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .node_files import container_argv, expand, path_rewriter, served_port

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
