"""`kubetrade operator`: run the LiveTradingSession operator.

    kubetrade operator --all-namespaces --runner-image ghcr.io/kubetrade/kubetrade:0.1.0
    kubetrade operator -- -n trading -n research --kubeconfig ~/.kube/config

(`--` keeps `kubetrade`'s own parser off the operator's flags.)

In a pod it authenticates as its ServiceAccount; elsewhere with --kubeconfig, $KUBECONFIG
or ~/.kube/config. It runs standalone (one replica; no kopf peering objects), which is
what deploy/rbac.yaml grants.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import kopf

from kubetrade.operator.children import RunnerSettings
from kubetrade.operator.endpoint import OperatorEndpoint, loopback_probe_url
from kubetrade.operator.handlers import RESYNC_SECONDS, build_registry, operator_settings
from kubetrade.operator.login import Login, load_login
from kubetrade.operator.metrics import OperatorMetrics
from kubetrade.operator.observe import ObservedKube, observed
from kubetrade.runner.telemetry import logformat

DEFAULT_IMAGE: Final = "ghcr.io/kubetrade/kubetrade:0.1.0"


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
        help="no kopf peering objects (always so: run one replica, e.g. a Deployment with"
        " strategy Recreate, as deploy/operator.yaml does)",
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
        help="look at every session at least this often (default: %(default)s)",
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
        login = load_login(args.kubeconfig)
        login.info()  # a token file or exec plugin that fails says so now, in one line
    except kopf.LoginError as exc:
        print(f"kubetrade operator: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_operate(args, login))
    return 0


async def _operate(args: argparse.Namespace, login: Login) -> None:
    metrics = OperatorMetrics()
    kube = ObservedKube(login)
    kube.metrics = metrics
    # kopf's probe on a loopback port of its own; the --liveness port serves it and
    # /metrics (endpoint.py).
    endpoint = None
    liveness = args.liveness
    if liveness:
        probe = loopback_probe_url(urlsplit(liveness).path or "/healthz")
        endpoint = OperatorEndpoint(url=liveness, kopf_probe=probe, metrics=metrics)
        await endpoint.start()
        liveness = probe
    try:
        async with kube:
            runner = RunnerSettings(image=args.runner_image, scratch_dir=args.runner_scratch_dir)
            reconciler = observed(kube, runner, metrics)
            registry = build_registry(reconciler, login, resync_seconds=args.resync_seconds)
            await kopf.operator(
                registry=registry,
                settings=operator_settings(),
                standalone=True,  # peering would need kopf's peering CRD and more RBAC
                clusterwide=not args.namespaces,
                namespaces=args.namespaces,
                liveness_endpoint=liveness,
            )
    finally:
        if endpoint is not None:
            await endpoint.stop()
