"""The API server's CEL gives every route to real money the runner's verdict.

The same table as tests/integration/test_live_routes.py: each route is applied
(server-side dry run) without and with `confirmLive: true`, and the API server
must accept or refuse it exactly as `kubetrade run` does. Routes CEL cannot see
(inside ccxt's free-form options) are accepted by the API server and refused by
the runner's own validation, which the operator runs before it creates a pod.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from live_routes import CONFIRM_SPELLINGS, ROUTES, confirmed, document

from kubetrade.runner.app.session_file import SessionError, validate_document

from .cluster import ROOT, Cluster

pytestmark = pytest.mark.e2e

CRD = ROOT / "crds" / "livetradingsessions.kubetrade.io.yaml"


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    cluster.apply(CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/livetradingsessions.kubetrade.io",
        "--timeout=60s",
    )  # fmt: skip


def _api_server_accepts(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> tuple[bool, str]:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
    )
    return result.returncode == 0, result.stderr


def _runner_accepts(doc: dict[str, Any]) -> bool:
    try:
        validate_document(doc, source="route")
    except SessionError:
        return False
    return True


def test_every_route_gets_the_runners_verdict_from_the_api_server(
    cluster: Cluster, crd: None, namespace: str
) -> None:
    disagreements = []
    for route in ROUTES:
        for confirm in (False, True):
            doc = document(confirmed(route.trading) if confirm else route.trading)
            runner = _runner_accepts(doc)
            api, stderr = _api_server_accepts(cluster, namespace, doc)
            expected = route.verdict == "paper" or (route.verdict == "live" and confirm)
            assert runner is expected, f"{route.id} (confirmLive {confirm}): runner {runner}"
            # Where CEL cannot see, only the runner can tell; the API server must not refuse
            # what is fine.
            api_expected = expected if route.cel_sees else route.verdict != "invalid"
            if api is not api_expected:
                disagreements.append(f"{route.id} (confirmLive {confirm}): {stderr.strip()}")
            if not api and route.verdict == "live":
                assert "confirmLive" in stderr and "real money" in stderr, stderr
    assert disagreements == []


@pytest.mark.parametrize("spelling", CONFIRM_SPELLINGS, ids=repr)
def test_the_api_server_takes_only_a_real_true_as_confirmation(
    cluster: Cluster, crd: None, namespace: str, spelling: object
) -> None:
    doc = document(confirmed({"provider": "binance-live"}, spelling))
    accepted, stderr = _api_server_accepts(cluster, namespace, doc)
    assert not accepted, f"confirmLive: {spelling!r} was taken as confirmation"
    assert "confirmLive" in stderr
