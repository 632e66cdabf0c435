"""The operator at fleet scale, against a real API server; JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_operator_scale.py [--sessions 1000]

A control plane of its own (tests/e2e/cluster.py: kube-apiserver, etcd and the garbage
collector, as the e2e tests run them), the node agent in light mode (tests/e2e/node_light.py:
runner pods are reported Running and Ready at once, nothing runs, and each pod's IP and
metrics port answer a made-up /status whose figures move every second, so every read the
operator makes sees new figures), and `kubetrade operator --all-namespaces` as a local
process logged in as its ServiceAccount with deploy/rbac.yaml, exactly as in the e2e tests.

Four phases, each with the operator's CPU (cores: CPU seconds per second) and peak RSS,
the API server's and the whole machine's CPU (others' work on a shared machine shows
there), and the operator's API requests per second by verb, counted by the API server's
audit log (a policy that logs the operator's identity only, so the figures are the
operator's and kopf's requests, nothing else's), next to apiserver_request_total by verb
from the API server's /metrics (every client: the operator, the node agent, this
benchmark, the controllers):

- create: `--sessions` sessions over `--namespaces` namespaces, created one after the
  other at `--apply-rate` a second (0: as fast as the API server takes them, as `kubectl
  apply -f DIR` does). Per session: the time from its create returning to its runner pod
  appearing (watched), p50/p99/max; then the time until all are Running and until every
  new spec is Stable (off probation);
- steady: nothing changes for `--steady-seconds`: writes (create, update, patch, delete)
  per session per minute, the target being at most 1;
- apply_one_at_a_time: `--singles` more sessions, one every `--single-interval` seconds,
  into the running fleet: the latency a user applying a session sees;
- rollout: every session's spec changes (a strategy parameter), as fast as the API server
  takes the patches: per session, the time from its patch returning to its new runner
  pod appearing, and until all run the new generation and are Stable again;
- failover (unless --no-failover): the operator runs as two leader-election candidates
  (`--leader-elect`, the chart's default lease timings), the first one leading and
  measured above; it is killed (SIGKILL): when the standby holds the Lease, when it has
  looked at every session (as many passes as sessions, its queue empty), and whether any
  runner pod changed meanwhile (none should).

`--operator-arg=--flag=value` (repeatable) passes flags to the operator, to compare
settings. The run takes a few minutes at 1,000 sessions; benchmarks/README.md has figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the e2e harness is a package of the tests

from e2e.cluster import DEFAULT_CONTROLLERS, Cluster, start_cluster  # noqa: E402
from e2e.kubeclient import ApiError, KubeClient, load_credentials  # noqa: E402
from e2e.operator_process import (  # noqa: E402
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    Operator,
    apply_crd,
    start_operator,
)

Obj = dict[str, Any]

GROUP_PATH = "/apis/kubetrade.io/v1alpha1"
LEASE = "kubetrade-operator"
RUNNER_SELECTOR = "app.kubernetes.io/managed-by=kubetrade-operator"
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One line per request, when it is answered (a watch: when it ends).
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


def session_document(name: str, fast: int) -> Obj:
    return {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {"name": name},
        "spec": {
            "symbols": ["BTCUSDT"],
            "interval": "1m",
            "strategy": {
                "configMapRef": {"name": "sma-strategy", "key": "sma.wasm.xz"},
                "config": {"fastPeriod": fast, "slowPeriod": 20},
            },
            "marketData": {"provider": "synthetic", "config": {"seed": 7}},
            "trading": {"provider": "paper", "config": {"initialCash": 10000}},
        },
    }


# --- what the API server says -----------------------------------------------------------


@dataclass
class Track:
    """One session as this benchmark saw it, in monotonic seconds."""

    applied: float | None = None  # its create (or the rollout's patch) returned
    pod_uid: str | None = None  # its runner pod before the phase
    pod_seen: float | None = None  # a runner pod other than pod_uid appeared
    generation: int = 0  # the generation the phase waits for
    running: float | None = None  # Running at that generation
    stable: float | None = None  # and that generation off probation (Stable)


@dataclass
class Fleet:
    """Every session's track in the current phase, fed by two watches."""

    tracks: dict[str, Track] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)  # session key -> runner pod uid
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def begin(self, keys: Iterable[str]) -> None:
        self.tracks = {key: Track(pod_uid=self.pods.get(key)) for key in keys}

    def on_pod(self, kind: str, pod: Obj) -> None:
        meta = pod["metadata"]
        session = (meta.get("labels") or {}).get("kubetrade.io/session")
        if session is None:
            return
        key = f"{meta['namespace']}/{session}"
        if kind == "DELETED":
            if self.pods.get(key) == meta["uid"]:
                del self.pods[key]
            return
        self.pods[key] = meta["uid"]
        track = self.tracks.get(key)
        if track is not None and track.pod_seen is None and meta["uid"] != track.pod_uid:
            track.pod_seen = time.monotonic()
            self.changed.set()

    def on_session(self, kind: str, session: Obj) -> None:
        meta = session["metadata"]
        track = self.tracks.get(f"{meta['namespace']}/{meta['name']}")
        if track is None or kind == "DELETED" or not track.generation:
            return
        status = session.get("status") or {}
        if status.get("observedGeneration", 0) < track.generation:
            return
        now = time.monotonic()
        if track.running is None and status.get("phase") == "Running":
            track.running = now
            self.changed.set()
        deployed = status.get("lastReconciledSpec") or {}
        if (
            track.stable is None
            and deployed.get("generation", 0) >= track.generation
            and deployed.get("state") == "Stable"
        ):
            track.stable = now
            self.changed.set()

    async def until(self, what: str, done: Callable[[Track], bool], within: float) -> float:
        """Wait until `done` holds for every track; the monotonic time it did."""
        deadline = time.monotonic() + within
        while True:
            missing = [key for key, track in self.tracks.items() if not done(track)]
            if not missing:
                return time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(missing)} sessions not {what}, e.g. {missing[:3]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))


