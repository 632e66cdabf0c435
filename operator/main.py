"""`kubetrade operator`: run the LiveTradingSession operator.

    kubetrade operator --all-namespaces --runner-image ghcr.io/kubetrade/kubetrade:0.1.0
    kubetrade operator -- -n trading -n research --kubeconfig ~/.kube/config

(`--` keeps `kubetrade`'s own parser off the operator's flags.)

In a pod it authenticates as its ServiceAccount; elsewhere with --kubeconfig, $KUBECONFIG
or ~/.kube/config. It never uses kopf peering. One replica runs standalone; with
--leader-elect, several replicas share one coordination.k8s.io Lease and only its holder
reconciles (leader.py); a standby waits, and a leader that loses the Lease writes nothing
more (fence.py) and exits 1, for its container to restart as a standby.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import kopf

from kubetrade.operator import memory
from kubetrade.operator.cache import Cache
from kubetrade.operator.children import MANAGED_BY, RunnerSettings
from kubetrade.operator.endpoint import OperatorEndpoint, loopback_probe_url
from kubetrade.operator.fence import Fence
from kubetrade.operator.handlers import build_registry, operator_settings
from kubetrade.operator.kube import Kube
from kubetrade.operator.leader import (
    LEASE_NAME,
    SERVICE_ACCOUNT_NAMESPACE,
    Elector,
    LeadershipLost,
    LeaseSettings,
)
from kubetrade.operator.login import Login, load_login
from kubetrade.operator.metrics import OperatorMetrics
from kubetrade.operator.observe import ObservedKube, observed
from kubetrade.operator.reconcile import RESYNC_SECONDS
from kubetrade.operator.status import SUMMARY_INTERVAL_SECONDS
from kubetrade.operator.workqueue import WorkQueue
from kubetrade.runner.telemetry import logformat

DEFAULT_IMAGE: Final = "ghcr.io/kubetrade/kubetrade:0.1.0"
WORKERS: Final = 16  # passes at once: enough to keep the API server busy, not flooded

log = logging.getLogger("kubetrade.operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetrade operator", description=__doc__.splitlines()[0] if __doc__ else None
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        metavar="NS",
        help="serve this namespace (repeatable); exact names",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)"
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no kopf peering objects (always so; without --leader-elect run one replica,"
        " e.g. a Deployment with strategy Recreate, as deploy/operator.yaml does)",
    )
    election = parser.add_argument_group("leader election (several replicas)")
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="reconcile only while holding a coordination.k8s.io Lease; wait as a standby"
        " otherwise",
    )
    election.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="the Lease's namespace (default: the pod's own namespace)",
    )
    election.add_argument(
        "--leader-election-name", metavar="NAME", default=LEASE_NAME, help="(default: %(default)s)"
    )
    election.add_argument(
        "--leader-election-identity",
        metavar="ID",
        help="this candidate's name in the Lease (default: hostname and a random suffix)",
    )
    for flag, default, what in (
        ("--lease-seconds", 15.0, "a standby takes over a Lease not renewed for this long"),
        ("--renew-seconds", 10.0, "the leader stops writing when it cannot renew for this long"),
        ("--retry-seconds", 2.0, "how often candidates look and the leader renews"),
    ):
        election.add_argument(
            flag, type=float, default=default, metavar="S", help=f"{what} (default: %(default)s)"
        )
    parser.add_argument(
        "--kubeconfig", type=Path, metavar="PATH", help="kubeconfig file (default: in-cluster)"
    )
    parser.add_argument(
        "--runner-image",
        metavar="IMAGE",
        default=os.environ.get("KUBETRADE_RUNNER_IMAGE") or DEFAULT_IMAGE,
        help="image of runner pods (default: $KUBETRADE_RUNNER_IMAGE or %(default)s)",
    )
    parser.add_argument(
        "--runner-scratch-dir",
        metavar="DIR",
        default="/tmp",
        help="the runner's writable scratch emptyDir and TMPDIR (default: %(default)s)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz, and the"
        " operator's /metrics on the same port",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        metavar="SECONDS",
        default=RESYNC_SECONDS,
        help="read every session and its children from the API server at least this often;"
        " watch events do the rest (default: %(default)s)",
    )
    parser.add_argument(
        "--summary-seconds",
        type=float,
        metavar="SECONDS",
        default=SUMMARY_INTERVAL_SECONDS,
        help="how often a running session's status.summary takes its runner's figures"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=WORKERS,
        help="sessions reconciled at once (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=logformat.FORMATS,
        help="console or json (default: $KUBETRADE_LOG_FORMAT or console)",
    )
    parser.add_argument("--verbose", action="store_true", help="log what every handler does")
    parser.add_argument("--debug", action="store_true", help="log kopf's internals too")
    return parser


def main(argv: Sequence[str], *, log_format: str | None = None) -> int:
    """Run until SIGTERM or SIGINT; the exit code. `log_format`: kubetrade's own
    --log-format, which the operator's overrides."""
    arguments = list(argv)
    if arguments[:1] == ["--"]:  # `kubetrade operator -- -A` reaches us with the separator
        arguments = arguments[1:]
    parser = _parser()
    parser.set_defaults(log_format=log_format or logformat.default_format())
    args = parser.parse_args(arguments)
    # kopf's log format names the object each line is about; one handler, not two.
    logging.getLogger().handlers.clear()
    kopf.configure(verbose=args.verbose, debug=args.debug)
    # Our JSON lines (kopf's object reference kept as a field), or kopf's console format;
    # secrets redacted either way.
    logformat.reformat(args.log_format)
    if not (args.verbose or args.debug):
        # Every event and resync "succeeds" in kopf's log; our own lines say what changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        lease = _lease_settings(args) if args.leader_elect else None
    except (OSError, ValueError) as exc:
        print(f"kubetrade operator: {exc}", file=sys.stderr)
        return 2
    try:
        login = load_login(args.kubeconfig)
        login.info()  # a token file or exec plugin that fails says so now, in one line
    except kopf.LoginError as exc:
        print(f"kubetrade operator: {exc}", file=sys.stderr)
        return 2
    memory.configure()  # before the watches' first listings: large buffers go back when freed
    return asyncio.run(_operate(args, login, lease))


