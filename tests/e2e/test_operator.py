"""The operator against a real kube-apiserver: CRD, RBAC, runner pods, status, deletion.

The CRD (crds/) and the operator's RBAC (deploy/rbac.yaml) are applied with the machine's
kubectl; the operator runs as `kubetrade operator` in a process of its own, authenticated
as its ServiceAccount by a bound token, so it can do only what deploy/rbac.yaml grants.
The node agent runs its runner pods as local `kubetrade run` processes. Sessions use the
real SMA strategy, xz-compressed into a ConfigMap, on synthetic bars.
"""

from __future__ import annotations

import json
import lzma
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SMA_WASM

from kubetrade.runner.app.session_file import SessionError, validate_document

from .cluster import Cluster, NodeAgent
from .operator_process import (
    DEPLOYMENT,
    EXAMPLE,
    OPERATOR_USER,
    Operator,
    condition,
    eventually,
    patch,
    session_events,
)
from .watching import recording

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]

RUNNER = "sma-runner"
SECRET_MARKER = "not-a-real-key-7f3a9c"  # a credential value that must never leak


@pytest.fixture(scope="module")
def sma_xz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SMA strategy compressed as `xz -9e` does: small enough for a ConfigMap."""
    path = tmp_path_factory.mktemp("strategy") / "sma.wasm.xz"
    path.write_bytes(lzma.compress(SMA_WASM.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    assert path.stat().st_size < 1024 * 1024
    return path


# --- helpers --------------------------------------------------------------------------------


def session_yaml(name: str) -> str:
    return textwrap.dedent(f"""
        apiVersion: kubetrade.io/v1alpha1
        kind: LiveTradingSession
        metadata: {{name: {name}}}
        spec:
          symbols: [BTCUSDT]
          interval: 1m
          strategy:
            configMapRef: {{name: sma-strategy, key: strategy.wasm.xz}}
            config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}
          marketData:
            provider: synthetic
            config: {{seed: 7, speed: 600}}   # ten 1m bars a second: running, not racing
          trading:
            provider: paper
            config: {{initialCash: 10000}}
        """)


def runner_pod(cluster: Cluster, namespace: str) -> Obj | None:
    return cluster.get("pod", RUNNER, namespace=namespace)


# --- the tests ------------------------------------------------------------------------------


def test_a_session_runs_follows_edits_restarts_suspends_and_goes(
    cluster: Cluster, node_agent: NodeAgent, operator: Operator, namespace: str, sma_xz: Path
) -> None:
    ns = ["-n", namespace]
    cluster.kubectl(
        "create", "configmap", "sma-strategy", f"--from-file=strategy.wasm.xz={sma_xz}", *ns
    )
    cluster.kubectl(
        "create", "secret", "generic", "paper-keys", f"--from-literal=api_key={SECRET_MARKER}", *ns
    )
    # The paper broker needs no keys; they are mounted all the same.
    document = session_yaml("sma").replace(
        "    provider: paper\n",
        "    provider: paper\n    credentialsSecretRef: {name: paper-keys}\n",
    )

    with recording(cluster, namespace) as seen:
        cluster.apply(document, namespace=namespace)

        def running_with_bars() -> Obj | None:
            session = cluster.get("lts", "sma", namespace=namespace)
            status = (session or {}).get("status") or {}
            bars = (status.get("summary") or {}).get("bars", 0)
            return session if status.get("phase") == "Running" and bars > 0 else None

        session = eventually(operator, "the session to run with bars > 0", running_with_bars, 240)
        generation = session["metadata"]["generation"]
        status = session["status"]
        assert status["observedGeneration"] == generation
        assert status["runnerPod"] == RUNNER
        assert status["strategy"] == "sma-strategy/strategy.wasm.xz"
        assert condition(session, "Ready")["status"] == "True"
        assert condition(session, "Ready")["observedGeneration"] == generation
        assert condition(session, "Stalled")["status"] == "False"
        assert status["summary"]["equity"] > 0
        table = cluster.kubectl("get", "lts", *ns).stdout
        assert "Running" in table and "paper" in table and "sma-strategy/strategy.wasm.xz" in table
        assert "BARS" in cluster.kubectl("get", "lts", "-o", "wide", *ns).stdout

        pod = runner_pod(cluster, namespace)
        assert pod is not None
        assert pod["metadata"]["ownerReferences"][0]["uid"] == session["metadata"]["uid"]
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        session_file = cluster.get("configmap", "sma-runner-config", namespace=namespace)
        assert session_file is not None
        loaded = validate_document(
            yaml.safe_load(session_file["data"]["session.yaml"]), source="cm"
        )
        assert loaded.spec.strategy.path == "../strategy/strategy.wasm.xz"
        for text in (json.dumps(pod), json.dumps(session_file), json.dumps(session)):
            assert SECRET_MARKER not in text
        first = pod["metadata"]["uid"]
        # The Secret reached the runner as a read-only file, not through anything we wrote.
        root = node_agent.work_dir / "pods" / f"{namespace}_{RUNNER}_{first[:8]}"
        key_file = root / "containers" / "runner" / "etc" / "kubetrade" / "credentials" / "api_key"
        assert key_file.read_text() == SECRET_MARKER

        # An edit of the strategy's parameters replaces the runner.
        patch(cluster, namespace, "sma", {"strategy": {"config": {"fastPeriod": 3}}})

        def running_again(previous: set[str]) -> Callable[[], str | None]:
            def probe() -> str | None:
                session = cluster.get("lts", "sma", namespace=namespace) or {}
                status = session.get("status") or {}
                current = status.get("observedGeneration") == session["metadata"]["generation"]
                pod = runner_pod(cluster, namespace)
                if not (current and status.get("phase") == "Running" and pod):
                    return None
                uid = str(pod["metadata"]["uid"])
                return uid if uid not in previous else None

            return probe

        second = eventually(operator, "a new runner after the edit", running_again({first}), 180)
        session_file = cluster.get("configmap", "sma-runner-config", namespace=namespace)
        assert session_file is not None
        assert "fastPeriod: 3" in session_file["data"]["session.yaml"]

        # A deleted runner pod is recreated.
        cluster.kubectl("delete", "pod", RUNNER, *ns, "--wait=false")
        third = eventually(
            operator, "a new runner after its pod was deleted", running_again({first, second}), 180
        )

        # suspend stops the runner and keeps the session; resuming starts one again.
        patch(cluster, namespace, "sma", {"suspend": True})

        def suspended() -> Obj | None:
            session = cluster.get("lts", "sma", namespace=namespace) or {}
            phase = (session.get("status") or {}).get("phase")
            return (
                session if phase == "Suspended" and runner_pod(cluster, namespace) is None else None
            )

        session = eventually(operator, "the session to be suspended", suspended, 120)
        assert condition(session, "Suspended")["status"] == "True"
        # Suspended as asked: settled, so kstatus-aware tools (Flux) see it as Current.
        assert condition(session, "Ready")["status"] == "True"
        patch(cluster, namespace, "sma", {"suspend": False})
        fourth = eventually(
            operator, "a runner after resuming", running_again({first, second, third}), 180
        )

        # A new restartNonce restarts the runner.
        patch(cluster, namespace, "sma", {"restartNonce": "after-resume"})
        fifth = eventually(
            operator,
            "a runner after the restartNonce changed",
            running_again({first, second, third, fourth}),
            180,
        )

        reasons = {e["reason"] for e in session_events(cluster, namespace, "sma")}
        assert {"CreatingRunner", "StoppingRunner", "RunnerReady"} <= reasons, reasons

        # Deleting the session stops the runner before the session (and its finalizer) goes.
        cluster.kubectl("delete", "lts", "sma", *ns, "--wait=false")
        eventually(
            operator,
            "the session to be gone",
            lambda: cluster.get("lts", "sma", namespace=namespace) is None,
            180,
        )
        assert runner_pod(cluster, namespace) is None
        assert cluster.get("configmap", "sma-runner-config", namespace=namespace) is None
        assert (
            cluster.get("configmap", "sma-strategy", namespace=namespace) is not None
        )  # the user's

    # Never two runner pods at once, over five runners.
    assert seen.pod_uids() == [first, second, third, fourth, fifth]
    assert seen.most_runner_pods_at_once() == 1
    # The last runner was stopped by SIGTERM and exited cleanly.
    assert seen.last_container_state(fifth)["terminated"]["exitCode"] == 0
    # The session waited for it: its last appearance still carried a deletion timestamp,
    # it said Stopping meanwhile, and it went after the pod did.
    sessions = seen.of("session")
    assert sessions[-1].kind == "DELETED"
    stopping = [
        e for e in sessions if e.obj["metadata"].get("deletionTimestamp") and e.kind == "MODIFIED"
    ]
    assert any((e.obj.get("status") or {}).get("phase") == "Stopping" for e in stopping)
    pod_gone = max(e.at for e in seen.of("pod") if e.kind == "DELETED")
    assert pod_gone <= sessions[-1].at
    log = operator.log()
    assert SECRET_MARKER not in log
    # Its identity has every right it needs: no request was forbidden. (An Event refused
    # because another test's namespace is being deleted is the namespace's doing, not RBAC.)
    refused = [
        line
        for line in log.splitlines()
        if ("Forbidden" in line or " 403" in line) and "is being terminated" not in line
    ]
    assert refused == [], operator.tail()


def test_a_crash_looping_runner_degrades_the_session_with_its_reason(
    cluster: Cluster, node_agent: NodeAgent, operator: Operator, namespace: str
) -> None:
    ns = ["-n", namespace]
    garbage = Path(cluster.dir / f"{namespace}-garbage.wasm")
    garbage.write_bytes(b"this is not a strategy\n")
    cluster.kubectl(
        "create", "configmap", "sma-strategy", f"--from-file=strategy.wasm.xz={garbage}", *ns
    )
    cluster.apply(session_yaml("broken"), namespace=namespace)

    def degraded() -> Obj | None:
        session = cluster.get("lts", "broken", namespace=namespace) or {}
        status = session.get("status") or {}
        return session if status.get("reason") == "CrashLoopBackOff" else None

    session = eventually(operator, "the session to report the crash loop", degraded, 120)
    assert session["status"]["phase"] == "Degraded"
    stalled = condition(session, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "CrashLoopBackOff")
    assert "not a WebAssembly module" in session["status"]["message"]
    warnings = [e for e in session_events(cluster, namespace, "broken") if e["type"] == "Warning"]
    assert any(e["reason"] == "CrashLoopBackOff" for e in warnings), warnings

    cluster.kubectl("delete", "lts", "broken", *ns, "--wait=false")
    eventually(
        operator,
        "the crash-looping session to be gone",
        lambda: cluster.get("lts", "broken", namespace=namespace) is None,
        120,
    )
    assert cluster.get("pod", "broken-runner", namespace=namespace) is None


def test_a_session_the_runner_would_refuse_fails_without_a_pod(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    # CEL cannot see inside free-form configs; the operator runs the runner's own checks.
    leaky = session_yaml("leaky").replace(
        "config: {initialCash: 10000}", f"config: {{initialCash: 10000, apiKey: {SECRET_MARKER}}}"
    )
    cluster.apply(leaky, namespace=namespace)

    def failed(name: str) -> Callable[[], Obj | None]:
        def probe() -> Obj | None:
            session = cluster.get("lts", name, namespace=namespace) or {}
            return session if (session.get("status") or {}).get("phase") == "Failed" else None

        return probe

    session = eventually(operator, "the leaky session to fail", failed("leaky"), 60)
    assert session["status"]["reason"] == "InvalidSpec"
    assert "spec.trading.config.apiKey" in session["status"]["message"]
    assert SECRET_MARKER not in json.dumps(session["status"])
    valid = condition(session, "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert condition(session, "Stalled")["status"] == "True"
    pods = cluster.get("pods", namespace=namespace) or {"items": []}
    assert pods["items"] == []


INVALID = {
    "a live provider without confirmLive": (
        "trading: {provider: binance-live}",
        "provider 'binance-live' trades real money; set spec.trading.confirmLive: true to confirm",
    ),
    "ccxt off its sandbox without confirmLive": (
        "trading: {provider: ccxt, config: {exchange: binance, sandbox: false}}",
        "provider 'ccxt' with config.sandbox: false trades real money",
    ),
    "no strategy source": (
        "strategy: {config: {}}",
        "set exactly one of spec.strategy.path (local runs), configMapRef or oci",
    ),
    "two strategy sources": (
        "strategy: {path: /opt/sma.wasm, configMapRef: {name: sma-strategy}}",
        "set exactly one of spec.strategy.path (local runs), configMapRef or oci",
    ),
    "no symbols": ("symbols: []", "list at least one symbol to trade"),
    "a replay file of unknown format": (
        "marketData: {provider: replay, config: {path: bars.txt}}",
        "cannot tell the format of 'bars.txt' from its extension",
    ),
    "a warm-up longer than the cache": (
        "engine: {warmupBars: 50, marketDataCacheSize: 10}",
        "warmupBars exceeds marketDataCacheSize",
    ),
    "a call timeout beyond an hour": (
        "engine: {strategyCallTimeoutSeconds: 100000}",
        "less than or equal to 3600",
    ),
    "a memory cap beyond 64 GiB": (
        "engine: {strategyMemoryLimitMiB: 17592186044416}",
        "less than or equal to 65536",
    ),
    "backoff limits the wrong way round": (
        "marketData: {provider: binance, config: {initialBackoff: 5, maxBackoff: 2}}",
        "maxBackoff is below initialBackoff",
    ),
}


def _with(override: str) -> str:
    """A valid session with one top-level spec key replaced."""
    base: Obj = yaml.safe_load(session_yaml("invalid"))
    base["spec"].update(yaml.safe_load(override))
    return json.dumps(base)


def test_invalid_sessions_are_refused_by_the_api_server_with_the_cel_message(
    cluster: Cluster, crd: None, namespace: str
) -> None:
    for case, (override, message) in INVALID.items():
        document = _with(override)
        # The runner refuses it as well: the CEL rule mirrors the spec's own.
        with pytest.raises(SessionError):
            validate_document(json.loads(document), source=case)
        result = cluster.kubectl("apply", "-f", "-", "-n", namespace, input=document, check=False)
        assert result.returncode != 0, f"{case}: accepted"
        assert message in result.stderr, f"{case}: {result.stderr}"
        assert cluster.get("lts", "invalid", namespace=namespace) is None
    # A live provider with confirmLive: true is accepted: the rule is about the confirmation.
    confirmed = _with("trading: {provider: binance-live, confirmLive: true}")
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", "-n", namespace, input=confirmed)


def test_the_operator_identity_has_only_what_rbac_grants(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    def can(*args: str) -> bool:
        result = cluster.kubectl("auth", "can-i", *args, f"--as={OPERATOR_USER}", check=False)
        return result.stdout.strip() == "yes"

    assert can("create", "pods", "-n", namespace)
    assert can("patch", "livetradingsessions.kubetrade.io/status", "-n", namespace)
    # A pull Secret by its name (to resolve a session's tag), never a listing of them.
    assert can("get", "secrets", "-n", namespace)
    assert not can("list", "secrets", "-n", namespace)
    assert not can("watch", "secrets", "-n", namespace)
    # The session's claim: made and owned; deleted by the garbage collector, not by us.
    assert can("create", "persistentvolumeclaims", "-n", namespace)
    assert not can("delete", "persistentvolumeclaims", "-n", namespace)
    assert not can("patch", "pods", "-n", namespace)
    assert not can("list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can("list", "namespaces")
    # The manifests for a real cluster are ones the API server accepts.
    cluster.kubectl("apply", "--dry-run=server", "-f", DEPLOYMENT)
    cluster.kubectl("apply", "--dry-run=server", "-f", EXAMPLE, "-n", namespace)


def test_a_session_whose_data_ends_completes_and_is_not_restarted(
    cluster: Cluster, node_agent: NodeAgent, operator: Operator, namespace: str, sma_xz: Path
) -> None:
    ns = ["-n", namespace]
    cluster.kubectl(
        "create", "configmap", "sma-strategy", f"--from-file=strategy.wasm.xz={sma_xz}", *ns
    )
    finite = session_yaml("finite").replace("{seed: 7, speed: 600}", "{seed: 7, bars: 60}")
    cluster.apply(finite, namespace=namespace)

    def completed() -> Obj | None:
        session = cluster.get("lts", "finite", namespace=namespace) or {}
        return session if (session.get("status") or {}).get("phase") == "Completed" else None

    session = eventually(operator, "the finite session to complete", completed, 120)
    assert session["status"]["reason"] == "RunnerCompleted"
    assert condition(session, "Stalled")["status"] == "False"
    pod = cluster.get("pod", "finite-runner", namespace=namespace)
    assert pod is not None and pod["status"]["phase"] == "Succeeded"
    uid = pod["metadata"]["uid"]
    time.sleep(6)  # a resync or two later, the finished runner is still the one pod
    again = cluster.get("pod", "finite-runner", namespace=namespace)
    assert again is not None and again["metadata"]["uid"] == uid
    assert (cluster.get("lts", "finite", namespace=namespace) or {})["status"]["phase"] == (
        "Completed"
    )