async def follow(client: KubeClient, path: str, params: dict[str, str], on: Any) -> None:
    async for kind, obj in client.watch(path, params=params):
        if kind != "SYNCED":
            on(kind, obj)


# --- the operator's process and requests ---------------------------------------------------


@dataclass
class ProcessSampler:
    """The operator's CPU seconds and RSS, from /proc, sampled every second."""

    pid: int
    rss_max: int = 0  # bytes, since the last `reset`

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / 100.0  # USER_HZ

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def peak(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def reset(self) -> None:
        self.rss_max = self.rss()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.rss_max = max(self.rss_max, self.rss())
            await asyncio.sleep(1.0)


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used (/proc/stat): with the operator's
    and the API server's own, what else ran on the machine meanwhile."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / 100.0


def audit_counts(path: Path, start: float, end: float) -> Counter[str]:
    """The operator's requests answered between two wall-clock times, by verb."""
    counts: Counter[str] = Counter()
    with path.open() as log:
        for line in log:
            event = json.loads(line)
            when = datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00"))
            if start <= when.timestamp() < end:
                counts[event["verb"]] += 1
    return counts


async def apiserver_counts(client: KubeClient) -> Counter[str]:
    """apiserver_request_total by verb, every client's."""
    async with client.session.get(client.credentials.server + "/metrics") as response:
        text = await response.text()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            counts[verb] += int(float(value))
    return counts


async def operator_metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """An operator's /metrics as {series: value}."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    figures: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            figures[series] = float(value)
    return figures


def per_second(counts: Counter[str], seconds: float) -> Obj:
    rates = {verb: round(n / seconds, 2) for verb, n in sorted(counts.items()) if n}
    return {"total": round(sum(counts.values()) / seconds, 2), **rates}


def quantiles(values: list[float]) -> Obj:
    ordered = sorted(values)
    if not ordered:
        return {}
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(p99, 3),
        "max": round(ordered[-1], 3),
    }


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    cluster: Cluster
    operator: Operator
    client: KubeClient
    audit: Path
    standby: Operator | None = None  # a second candidate for the leader lease
    fleet: Fleet = field(default_factory=Fleet)
    sampler: ProcessSampler = field(init=False)
    apiserver: ProcessSampler = field(init=False)  # its CPU (the controller manager aside)
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sampler = ProcessSampler(self.operator.process.pid)
        self.apiserver = ProcessSampler(self.cluster.process.pid)

    async def apply_all(self, keys: list[str], send: Callable[[str], Any], rate: float) -> float:
        """`send` for every key, one after the other, `rate` a second at most (0: as fast
        as the API server answers, as `kubectl apply -f DIR` does); seconds it took."""
        began = time.monotonic()
        for number, key in enumerate(keys):
            if rate > 0:
                await asyncio.sleep(max(0.0, began + number / rate - time.monotonic()))
            await send(key)
            self.fleet.tracks[key].applied = time.monotonic()
        return time.monotonic() - began

    async def phase(
        self,
        keys: list[str],
        send: Callable[[str], Any],
        generation: int,
        *,
        rate: float,
        stable: bool = True,
    ) -> Obj:
        fleet = self.fleet
        fleet.begin(keys)
        for track in fleet.tracks.values():
            track.generation = generation
        cpu, wall, mono = self.sampler.cpu_seconds(), time.time(), time.monotonic()
        machine, server = machine_busy_seconds(), self.apiserver.cpu_seconds()
        self.sampler.reset()
        every = await apiserver_counts(self.client)
        applying = await self.apply_all(keys, send, rate)
        timeout = self.args.timeout
        created = await fleet.until(
            "with a new runner pod", lambda t: t.pod_seen is not None, timeout
        )
        running = await fleet.until("Running", lambda t: t.running is not None, timeout)
        settled = running
        if stable:
            settled = await fleet.until("Stable", lambda t: t.stable is not None, timeout)
        seconds = time.monotonic() - mono
        latencies = [
            t.pod_seen - t.applied for t in fleet.tracks.values() if t.pod_seen and t.applied
        ]
        every = (await apiserver_counts(self.client)) - every
        await asyncio.sleep(3)  # the audit log is written in batches, every second
        mine = audit_counts(self.audit, wall, wall + seconds)
        figures: Obj = {
            "sessions": len(keys),
            "apply_seconds": round(applying, 2),
            "apply_per_s": round(len(keys) / applying, 1),
            "to_pod_created_s": quantiles(latencies),
            "all_pods_created_s": round(created - mono, 2),
            "all_running_s": round(running - mono, 2),
        }
        if stable:
            figures["all_stable_s"] = round(settled - mono, 2)
        return figures | {
            "operator_cpu_cores": round((self.sampler.cpu_seconds() - cpu) / seconds, 3),
            "apiserver_cpu_cores": round((self.apiserver.cpu_seconds() - server) / seconds, 3),
            "machine_cpu_cores": round((machine_busy_seconds() - machine) / seconds, 3),
            "operator_rss_mb_max": round(self.sampler.rss_max / 2**20, 1),
            "operator_requests_per_s": per_second(mine, seconds),
            "apiserver_requests_per_s": per_second(every, seconds),
            "seconds": round(seconds, 1),
        }

    async def steady(self) -> Obj:
        await asyncio.sleep(self.args.settle_seconds)
        seconds = self.args.steady_seconds
        cpu, wall = self.sampler.cpu_seconds(), time.time()
        machine, server = machine_busy_seconds(), self.apiserver.cpu_seconds()
        self.sampler.reset()
        every = await apiserver_counts(self.client)
        await asyncio.sleep(seconds)
        every = (await apiserver_counts(self.client)) - every
        await asyncio.sleep(3)
        mine = audit_counts(self.audit, wall, wall + seconds)
        writes = sum(n for verb, n in mine.items() if verb in WRITES)
        return {
            "seconds": seconds,
            "writes_per_session_per_min": round(writes / len(self.keys) / (seconds / 60), 3),
            "operator_cpu_cores": round((self.sampler.cpu_seconds() - cpu) / seconds, 3),
            "apiserver_cpu_cores": round((self.apiserver.cpu_seconds() - server) / seconds, 3),
            "machine_cpu_cores": round((machine_busy_seconds() - machine) / seconds, 3),
            "operator_rss_mb_max": round(self.sampler.rss_max / 2**20, 1),
            "operator_requests_per_s": per_second(mine, seconds),
            "apiserver_requests_per_s": per_second(every, seconds),
        }

    async def failover(self, standby: Operator) -> Obj:
        """kill -9 of the leader: when the standby holds the Lease, and when it has looked
        at every session (its queue empty after as many passes as sessions); whether any
        runner pod changed meanwhile."""
        await asyncio.sleep(self.args.settle_seconds)
        pods = dict(self.fleet.pods)
        sessions = len(self.fleet.pods)
        killed = time.time()
        self.operator.process.kill()
        self.operator.process.wait()
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/{LEASE}"
        deadline = time.monotonic() + self.args.timeout
        while True:
            spec = (await self.client.get(lease)).get("spec") or {}
            if spec.get("holderIdentity") == "bench-b":
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not take the Lease over")
            await asyncio.sleep(0.2)
        taken = datetime.fromisoformat(spec["acquireTime"].replace("Z", "+00:00")).timestamp()
        async with aiohttp.ClientSession() as http:
            while True:
                figures = await operator_metrics(http, standby.port)
                done = figures.get('kubetrade_operator_reconciliations_total{result="ok"}', 0)
                if done >= sessions and figures.get("kubetrade_operator_queue_depth") == 0:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the new leader did not look at every session")
                await asyncio.sleep(0.2)
        caught_up = time.time()
        return {
            "sessions": sessions,
            "lease_seconds": 15,
            "takeover_s": round(taken - killed, 2),
            "every_session_looked_at_s": round(caught_up - killed, 2),
            "runner_pods_changed": sum(
                1 for k, uid in pods.items() if self.fleet.pods.get(k) != uid
            ),
            "new_leader_rss_mb": round(ProcessSampler(standby.process.pid).rss() / 2**20, 1),
        }

    async def create(self, key: str) -> None:
        namespace, name = key.split("/")
        path = f"{GROUP_PATH}/namespaces/{namespace}/livetradingsessions"
        await self.client.create(path, session_document(name, 5))

    async def change(self, key: str) -> None:
        namespace, name = key.split("/")
        path = f"{GROUP_PATH}/namespaces/{namespace}/livetradingsessions/{name}"
        await self.client.merge_patch(path, {"spec": {"strategy": {"config": {"fastPeriod": 6}}}})

    async def run(self) -> Obj:
        args = self.args
        for n in range(args.namespaces):
            namespace = f"fleet-{n}"
            with contextlib.suppress(ApiError):
                await self.client.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        self.keys = [f"fleet-{i % args.namespaces}/s{i:05d}" for i in range(args.sessions)]
        watches = [
            asyncio.create_task(
                follow(
                    self.client,
                    "/api/v1/pods",
                    {"labelSelector": RUNNER_SELECTOR},
                    self.fleet.on_pod,
                )
            ),
            asyncio.create_task(
                follow(self.client, f"{GROUP_PATH}/livetradingsessions", {}, self.fleet.on_session)
            ),
            asyncio.create_task(self.sampler.run()),
        ]
        try:
            await asyncio.sleep(1)  # the watches listed
            result: Obj = {"sessions": args.sessions, "namespaces": args.namespaces}
            result["create"] = await self.phase(self.keys, self.create, 1, rate=args.apply_rate)
            result["steady"] = await self.steady()
            # One more session at a time into the running fleet: what a user applying a
            # session sees.
            singles = [f"fleet-{i % args.namespaces}/x{i:05d}" for i in range(args.singles)]
            result["apply_one_at_a_time"] = await self.phase(
                singles, self.create, 1, rate=1 / args.single_interval, stable=False
            )
            # Every spec changed, as fast as a client can send the changes.
            result["rollout"] = await self.phase(self.keys, self.change, 2, rate=0)
            result["operator_rss_mb_peak"] = round(self.sampler.peak() / 2**20, 1)
            if self.standby is not None:
                result["failover"] = await self.failover(self.standby)
            return result
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


async def leading(client: KubeClient, identity: str) -> None:
    """Wait until `identity` holds the operator's Lease."""
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/{LEASE}"
    for _ in range(300):
        with contextlib.suppress(ApiError):
            if ((await client.get(lease)).get("spec") or {}).get("holderIdentity") == identity:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{identity} did not take the Lease")


def targets(result: Obj) -> Obj:
    created = result["create"]["to_pod_created_s"]
    single = result["apply_one_at_a_time"]["to_pod_created_s"]
    return {
        "create_to_pod_created_p50_le_1s": created["p50"] <= 1.0,
        "create_to_pod_created_p99_le_5s": created["p99"] <= 5.0,
        "one_at_a_time_to_pod_created_p50_le_1s": single["p50"] <= 1.0,
        "one_at_a_time_to_pod_created_p99_le_5s": single["p99"] <= 5.0,
        "operator_rss_le_200mb": result["operator_rss_mb_peak"] <= 200,
        "steady_writes_le_1_per_session_per_min": result["steady"]["writes_per_session_per_min"]
        <= 1.0,
    }


async def _main(args: argparse.Namespace) -> Obj:
    audit_policy = Path(args.work) / "audit-policy.json"
    audit_policy.write_text(json.dumps(AUDIT_POLICY))
    cluster = start_cluster(
        controllers=DEFAULT_CONTROLLERS,
        extra_apiserver_args=[
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={Path(args.work) / 'audit.log'}",
            "--audit-log-maxsize=1000000",  # megabytes: never rotated (100 by default)
            # Written in batches, off the requests' path: the measuring costs them little.
            "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
        ],
    )
    try:
        cluster.start_node_agent(light=True, provision_volumes=False, light_pace=args.pace)
        apply_crd(cluster)
        flags = ["--standalone", *args.operator_arg]
        standby = None
        if args.failover:
            # Two candidates for the Lease, as the chart runs two replicas: the one started
            # first leads (and is measured), the other waits.
            flags += ["--leader-elect", f"--leader-election-namespace={OPERATOR_NAMESPACE}"]
        operator = start_operator(
            cluster, args=[*flags, "--leader-election-identity=bench-a"], log_name="operator.log"
        )
        try:
            async with KubeClient(
                load_credentials(cluster.kubeconfig), user_agent="bench"
            ) as client:
                if args.failover:
                    await leading(client, "bench-a")
                    standby = start_operator(
                        cluster,
                        args=[*flags, "--leader-election-identity=bench-b"],
                        log_name="standby.log",
                    )
                bench = Bench(
                    args, cluster, operator, client, Path(args.work) / "audit.log", standby
                )
                result = await bench.run()
            result["operator_args"] = flags
            result["targets_met"] = targets(result)
            return result
        finally:
            for candidate in (operator, standby):
                if candidate is not None:
                    candidate.stop()
                    if args.keep:
                        shutil.copy(candidate.log_path, Path(args.work) / candidate.log_path.name)
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument(
        "--apply-rate",
        type=float,
        default=20.0,
        help="sessions created a second (0: as fast as the API server takes them)",
    )
    parser.add_argument(
        "--singles", type=int, default=50, help="sessions then applied one at a time"
    )
    parser.add_argument("--single-interval", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--steady-seconds", type=float, default=120.0)
    parser.add_argument("--settle-seconds", type=float, default=20.0, help="before steady")
    parser.add_argument("--pace", type=float, default=1.0, help="made-up bars a second")
    parser.add_argument("--timeout", type=float, default=900.0, help="per wait")
    parser.add_argument("--operator-arg", action="append", default=[], metavar="FLAG")
    parser.add_argument(
        "--no-failover",
        dest="failover",
        action="store_false",
        help="one standalone operator, no leader election and no failover phase",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep the audit log and the operator's log here"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as work:
        args.work = args.keep or work
        Path(args.work).mkdir(parents=True, exist_ok=True)
        result = asyncio.run(_main(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