def _lease_settings(args: argparse.Namespace) -> LeaseSettings:
    namespace = args.leader_election_namespace
    if not namespace:
        try:
            namespace = Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip()
        except OSError:
            raise ValueError(
                "--leader-elect: not in a pod; name the Lease's namespace with"
                " --leader-election-namespace"
            ) from None
    identity = {"identity": args.leader_election_identity} if args.leader_election_identity else {}
    return LeaseSettings(
        namespace=namespace,
        name=args.leader_election_name,
        lease_seconds=args.lease_seconds,
        renew_seconds=args.renew_seconds,
        retry_seconds=args.retry_seconds,
        **identity,
    )


async def _operate(args: argparse.Namespace, login: Login, lease: LeaseSettings | None) -> int:
    """Run until stopped; the exit code (1: leadership lost)."""
    metrics = OperatorMetrics()
    # A candidate writes nothing until it holds the Lease; standalone, always.
    fence = Fence.closed() if lease is not None else Fence()
    # Each candidate's requests name it, so an audit log tells the replicas apart.
    agent = MANAGED_BY if lease is None else f"{MANAGED_BY} ({lease.identity})"
    kube = ObservedKube(login, fence=fence, user_agent=agent)
    kube.metrics = metrics
    # kopf's probe on a loopback port of its own; the --liveness port serves it and
    # /metrics (endpoint.py).
    endpoint = None
    liveness = args.liveness
    if liveness:
        probe = loopback_probe_url(urlsplit(liveness).path or "/healthz")
        endpoint = OperatorEndpoint(url=liveness, kopf_probe=probe, metrics=metrics)
        endpoint.standby = lease is not None
        await endpoint.start()
        liveness = probe
    try:
        async with kube, contextlib.AsyncExitStack() as stack:
            elector = None
            if lease is not None:
                # The Lease's requests get a connection pool of their own: a burst of
                # passes (a takeover of a thousand sessions) never holds up a renewal.
                own = await stack.enter_async_context(Kube(login, fence=fence, user_agent=agent))
                elector = Elector(own, lease, fence)
                metrics.leader.set(0)
                if not await _until_stopped(elector.acquire()):
                    return 0  # stopped while a standby
                if endpoint is not None:
                    endpoint.standby = False
            metrics.leader.set(1)
            return await _lead(args, login, kube, metrics, liveness, elector)
    finally:
        if endpoint is not None:
            await endpoint.stop()


async def _until_stopped(waiting: Coroutine[Any, Any, None]) -> bool:
    """Await `waiting` unless SIGTERM or SIGINT comes first; whether it finished."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.done() and not task.cancelled() and task.exception() is None


async def _lead(
    args: argparse.Namespace,
    login: Login,
    kube: ObservedKube,
    metrics: OperatorMetrics,
    liveness: str | None,
    elector: Elector | None,
) -> int:
    """Reconcile until kopf stops (SIGTERM) or, with an elector, leadership is lost."""
    runner = RunnerSettings(image=args.runner_image, scratch_dir=args.runner_scratch_dir)
    cache = Cache()
    reconciler = observed(
        kube,
        runner,
        metrics,
        cache=cache,
        resync_seconds=args.resync_seconds,
        summary_seconds=args.summary_seconds,
    )
    queue = WorkQueue(reconciler.reconcile, concurrency=args.workers)
    metrics.queue_depth.set_function(queue.depth)
    # Made before kopf starts, so kopf's shutdown leaves them to us (it cancels the tasks
    # made while it runs: the passes).
    timer = asyncio.create_task(queue.run(), name="session timer")
    trimmer = asyncio.create_task(memory.trim_now_and_then(), name="memory")
    holding = asyncio.create_task(elector.hold(), name="lease") if elector else None
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(queue, cache, login),
            settings=operator_settings(),
            standalone=True,  # peering would need kopf's peering CRD and more RBAC
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            liveness_endpoint=liveness,
        ),
        name="kopf",
    )
    code = 0
    try:
        waiting = {operator} if holding is None else {operator, holding}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if holding is not None and holding.done():
            exc = holding.exception()
            log.error("leadership lost (%s): stopping; a standby takes over", exc)
            code = 1
            operator.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
            await operator
    finally:
        for task in (timer, trimmer, holding, operator):
            if task is not None:
                task.cancel()
        await queue.stop()
        await asyncio.gather(
            timer, trimmer, *([holding] if holding else []), return_exceptions=True
        )
        await kube.flush_events()  # the passes' Events are their last writes
        if elector is not None:
            await elector.release()  # after the last pass: no write follows it
    return code
