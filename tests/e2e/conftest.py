"""Fixtures for tests against a real kube-apiserver: `cluster`, `node_agent`, `namespace`.

One control plane and one node agent serve the whole session (started on first use, so a
run without e2e tests builds nothing). Each test gets a fresh namespace. When an e2e test
fails, the tails of the control plane's and the agent's logs are attached to its report.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Generator, Iterator

import pytest

from .cluster import Cluster, HarnessError, NodeAgent, start_cluster

_clusters: list[Cluster] = []


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A running control plane (etcd, kube-apiserver, controller manager); admin kubeconfig."""
    try:
        started = start_cluster()
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
    if report.failed and _clusters and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(("kubetrade e2e cluster logs", _clusters[0].logs()))
    return report
