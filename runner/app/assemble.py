"""Turn a loaded session file into a ready-to-run Engine.

This is the one place that knows how spec fields map onto the parts: the
strategy sandbox, the market data provider, the broker, the risk gate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from kubetrade.runner.app.session_file import LoadedSession
from kubetrade.runner.brokers import create_broker
from kubetrade.runner.credentials import refuse_credential_path
from kubetrade.runner.engine import Engine, EngineOptions
from kubetrade.runner.marketdata import create_market_data
from kubetrade.runner.oci import OciError
from kubetrade.runner.oci.fetch import fetch_strategy
from kubetrade.runner.session import Session, open_journal, paper_venue_store
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.spec import PaperConfig, SessionSpec
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.host import SandboxLimits, WasmStrategy
from kubetrade.runner.strategy.source import StrategySourceError, read_strategy
from kubetrade.runner.telemetry.metrics import SessionMetrics

log = logging.getLogger("kubetrade.runner")


class AssemblyError(Exception):
    """The session is valid but cannot run here (e.g. a file is missing)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    max_bars: int | None = None
    credentials_dir: Path | None = None  # provider credentials as files, one per key
    state_dir: Path | None = None  # the journal lives here; None: nothing is kept
    # Registry logins for spec.strategy.oci: a docker config file or a pull Secret's
    # directory; None: where docker and podman keep them.
    registry_config: Path | None = None


def strategy_path(loaded: LoadedSession, *, credentials_dir: Path | None = None) -> Path:
    source = loaded.session.spec.strategy
    if source.path is None:
        kind = "configMapRef" if source.config_map_ref is not None else "oci"
        raise AssemblyError(
            f"spec.strategy.{kind} is resolved by the operator inside Kubernetes; "
            "for a local run set spec.strategy.path to a .wasm file"
        )
    path = loaded.resolve(source.path)
    refuse_credential_path(path, field="spec.strategy.path", credentials_dir=credentials_dir)
    if not path.is_file():
        raise AssemblyError(f"spec.strategy.path: no such file {path}")
    return path


def strategy_wasm(loaded: LoadedSession, options: RunOptions) -> bytes:
    """The strategy's module: a file (spec.strategy.path), or an OCI artifact pulled and
    checked against its digests (spec.strategy.oci), the same in a pod and on a laptop."""
    oci = loaded.session.spec.strategy.oci
    if oci is not None:
        try:
            artifact = fetch_strategy(oci.reference, registry_config=options.registry_config)
        except OciError as exc:
            raise AssemblyError(f"spec.strategy.oci: {exc}") from None
        log.info(
            "strategy %s: manifest %s and module %s verified",
            oci.reference,
            artifact.manifest_digest,
            artifact.layer_digest,
        )
        return artifact.wasm
    try:
        return read_strategy(strategy_path(loaded, credentials_dir=options.credentials_dir))
    except StrategySourceError as exc:
        raise AssemblyError(f"spec.strategy.path: {exc}") from exc


def strategy_digest(loaded: LoadedSession) -> str:
    """The digest an OCI strategy is pinned by (the operator pins every one); "" otherwise."""
    oci = loaded.session.spec.strategy.oci
    if oci is None:
        return ""
    _, at, digest = str(oci.reference).rpartition("@")
    return digest if at else ""


def stream_speed(spec: SessionSpec) -> float:
    """How many times faster than real time bars come (see SessionMetrics.speed)."""
    config = spec.market_data.parsed()
    return float(getattr(config, "speed", 1.0))


def build_engine(loaded: LoadedSession, options: RunOptions | None = None) -> Engine:
    options = options or RunOptions()
    session = loaded.session
    spec = session.spec
    name = session.metadata.name
    symbols = tuple(spec.symbols)
    risk = spec.risk
    gate = RiskGate(
        limits=RiskLimits(
            max_order_notional=risk.max_order_notional,
            max_position_notional=risk.max_position_notional,
            max_orders_per_minute=risk.max_orders_per_minute,
            max_daily_loss=risk.max_daily_loss,
            allow_short=risk.allow_short,
        ),
        symbols=frozenset(symbols),
    )
    wasm = strategy_wasm(loaded, options)
    market_data, warmup_end = create_market_data(
        spec,
        base_dir=loaded.base_dir,
        warmup_bars=spec.engine.warmup_bars,
        credentials_dir=options.credentials_dir,
    )
    # The state directory as late as can be, so that a refused start writes nothing there.
    # Everything in the state directory is read back and checked before the journal's
    # first write (its new epoch), a paper venue kept beside it by an older runner too:
    # a refused start changes no file.
    paper = isinstance(spec.trading.parsed(), PaperConfig)
    journal = open_journal(options.state_dir, name, paper=paper)
    try:
        broker = create_broker(
            spec.trading,
            precision=spec.engine.decimal_precision,
            credentials_dir=options.credentials_dir,
            venue_store=paper_venue_store(journal) if paper and options.state_dir else None,
            symbols=symbols,
        )
    except BaseException:
        journal.close()
        raise
    if broker.is_live:
        # Said once, loudly, before anything runs; every order says it again (brokers).
        routes = "; ".join(
            f"spec.trading.{r.field} reaches {r.why}" for r in spec.trading.live_routes
        )
        log.warning(
            "session %s trades REAL MONEY through %s (spec.trading.confirmLive: true)%s",
            name,
            spec.trading.provider,
            f": {routes}" if routes else "",
        )
    if not broker.supports_brackets:
        # Only the paper venue holds take-profits and stop-losses so far.
        gate.brackets_venue = f"provider {spec.trading.provider!r}"
    state = Session.create(
        session=name,
        symbols=symbols,
        initial_cash=broker.account().balance,
        risk=gate,
        window_size=spec.engine.market_data_cache_size,
        precision=spec.engine.decimal_precision,
        journal=journal,
    )
    functions = HostFunctions(state, indicators=spec.engine.indicators)
    limits = SandboxLimits(
        max_memory_bytes=spec.engine.strategy_memory_limit_mib * 1024 * 1024,
        call_timeout_s=spec.engine.strategy_call_timeout_seconds,
    )

    def new_strategy() -> WasmStrategy:
        # The strategy's clocks read bar time, also while a restarted instance initializes.
        return WasmStrategy(
            wasm, functions, session=name, limits=limits, clock=lambda: state.now * 1_000_000
        )

    metrics = SessionMetrics(
        session=name,
        namespace=session.metadata.namespace or "",
        strategy_digest=strategy_digest(loaded),
        interval_s=spec.interval_ms / 1000,
        speed=stream_speed(spec),
    )
    metrics.trading(provider=spec.trading.provider, real_money=broker.is_live)
    return Engine(
        state=state,
        strategy=new_strategy(),
        new_strategy=new_strategy,
        market_data=market_data,
        broker=broker,
        options=EngineOptions(
            interval=spec.interval,
            strategy_config=spec.strategy.config,
            warmup_bars=spec.engine.warmup_bars,
            warmup_end=warmup_end,
            max_bars=options.max_bars,
            max_consecutive_strategy_errors=spec.engine.max_consecutive_strategy_errors,
        ),
        metrics=metrics,
    )
