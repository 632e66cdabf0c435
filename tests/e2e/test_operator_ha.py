"""Two operators and one Lease (issue 20): the leader is paused, then killed, while
sessions run.

A control plane of its own, with an audit log of every request the operator's identity
makes (the ground truth for "never a write from a stale leader": each candidate's requests
carry its identity in their User-Agent). Two `kubetrade operator --leader-elect` processes
with short lease timings (6 s lease, 4 s renew deadline, 1 s retry) serve three sessions
whose runners are real `kubetrade run` processes on the node agent.

1. The first operator leads; the second waits as a standby and writes nothing.
2. The leader is paused (SIGSTOP): the standby takes the Lease within the lease duration
   plus a retry and reconciles. The paused one is resumed (SIGCONT): its fence is closed,
   it writes nothing more (only its renewal, refused by the Lease's resourceVersion) and
   exits 1, saying so.
3. A third operator joins as a standby; the leader is killed (SIGKILL): the standby takes
   over within the bound, measured from the kill, and never before a whole lease duration
   has passed since the last renewal. Then it is stopped (SIGTERM): it releases the Lease
   as its last write.
Throughout, each session has had one runner pod at a time, the same three pods from
start to end, and every runner's bars went on increasing: runners never wait for the
operator.
"""

from __future__ import annotations

import json
import lzma
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import SMA_WASM

from .cluster import STORAGE_CLUSTER, Cluster, HarnessError, start_cluster, wait_until
from .operator_process import (
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    Operator,
    apply_crd,
    operator_kubeconfig,
    start_operator,
)
from .test_operator import session_yaml
from .watching import recording

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]

LEASE = "kubetrade-operator"
LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS = 6, 4, 1
SESSIONS = ("alpha", "beta", "gamma")
WRITES = frozenset({"create", "update", "patch", "delete"})
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


@dataclass
class Audited:
    cluster: Cluster
    audit_log: Path

    def requests(self) -> list[Obj]:
        lines = self.audit_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """A control plane of its own, auditing the operator's requests, with a node agent."""
    work = tmp_path_factory.mktemp("audit")
    policy = work / "policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY))
    audit_log = work / "audit.log"
    args = [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit_log}",
        "--audit-log-maxsize=1000000",  # megabytes: never rotated (100 by default)
    ]
    try:
        cluster = start_cluster(controllers=STORAGE_CLUSTER, extra_apiserver_args=args)
    except (HarnessError, TimeoutError) as exc:
        pytest.fail(f"cannot start the e2e cluster: {exc}", pytrace=False)
    try:
        cluster.start_node_agent()
        apply_crd(cluster)
        yield Audited(cluster, audit_log)
    finally:
        cluster.stop()


def candidate(audited: Audited, identity: str, kubeconfig: Path) -> Operator:
    return start_operator(
        audited.cluster,
        args=[
            "--leader-elect",
            f"--leader-election-namespace={OPERATOR_NAMESPACE}",
            f"--leader-election-identity={identity}",
            f"--lease-seconds={LEASE_SECONDS}",
            f"--renew-seconds={RENEW_SECONDS}",
            f"--retry-seconds={RETRY_SECONDS}",
            "--resync-seconds=5",
            "--summary-seconds=3",  # status writes every few seconds: a stale one would show
        ],
        log_name=f"operator-{identity}.log",
        kubeconfig=kubeconfig,
    )


def lease(cluster: Cluster) -> Obj:
    found = cluster.get("lease", LEASE, namespace=OPERATOR_NAMESPACE)
    return (found or {}).get("spec") or {}


def held_by(cluster: Cluster, identity: str) -> Obj | None:
    spec = lease(cluster)
    return spec if spec.get("holderIdentity") == identity else None


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def writes_by(audited: Audited, identity: str) -> list[Obj]:
    """The write requests of one candidate, as the API server received them."""
    return [
        r for r in audited.requests() if identity in r.get("userAgent", "") and r["verb"] in WRITES
    ]


def last_renewal(audited: Audited, identity: str, before: float) -> float:
    """When the API server last stored `identity`'s write of the Lease before `before`."""
    return max(
        stamp(r["stageTimestamp"])
        for r in writes_by(audited, identity)
        if r["objectRef"]["resource"] == "leases"
        and r["responseStatus"]["code"] < 300
        and stamp(r["stageTimestamp"]) < before
    )


def runner_bars(pod: Obj) -> int:
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:9102/status", timeout=10) as r:
        return int(json.load(r)["bars"])


def runners(cluster: Cluster, namespace: str) -> dict[str, Obj]:
    pods = (cluster.get("pods", namespace=namespace) or {}).get("items") or []
    return {p["metadata"]["labels"]["kubetrade.io/session"]: p for p in pods}


