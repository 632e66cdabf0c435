"""Fixtures for tests against a real kube-apiserver: `cluster`, `node_agent`, `namespace`,
`crd` and `operator` (operator_process.py), and for tests with real containers: `registry`,
`pushed_image`, `workload_cluster`, `container_agent`.

One control plane and one node agent serve the whole session (started on first use, so a
run without e2e tests builds nothing). Each test gets a fresh namespace. Tests that run
pods as containers get a second control plane (with the Deployment and ReplicaSet
controllers) whose node agent runs them with podman, pulling from the session's registry.
When an e2e test fails, the tails of the control planes' and the agents' logs are
attached to its report.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Generator, Iterator

import pytest

from .cluster import (
    STORAGE_CLUSTER,
    WORKLOAD_CONTROLLERS,
    Cluster,
    HarnessError,
    NodeAgent,
    start_cluster,
)
from .image import ImageBuildError, build_image
from .operator_process import crd as crd  # the fixtures: the CRD applied, and the
from .operator_process import operator as operator  # operator, one per test module
from .registry import Registry, RegistryError
from .registry import registry as registry  # the fixture, for every e2e test

IMAGE_REPOSITORY = "kubetrade/kubetrade"

_clusters: list[Cluster] = []


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A running control plane (etcd, kube-apiserver, controller manager with the storage
    controllers: claims bind to volumes the node agent provisions); admin kubeconfig."""
    try:
        started = start_cluster(controllers=STORAGE_CLUSTER)
    except (HarnessError, TimeoutError) as exc:
        # Never a skip: a machine that cannot run these tests must say so loudly.
        pytest.fail(f"cannot start the e2e cluster: {exc}", pytrace=False)
    seconds = started.startup_seconds
    print(
        f"\nkubetrade e2e: kube-apiserver at {started.url} ready in {seconds:.1f} s",
        file=sys.stderr,
    )
    _clusters.append(started)
    try:
        yield started
    finally:
        _clusters.remove(started)
        started.stop()


@pytest.fixture(scope="session")
def workload_cluster() -> Iterator[Cluster]:
    """A control plane of its own that also runs the Deployment and ReplicaSet controllers."""
    try:
        started = start_cluster(controllers=WORKLOAD_CONTROLLERS)
    except (HarnessError, TimeoutError) as exc:
        pytest.fail(f"cannot start the e2e cluster: {exc}", pytrace=False)
    _clusters.append(started)
    try:
        yield started
    finally:
        _clusters.remove(started)
        started.stop()


@pytest.fixture(scope="session")
def container_agent(workload_cluster: Cluster, registry: Registry) -> NodeAgent:
    """workload_cluster's node agent, running pods as podman containers of their images and
    pulling from `registry` over plain HTTP. Short back-offs: tests wait for restarts."""
    try:
        return workload_cluster.start_node_agent(
            runtime="podman",
            insecure_registries=[registry.host],
            backoff_base=2,
            backoff_max=20,
        )
    except (HarnessError, TimeoutError) as exc:
        pytest.fail(
            f"cannot start the podman node agent: {exc}\n{workload_cluster.logs()}", pytrace=False
        )


@pytest.fixture(scope="session")
def pushed_image(registry: Registry) -> str:
    """The kubetrade image (scripts/build-image.sh), pushed to `registry`: its reference
    there, pinned by digest."""
    try:
        return registry.push(build_image(), IMAGE_REPOSITORY)
    except (ImageBuildError, RegistryError) as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def node_agent(cluster: Cluster) -> NodeAgent:
    """The node agent as node `kubetrade-node`, Ready, binding and running every pod."""
    try:
        return cluster.start_node_agent()
    except (HarnessError, TimeoutError) as exc:
        pytest.fail(f"cannot start the node agent: {exc}\n{cluster.logs()}", pytrace=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    uses = {"cluster", "workload_cluster"} & set(getattr(item, "fixturenames", ()))
    if report.failed and _clusters and uses:
        for number, running in enumerate(_clusters):
            report.sections.append((f"kubetrade e2e cluster {number} logs", running.logs()))
    return report
