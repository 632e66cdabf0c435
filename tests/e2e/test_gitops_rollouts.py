"""GitOps rollouts against the real API server, a real registry and the node agent (issue 15).

Strategies are pushed to the e2e registry (Debian's docker-registry, htpasswd) with
`kubetrade strategy push`; sessions name them by tag with a pull Secret. The operator runs
as its ServiceAccount with deploy/rbac.yaml (operator_process.py); the node agent runs the
runner pods as processes with the session's claim as their data directory
(node_storage.py provisions it). What each test proves:

- one session YAML with an OCI tag runs with `kubetrade run` and with `kubectl apply`, with
  the same orders on the same replayed bars; in the cluster the tag's digest is in status
  and the runner loads exactly it; a last-state upgrade replaces the pod and the new runner
  resumes the journal (its orders are those of an uninterrupted run, none twice, ids go on
  in a new epoch); a moved tag changes nothing until the spec changes; a stateless upgrade
  starts a fresh journal and account and keeps the old one;
- a new strategy version that traps on every bar is rolled back to the last stable digest,
  and status, conditions and Events tell the story;
- a tag that cannot be resolved (no such tag, login refused, registry unreachable) says
  why and is retried at resync; a tampered blob is refused by the runner.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, SMA_WASM

from .cluster import Cluster, NodeAgent
from .operator_process import Operator, condition, eventually, patch, session_events
from .registry import Registry
from .tiny_strategy import tiny_strategy_wasm
from .watching import recording

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
KUBETRADE = Path(sys.executable).parent / "kubetrade"
BARS = ROOT / "examples" / "data" / "btcusdt_1m_synthetic.csv"


# --- helpers --------------------------------------------------------------------------------


def kubetrade(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(KUBETRADE), *map(str, args)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONSAFEPATH": "1", **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, f"kubetrade {args[0]} failed:\n{done.stderr}"
    return done.stdout


def push(registry: Registry, config: Path, module: Path, reference: str, **flags: str) -> str:
    """`kubetrade strategy push`; the manifest digest."""
    extra = [f"--{k}={v}" for k, v in flags.items()]
    pinned = kubetrade("strategy", "push", module, reference, "--registry-config", config, *extra)
    return pinned.strip().rsplit("@", 1)[1]


def docker_config(registry: Registry, directory: Path) -> Path:
    path = directory / "docker-config.json"
    path.write_text(registry.docker_config())
    return path


def pull_secret(cluster: Cluster, namespace: str, name: str, config: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {".dockerconfigjson": config},
    }
    cluster.apply(json.dumps(secret))


def session_yaml(name: str, reference: str, market: str, **spec: str) -> str:
    extra = "".join(f"\n  {key}: {value}" for key, value in spec.items())
    return (
        textwrap.dedent(f"""\
        apiVersion: kubetrade.io/v1alpha1
        kind: LiveTradingSession
        metadata: {{name: {name}}}
        spec:
          symbols: [BTCUSDT]
          interval: 1m
          strategy:
            oci: {{reference: '{reference}', pullSecretRef: {{name: regcred}}}}
            config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}
          marketData: {market}
          trading:
            provider: paper
            config: {{initialCash: 10000, feeBps: 1}}
          risk: {{maxOrderNotional: 5000, maxOrdersPerMinute: 10}}
          engine: {{warmupBars: 20, marketDataCacheSize: 500}}""")
        + extra
        + "\n"
    )


def lts(cluster: Cluster, namespace: str, name: str) -> Obj:
    return cluster.get("lts", name, namespace=namespace) or {}


def state(obj: Obj) -> Obj:
    found: Obj = obj.get("status") or {}
    return found


def runner_figures(cluster: Cluster, namespace: str, pod_name: str) -> Obj | None:
    """The runner's /status, at its pod IP as anyone in the cluster reads it."""
    pod = cluster.get("pod", pod_name, namespace=namespace) or {}
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    try:
        with urllib.request.urlopen(f"http://{ip}:9102/status", timeout=2) as answer:
            figures: Obj = json.loads(answer.read())
            return figures
    except OSError:
        return None