def test_a_paused_leader_writes_nothing_after_the_standby_took_over_and_a_killed_one_is_replaced(
    audited: Audited, tmp_path: Path
) -> None:
    cluster = audited.cluster
    namespace = "fleet"
    cluster.create_namespace(namespace)
    sma_xz = tmp_path / "sma.wasm.xz"
    sma_xz.write_bytes(lzma.compress(SMA_WASM.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    cluster.kubectl(
        "create", "configmap", "sma-strategy", f"--from-file=strategy.wasm.xz={sma_xz}",
        "-n", namespace,
    )  # fmt: skip
    kubeconfig = operator_kubeconfig(cluster)
    first = candidate(audited, "op-a", kubeconfig)
    operators = [first]
    try:
        wait_until("op-a to hold the Lease", lambda: held_by(cluster, "op-a"), timeout=30)
        second = candidate(audited, "op-b", kubeconfig)
        operators.append(second)
        with recording(cluster, namespace) as seen:
            for name in SESSIONS:
                cluster.apply(session_yaml(name), namespace=namespace)

            def all_running() -> dict[str, Obj] | None:
                pods = runners(cluster, namespace)
                up = {s: p for s, p in pods.items() if (p.get("status") or {}).get("podIP")}
                if len(up) < len(SESSIONS):
                    return None
                try:
                    return up if all(runner_bars(p) > 0 for p in up.values()) else None
                except OSError:
                    return None

            before = wait_until("three runners with bars", all_running, timeout=120, every=0.5)
            uids = {s: p["metadata"]["uid"] for s, p in before.items()}
            bars = {s: runner_bars(p) for s, p in before.items()}
            # The standby has written nothing: only the leader reconciles.
            standby = writes_by(audited, "op-b")
            assert [r for r in standby if r["objectRef"]["resource"] != "leases"] == []
            assert writes_by(audited, "op-a"), "the leader wrote nothing"

            # --- pause the leader --------------------------------------------------------
            paused_at = time.time()
            os.kill(first.process.pid, signal.SIGSTOP)
            taken = wait_until(
                "op-b to take the Lease", lambda: held_by(cluster, "op-b"), timeout=30, every=0.2
            )
            takeover = stamp(taken["acquireTime"])
            paused_takeover_s = takeover - paused_at
            assert paused_takeover_s <= LEASE_SECONDS + RETRY_SECONDS + 2, paused_takeover_s
            # Never early: a whole lease duration after the last renewal it could have seen.
            unrenewed_s = takeover - last_renewal(audited, "op-a", takeover)
            assert unrenewed_s >= LEASE_SECONDS - 0.5, unrenewed_s

            def b_writes_status() -> bool:
                return any(
                    r["objectRef"].get("subresource") == "status"
                    and stamp(r["stageTimestamp"]) > takeover
                    for r in writes_by(audited, "op-b")
                )

            wait_until("the new leader to write a status", b_writes_status, timeout=30)
            time.sleep(2)  # the new leader at work while the old one is still paused
            os.kill(first.process.pid, signal.SIGCONT)
            code = first.process.wait(30)
            assert code == 1, first.tail()
            assert "leadership lost" in first.log(), first.tail()
            stale = [
                r
                for r in writes_by(audited, "op-a")
                if stamp(r["requestReceivedTimestamp"]) >= takeover
            ]
            # Its one attempt to renew, refused: nothing else.
            assert all(
                r["objectRef"]["resource"] == "leases" and r["responseStatus"]["code"] == 409
                for r in stale
            ), json.dumps(stale, indent=1)[:3000]

            # --- kill the leader ---------------------------------------------------------
            third = candidate(audited, "op-c", kubeconfig)
            operators.append(third)
            time.sleep(2 * RETRY_SECONDS)  # a standby that has looked at the Lease
            killed_at = time.time()
            os.kill(second.process.pid, signal.SIGKILL)
            second.process.wait(10)
            taken = wait_until(
                "op-c to take the Lease", lambda: held_by(cluster, "op-c"), timeout=30, every=0.2
            )
            killed_takeover_s = stamp(taken["acquireTime"]) - killed_at
            assert killed_takeover_s <= LEASE_SECONDS + RETRY_SECONDS + 2, killed_takeover_s
            second_taken = stamp(taken["acquireTime"])
            unrenewed_s = second_taken - last_renewal(audited, "op-b", second_taken)
            assert unrenewed_s >= LEASE_SECONDS - 0.5, unrenewed_s

            def c_writes() -> float | None:
                times = [stamp(r["stageTimestamp"]) for r in writes_by(audited, "op-c")
                         if r["objectRef"]["resource"] != "leases"]  # fmt: skip
                return min(times) if times else None

            first_write = wait_until("the third leader to write", c_writes, timeout=30)
            print(
                f"\ntakeover after a pause: {paused_takeover_s:.1f} s; after kill -9:"
                f" {killed_takeover_s:.1f} s (first write {first_write - killed_at:.1f} s)"
            )

            # The runners never noticed.
            after = runners(cluster, namespace)
            assert {s: p["metadata"]["uid"] for s, p in after.items()} == uids
            for name, pod in after.items():
                assert runner_bars(pod) > bars[name], name

            # --- stop the leader cleanly -------------------------------------------------
            third.stop()
            assert third.process.returncode == 0, third.tail()
            assert not lease(cluster).get("holderIdentity")  # handed over at once
            last = max(writes_by(audited, "op-c"), key=lambda r: stamp(r["stageTimestamp"]))
            # Its last write is the release: nothing of its passes (Events included) after.
            assert last["objectRef"]["resource"] == "leases", last
        assert set(seen.most_runner_pods_per_session().values()) == {1}
        assert set(seen.pod_uids()) == set(uids.values())
    finally:
        for operator in operators:
            if operator.process.poll() is None:
                os.kill(operator.process.pid, signal.SIGCONT)
                operator.stop()
