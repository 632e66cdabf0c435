"""`kubetrade ...`: run a session locally, print the session schema.

Exit codes: 0 the session ran and stopped cleanly (end of data, --max-bars,
SIGTERM/SIGINT); 1 the session failed while running; 2 the session or the
command line is invalid and nothing ran.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import AssemblyError, RunOptions, build_engine
from kubetrade.runner.app.console import ConsoleReporter
from kubetrade.runner.app.logevents import JsonReporter
from kubetrade.runner.app.report import build_report, export, format_report
from kubetrade.runner.app.report_html import render_html
from kubetrade.runner.app.server import RunnerServer
from kubetrade.runner.app.session_file import (
    LoadedSession,
    Problem,
    SessionError,
    load_session,
    session_from_flags,
)
from kubetrade.runner.brokers import BrokerError
from kubetrade.runner.credentials import (
    CredentialPathError,
    CredentialsError,
    refuse_credential_path,
)
from kubetrade.runner.engine import Engine
from kubetrade.runner.marketdata import MarketDataError
from kubetrade.runner.oci import command as strategy_commands
from kubetrade.runner.session import JOURNAL_FILE, JournalError, JournalReader, StorageError
from kubetrade.runner.session.statedir import StateDirError, lock_state_dir
from kubetrade.runner.spec import json_schema
from kubetrade.runner.strategy.host import StrategyLoadError
from kubetrade.runner.telemetry import logformat

log = logging.getLogger("kubetrade.cli")

_SETUP_ERRORS = (
    SessionError,
    AssemblyError,
    StrategyLoadError,
    MarketDataError,
    BrokerError,
    CredentialsError,
    CredentialPathError,
    JournalError,
    StateDirError,
    StorageError,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetrade", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="warning", help="debug, info, warning, error")
    parser.add_argument(
        "--log-format",
        choices=logformat.FORMATS,
        default=logformat.default_format(),
        help="console (for people) or json (a JSON object a line, with session, namespace,"
        " epoch, bar time and order ids as fields); default: $KUBETRADE_LOG_FORMAT or console",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a LiveTradingSession locally")
    run.add_argument("session", nargs="?", type=Path, help="the session YAML file")
    run.add_argument("--max-bars", type=int, help="stop after this many bars")
    run.add_argument("--summary-json", type=Path, help="write the final figures here as JSON")
    run.add_argument(
        "--http-port",
        type=int,
        help="serve /healthz /readyz /metrics /status here (default: spec.metricsPort; 0: any)",
    )
    run.add_argument("--no-http", action="store_true", help="do not serve HTTP endpoints")
    run.add_argument("--quiet", action="store_true", help="print only the summary")
    run.add_argument(
        "--state-dir",
        type=Path,
        help="keep the session's journal here and resume from it (a PVC in Kubernetes)",
    )
    run.add_argument(
        "--credentials-dir",
        type=Path,
        default=os.environ.get("KUBETRADE_CREDENTIALS_DIR") or None,
        help="provider credentials as files, one per key (default: $KUBETRADE_CREDENTIALS_DIR)",
    )
    run.add_argument(
        "--registry-config",
        type=Path,
        help="registry logins for spec.strategy.oci: a docker config file, or a directory"
        " holding a pull Secret's .dockerconfigjson (default: $REGISTRY_AUTH_FILE,"
        " $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
    )
    flags = run.add_argument_group("a session from flags instead of a file")
    flags.add_argument("--strategy-wasm", type=Path)
    flags.add_argument("--strategy-config", type=Path, help="JSON or YAML file")
    flags.add_argument("--market-data-provider")
    flags.add_argument("--market-data-config", type=Path, help="JSON or YAML file")
    flags.add_argument("--trading-provider")
    flags.add_argument("--trading-config", type=Path, help="JSON or YAML file")
    flags.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    flags.add_argument("--interval", help="e.g. 1m")
    flags.add_argument("--name", default="cli-session")
    flags.add_argument(
        "--confirm-live", action="store_true", help="confirm that a live provider trades real money"
    )

    commands.add_parser("schema", help="print the JSON schema of a LiveTradingSession")

    commands.add_parser("crd", help="print the LiveTradingSession CustomResourceDefinition")
    # The operator parses its own flags (`kubetrade operator --help`).
    commands.add_parser("operator", help="run the Kubernetes operator", add_help=False)

    strategy_commands.add_commands(commands)

    report = commands.add_parser("report", help="what a session did, from its journal")
    report.add_argument("state_dir", type=Path, help="the session's --state-dir")
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.add_argument("--export", type=Path, help="also write orders, fills and marks here")
    report.add_argument("--export-format", choices=["csv", "parquet"], default="csv")
    report.add_argument(
        "--html", type=Path, metavar="OUT", help="also write a self-contained HTML page here"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "operator":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logformat.configure(args.log_level, args.log_format)
    if args.command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "report":
        return _report(args)
    if args.command == "strategy":
        return strategy_commands.run(args)
    if args.command == "crd":
        # The operator package is imported only by the commands that need it.
        from kubetrade.operator.crd import render_crd

        sys.stdout.write(render_crd())
        return 0
    if args.command == "operator":
        from kubetrade.operator.main import main as operator_main

        return operator_main(extra, log_format=args.log_format)
    return _run(args)


def _report(args: argparse.Namespace) -> int:
    try:
        journal = JournalReader.open(args.state_dir / JOURNAL_FILE)  # reads, never writes
    except JournalError as exc:
        print(f"kubetrade: {exc}", file=sys.stderr)
        return 2
    try:
        figures = build_report(journal)
        if args.json:
            print(json.dumps(dataclasses.asdict(figures), indent=2))
        else:
            print(format_report(figures))
        if args.export is not None:
            for path in export(journal, args.export, args.export_format):
                print(f"wrote {path}", file=sys.stderr)
        if args.html is not None:
            try:
                args.html.write_text(render_html(journal, figures), encoding="utf-8")
            except OSError as exc:
                print(
                    f"kubetrade: cannot write {args.html}: {exc.strerror or exc}", file=sys.stderr
                )
                return 2
            print(f"wrote {args.html}", file=sys.stderr)
    finally:
        journal.close()
    return 0


def _load(args: argparse.Namespace) -> LoadedSession:
    # Files read as session or config documents are quoted in their errors: never a secret.
    for flag, path in (
        ("the session file", args.session),
        ("--strategy-config", args.strategy_config),
        ("--market-data-config", args.market_data_config),
        ("--trading-config", args.trading_config),
    ):
        if path is not None:
            refuse_credential_path(Path(path), field=flag, credentials_dir=args.credentials_dir)
    if args.session is not None:
        if args.strategy_wasm or args.market_data_provider or args.trading_provider:
            raise SessionError(
                "from the command line",
                [Problem("", "give either a session file or the session flags, not both")],
            )
        return load_session(args.session)
    if not (args.strategy_wasm and args.market_data_provider and args.trading_provider):
        raise SessionError(
            "from the command line",
            [
                Problem(
                    "",
                    "kubetrade run needs a session file, or --strategy-wasm, "
                    "--market-data-provider, --trading-provider, --symbols and --interval",
                )
            ],
        )
    return session_from_flags(
        strategy_wasm=args.strategy_wasm,
        strategy_config=args.strategy_config,
        market_data_provider=args.market_data_provider,
        market_data_config=args.market_data_config,
        trading_provider=args.trading_provider,
        trading_config=args.trading_config,
        symbols=args.symbols or "",
        interval=args.interval or "1m",
        name=args.name,
        confirm_live=args.confirm_live,
    )


def _run(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args)
        # One runner per state directory: locked before anything in it is touched, held
        # while this process runs (the kernel drops it when the process dies, kill -9 too).
        lock = lock_state_dir(args.state_dir) if args.state_dir is not None else None
    except _SETUP_ERRORS as exc:
        print(f"kubetrade: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_loaded(args, loaded)
    finally:
        if lock is not None:
            lock.release()


def _run_loaded(args: argparse.Namespace, loaded: LoadedSession) -> int:
    meta = loaded.session.metadata
    logformat.bind(session=meta.name, namespace=meta.namespace)  # on every line from here
    try:
        engine = build_engine(
            loaded,
            RunOptions(
                max_bars=args.max_bars,
                credentials_dir=args.credentials_dir,
                state_dir=args.state_dir,
                registry_config=args.registry_config,
            ),
        )
    except _SETUP_ERRORS as exc:
        print(f"kubetrade: {exc}", file=sys.stderr)
        return 2
    port = None if args.no_http else args.http_port
    if port is None and not args.no_http:
        port = loaded.session.spec.metrics_port
    # The epoch and the bar in hand, on every line from here (JSON logs).
    logformat.bind(epoch=engine.state.epoch, bar_time=lambda: engine.state.now)
    reporter: Callable[[ev.Event], None]
    if args.log_format == "json":
        reporter = JsonReporter(quiet=args.quiet)
    else:
        reporter = ConsoleReporter(
            quiet=args.quiet, equity=lambda: engine.state.book.account().equity
        )
    try:
        summary, error = asyncio.run(_drive(engine, reporter, port))
    except OSError as exc:
        print(f"kubetrade: cannot serve HTTP on port {port}: {exc}; "
              "pass --http-port 0 for any free port or --no-http", file=sys.stderr)  # fmt: skip
        return 2
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
    if error is not None:
        print(f"kubetrade: session failed: {error}", file=sys.stderr)
        return 1
    return 0


async def _drive(
    engine: Engine, reporter: Callable[[ev.Event], None], port: int | None
) -> tuple[ev.Summary, str | None]:
    loop = asyncio.get_running_loop()

    def on_signal(_signum: int, _frame: object) -> None:
        # A replay at full speed gives the loop control only every few dozen bars, so the
        # stop is noted here at once (the bar loop checks it after every bar); the wait
        # for a next bar is interrupted by the loop, between task steps, where a cancel
        # can only land on that wait (engine.request_stop says why not here).
        engine.stop_after_bar()
        loop.call_soon_threadsafe(engine.request_stop)

    before = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    server = RunnerServer(engine, port=port) if port is not None else None
    if server is not None:
        bound = await server.start()
        log.info("serving /healthz /readyz /metrics /status on port %d", bound)
    stopped: ev.EngineStopped | None = None
    try:
        async for event in engine.run():
            reporter(event)
            if isinstance(event, ev.EngineStopped):
                stopped = event
    finally:
        if server is not None:
            await server.stop()
        for signum, handler in before.items():
            # None: the handler was not set from Python; the default is the nearest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    assert stopped is not None  # run() always ends with EngineStopped
    return stopped.summary, stopped.error


if __name__ == "__main__":
    sys.exit(main())