def volume_dir(cluster: Cluster, namespace: str, claim: str) -> Path:
    """The directory of the claim's volume on the node (node_storage.py made it)."""
    bound = cluster.get("pvc", claim, namespace=namespace)
    assert bound is not None and bound["status"]["phase"] == "Bound", bound
    volume = cluster.get("pv", bound["spec"]["volumeName"])
    assert volume is not None
    return Path(volume["spec"]["hostPath"]["path"])


def orders(state_dir: Path, out: Path) -> list[dict[str, str]]:
    """The orders a journal holds, as `kubetrade report --export` writes them."""
    kubetrade("report", state_dir, "--export", out)
    with (out / "orders.csv").open() as file:
        return list(csv.DictReader(file))


def trades(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    """What an order did, without its id (ids carry the runner's epoch)."""
    keys = ("symbol", "side", "quantity", "price", "time", "status", "average_price")
    return [tuple(row[k] for k in keys) for row in rows]


def epochs(rows: list[dict[str, str]]) -> list[int]:
    return [int(row["client_order_id"].split("-")[1]) for row in rows]


def pod_uid(cluster: Cluster, namespace: str, name: str) -> str | None:
    pod = cluster.get("pod", name, namespace=namespace)
    return None if pod is None else str(pod["metadata"]["uid"])


def phase_is(cluster: Cluster, namespace: str, name: str, *phases: str) -> Callable[[], Obj | None]:
    def probe() -> Obj | None:
        obj = lts(cluster, namespace, name)
        current = state(obj).get("observedGeneration") == obj.get("metadata", {}).get("generation")
        return obj if current and state(obj).get("phase") in phases else None

    return probe


# --- one YAML, both ways; last-state and stateless upgrades ---------------------------------


def test_one_oci_session_yaml_runs_locally_and_in_the_cluster_and_upgrades_keep_its_state(
    cluster: Cluster,
    node_agent: NodeAgent,
    operator: Operator,
    registry: Registry,
    namespace: str,
    tmp_path: Path,
) -> None:
    ns = ["-n", namespace]
    config = docker_config(registry, tmp_path)
    tag = f"{registry.host}/strategies/sma:{namespace}"
    first = push(registry, config, SMA_WASM, tag, revision="one")
    pull_secret(cluster, namespace, "regcred", registry.docker_config())
    bars = tmp_path / "bars.csv"  # 1,200 bars; 100 a second in the cluster
    bars.write_text("".join(BARS.read_text().splitlines(keepends=True)[:1201]))
    document = session_yaml(
        "oci-sma", tag, f"{{provider: replay, config: {{path: {bars}, speed: 6000}}}}"
    )
    (tmp_path / "session.yaml").write_text(document)
    # The very same file with `kubetrade run`, uninterrupted, in the background meanwhile.
    local = subprocess.Popen(
        [str(KUBETRADE), "run", tmp_path / "session.yaml", "--registry-config", config,
         "--state-dir", tmp_path / "local", "--no-http", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1", "KUBETRADE_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip

    cluster.apply(document, namespace=namespace)

    def resolved() -> Obj | None:
        found = lts(cluster, namespace, "oci-sma")
        return found if state(found).get("strategyDigest") else None

    session = eventually(operator, "the digest in status", resolved, 60)
    status = state(session)
    pinned = f"{tag}@{first}"
    assert status["strategyDigest"] == first and status["strategy"] == pinned
    assert status["lastReconciledSpec"]["strategyReference"] == pinned
    assert session["spec"]["strategy"]["oci"]["reference"] == tag  # the spec as written
    pod = eventually(
        operator,
        "the runner pod",
        lambda: cluster.get("pod", "oci-sma-runner", namespace=namespace),
        30,
    )
    runner_file = cluster.get("configmap", "oci-sma-runner-config", namespace=namespace)
    assert runner_file is not None and f"reference: {pinned}" in runner_file["data"]["session.yaml"]
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--registry-config") + 1] == "/etc/kubetrade/registry"
    claim = cluster.get("pvc", "oci-sma-data", namespace=namespace)
    assert claim is not None and claim["metadata"]["ownerReferences"][0]["name"] == "oci-sma"
    # The storage of a made claim is fixed (CEL).
    grow = '{"spec":{"storage":{"size":"2Gi"}}}'
    refused = cluster.kubectl(
        "patch", "lts", "oci-sma", *ns, "--type=merge", "-p", grow, check=False
    )
    assert refused.returncode != 0 and "fixed once the session's claim" in refused.stderr

    # A last-state upgrade in the middle of the replay: a config change the strategy does
    # not feel (so the orders can be compared with the uninterrupted run).
    first_pod = pod["metadata"]["uid"]

    def bars_in(count: int) -> bool | None:
        figures = runner_figures(cluster, namespace, "oci-sma-runner") or {}
        return figures.get("bars", 0) >= count or None

    eventually(operator, "the runner to be 300 bars in", lambda: bars_in(300), 60)
    patch(cluster, namespace, "oci-sma", {"risk": {"maxOrdersPerMinute": 11}})
    completed = phase_is(cluster, namespace, "oci-sma", "Completed")
    session = eventually(operator, "the upgraded session to complete", completed, 120)
    assert pod_uid(cluster, namespace, "oci-sma-runner") not in (None, first_pod)
    assert state(session)["lastStableSpec"]["generation"] == session["metadata"]["generation"]
    volume = volume_dir(cluster, namespace, "oci-sma-data")
    # The runner verified and kept exactly the digest the operator resolved.
    assert (volume / "cache" / "oci" / first.replace(":", "-")).is_file()

    assert local.wait(120) == 0, local.stderr.read() if local.stderr else ""
    alone = orders(tmp_path / "local", tmp_path / "local-export")
    resumed = orders(volume / "state", tmp_path / "cluster-export")
    # Same orders on the same bars, none twice; the ids go on in the new runner's epoch.
    assert len(alone) > 20
    assert trades(resumed) == trades(alone)
    assert len({row["client_order_id"] for row in resumed}) == len(resumed)
    assert set(epochs(alone)) == {1}
    assert epochs(resumed) == sorted(epochs(resumed)) and set(epochs(resumed)) == {1, 2}

    # The tag moves on (the same module, another revision): nothing changes meanwhile.
    second = push(registry, config, SMA_WASM, tag, revision="two")
    assert second != first
    completed_pod = pod_uid(cluster, namespace, "oci-sma-runner")
    time.sleep(6)  # a resync or more
    unmoved = state(lts(cluster, namespace, "oci-sma"))
    assert unmoved["strategyDigest"] == first, unmoved
    assert pod_uid(cluster, namespace, "oci-sma-runner") == completed_pod

    # A stateless upgrade: the spec changes, so the tag is resolved again (to the new
    # digest), and the runner starts a fresh journal and account beside the old one.
    patch(
        cluster,
        namespace,
        "oci-sma",
        {"upgradeMode": "stateless", "risk": {"maxOrdersPerMinute": 12}},
    )

    def fresh_run_completed() -> Obj | None:
        found = phase_is(cluster, namespace, "oci-sma", "Completed")()
        replaced = pod_uid(cluster, namespace, "oci-sma-runner") != completed_pod
        return found if found and replaced else None

    session = eventually(operator, "the stateless upgrade to complete", fresh_run_completed, 120)
    status = state(session)
    assert status["strategyDigest"] == second, status
    fresh_dir = status["lastReconciledSpec"]["stateDir"]
    assert fresh_dir.startswith("state-") and fresh_dir != "state"
    fresh = orders(volume / fresh_dir, tmp_path / "fresh-export")
    # A fresh account, but never an id the old journal used: its epochs go on above the
    # old journal's, so a venue that still holds (or looks up) an old order is not misled.
    assert trades(fresh) == trades(alone) and set(epochs(fresh)) == {max(epochs(resumed)) + 1}
    old_ids = {row["client_order_id"] for row in resumed}
    assert not old_ids & {row["client_order_id"] for row in fresh}
    assert trades(orders(volume / "state", tmp_path / "kept-export")) == trades(resumed)
    reasons = {e["reason"] for e in session_events(cluster, namespace, "oci-sma")}
    assert {"StrategyResolved", "CreatingClaim", "SpecStable", "StatelessUpgrade"} <= reasons


# --- rollback -----------------------------------------------------------------------------


def test_a_version_that_traps_on_every_bar_is_rolled_back_to_the_last_stable_digest(
    cluster: Cluster,
    node_agent: NodeAgent,
    operator: Operator,
    registry: Registry,
    namespace: str,
    tmp_path: Path,
) -> None:
    config = docker_config(registry, tmp_path)
    repository = f"{registry.host}/strategies/rollback-{namespace}"
    stable = push(registry, config, SMA_WASM, f"{repository}:v1")
    trap = tmp_path / "trap.wasm"
    trap.write_bytes(tiny_strategy_wasm("trap", trap_on_bar=True))
    trapping = push(registry, config, trap, f"{repository}:v2")
    pull_secret(cluster, namespace, "regcred", registry.docker_config())
    market = "{provider: synthetic, config: {seed: 7, speed: 600}}"  # ten bars a second
    cluster.apply(session_yaml("roll", f"{repository}:v1", market), namespace=namespace)

    def stable_at(digest: str) -> Callable[[], Obj | None]:
        def probe() -> Obj | None:
            found = state(lts(cluster, namespace, "roll")).get("lastStableSpec") or {}
            return found if found.get("strategyDigest") == digest else None

        return probe

    eventually(operator, "v1 to be stable", stable_at(stable), 90)
    first_pod = pod_uid(cluster, namespace, "roll-runner")
    with recording(cluster, namespace) as seen:
        new = {"strategy": {"oci": {"reference": f"{repository}:v2"}}}
        patch(cluster, namespace, "roll", new)
        rolled_back = phase_is(cluster, namespace, "roll", "RolledBack")
        session = eventually(operator, "the rollback to run the stable spec", rolled_back, 120)
    # v1's runner, v2's, v1's again: one after the other, never two at once.
    assert len(seen.pod_uids()) == 3 and seen.pod_uids()[0] == first_pod
    assert seen.most_runner_pods_at_once() == 1
    status = state(session)
    # The spec is as written; status says what runs instead and why.
    assert session["spec"]["strategy"]["oci"]["reference"] == f"{repository}:v2"
    assert status["strategyDigest"] == stable
    deployed = status["lastReconciledSpec"]
    assert (deployed["strategyDigest"], deployed["state"]) == (trapping, "RolledBack")
    assert deployed["reason"] == "StrategyErrors"
    assert status["lastStableSpec"]["strategyDigest"] == stable
    rolled = condition(session, "RolledBack")
    assert (rolled["status"], rolled["reason"]) == ("True", "StrategyErrors")
    assert trapping in rolled["message"] and stable in rolled["message"]
    assert condition(session, "Stalled")["status"] == "True"  # kstatus: Failed
    assert condition(session, "Reconciling")["status"] == "False"
    assert condition(session, "RunnerReady")["status"] == "True"
    runner_file = cluster.get("configmap", "roll-runner-config", namespace=namespace)
    assert runner_file is not None and stable in runner_file["data"]["session.yaml"]
    assert pod_uid(cluster, namespace, "roll-runner") not in (None, first_pod)
    events = session_events(cluster, namespace, "roll")
    told = [(e["type"], e["reason"]) for e in sorted(events, key=lambda e: e["firstTimestamp"])]
    for expected in (("Normal", "SpecStable"), ("Normal", "StrategyResolved"),
                     ("Warning", "RollingBack"), ("Normal", "StoppingRunner"),
                     ("Warning", "RolledBack")):  # fmt: skip
        assert expected in told, told
    stopping = [e["message"] for e in events if e["reason"] == "StoppingRunner"]
    assert any("the last stable spec runs again" in message for message in stopping), stopping
    table = cluster.kubectl("get", "lts", "roll", "-n", namespace, "-o", "wide").stdout
    assert "RolledBack" in table and stable in table


# --- what cannot be resolved, and what cannot be trusted ---------------------------------------


def test_unresolvable_tags_say_why_and_a_tampered_blob_is_refused(
    cluster: Cluster,
    node_agent: NodeAgent,
    operator: Operator,
    registry: Registry,
    namespace: str,
    tmp_path: Path,
) -> None:
    config = docker_config(registry, tmp_path)
    pull_secret(cluster, namespace, "regcred", registry.docker_config())
    wrong = json.loads(registry.docker_config())
    wrong["auths"][registry.host] = {"username": registry.user, "password": "not-the-password"}
    pull_secret(cluster, namespace, "wrongcred", json.dumps(wrong))
    repository = f"{registry.host}/strategies/late-{namespace}"
    market = "{provider: synthetic, config: {seed: 7, speed: 600}}"
    cluster.apply(session_yaml("late", f"{repository}:v1", market), namespace=namespace)
    refused_login = session_yaml("login", f"{repository}:v1", market)
    refused_login = refused_login.replace("{name: regcred}", "{name: wrongcred}")
    cluster.apply(refused_login, namespace=namespace)
    cluster.apply(
        session_yaml("down", "127.0.0.1:9/strategies/sma:v1", market), namespace=namespace
    )
    # A pull Secret that is not there, and one that is no docker config.
    cluster.kubectl(
        "create", "secret", "generic", "opaque", "--from-literal=token=x", "-n", namespace
    )
    for name, secret in (("nosecret", "missing"), ("notdocker", "opaque")):
        document = session_yaml(name, f"{repository}:v1", market)
        cluster.apply(
            document.replace("{name: regcred}", f"{{name: {secret}}}"), namespace=namespace
        )

    def reason_is(name: str, reason: str) -> Callable[[], Obj | None]:
        def probe() -> Obj | None:
            obj = lts(cluster, namespace, name)
            return obj if state(obj).get("reason") == reason else None

        return probe

    late = eventually(operator, "no such tag", reason_is("late", "StrategyNotFound"), 60)
    assert state(late)["phase"] == "Failed" and condition(late, "Stalled")["status"] == "True"
    assert "not found in the registry" in state(late)["message"]
    login = eventually(operator, "a refused login", reason_is("login", "RegistryLoginRefused"), 60)
    assert "the credentials given were refused" in state(login)["message"]
    down = eventually(operator, "no registry", reason_is("down", "RegistryUnreachable"), 60)
    assert state(down)["phase"] == "Pending" and condition(down, "Stalled")["status"] == "False"
    assert condition(down, "Reconciling")["status"] == "True"  # retried, nobody need act
    missing = eventually(operator, "no Secret", reason_is("nosecret", "PullSecretNotFound"), 60)
    assert f"Secret {namespace}/missing does not exist" in state(missing)["message"]
    opaque = eventually(
        operator, "no docker config", reason_is("notdocker", "PullSecretInvalid"), 60
    )
    assert "has no .dockerconfigjson key" in state(opaque)["message"]
    assert (cluster.get("pods", namespace=namespace) or {"items": []})["items"] == []

    # The tag appears, holding a module whose blob the registry then hands out changed:
    # the operator resolves it at the next resync, the runner refuses the blob.
    module = tmp_path / "changed.wasm"
    # A custom section of its own (id 0, 6 bytes: name "note", payload "!"): a blob that
    # no other test shares.
    module.write_bytes(SMA_WASM.read_bytes() + b"\x00\x06\x04note!")
    digest = push(registry, config, module, f"{repository}:v1")
    blob = registry.blob_file("sha256:" + hashlib.sha256(module.read_bytes()).hexdigest())
    blob.write_bytes(blob.read_bytes()[:-1] + b"?")
    crashing = reason_is("late", "CrashLoopBackOff")
    refused = eventually(operator, "the runner to refuse the blob", crashing, 90)
    status = state(refused)
    assert status["strategyDigest"] == digest
    assert "was changed; refusing it" in status["message"], status["message"]
    assert "exit code 2" in status["message"]
    warnings = [e for e in session_events(cluster, namespace, "late") if e["type"] == "Warning"]
    assert any("was changed; refusing it" in e["message"] for e in warnings), warnings

    # Secrets stay secret: not in any status, Event or ConfigMap, nor the operator's log.
    everything = json.dumps([
        cluster.get("lts", namespace=namespace), cluster.get("events", namespace=namespace),
        cluster.get("configmaps", namespace=namespace),
    ])  # fmt: skip
    for secret in (registry.password, "not-the-password"):
        assert secret not in everything and secret not in operator.log()
    assert "Traceback" not in operator.log()
