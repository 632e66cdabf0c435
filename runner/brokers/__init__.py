"""Trading providers: the paper venue (paper.py, its store paper_store.py), ccxt/ and
ibkr/, each behind the Broker protocol (base.py); `create_broker` picks one for a session."""

from __future__ import annotations

from pathlib import Path

from kubetrade.runner.brokers.base import Broker, BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.paper import FeeModel, PaperBroker
from kubetrade.runner.brokers.paper_store import PaperStore
from kubetrade.runner.credentials import load_credentials
from kubetrade.runner.spec import PaperConfig, TradingSpec

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerEvent",
    "OrderUpdate",
    "check_venue_state",
    "create_broker",
    "venue_state_files",
]

PAPER_VENUE_FILE = "paper-venue.db"  # the durable paper venue, in the state directory


def venue_state_files(trading: TradingSpec, state_dir: Path) -> list[Path]:
    """The files in which the session's venue keeps state in the state directory."""
    return [state_dir / PAPER_VENUE_FILE] if isinstance(trading.parsed(), PaperConfig) else []


def check_venue_state(trading: TradingSpec, state_dir: Path) -> None:
    """Read the venue's files back without writing; BrokerError if one is unreadable.
    Called before anything in the state directory is written."""
    for path in venue_state_files(trading, state_dir):
        try:
            PaperStore.check(path)
        except ValueError as exc:
            raise BrokerError(
                f"{exc}; it was left untouched. Restore it from a backup, or move the whole "
                "state directory aside to start the session afresh"
            ) from None


def create_broker(
    trading: TradingSpec,
    *,
    precision: int,
    credentials_dir: Path | None = None,
    state_dir: Path | None = None,
    epoch: int | None = None,
    symbols: tuple[str, ...] = (),
) -> Broker:
    """`epoch`: the runner's epoch (from its journal), which fences a durable paper venue."""
    if trading.is_live and not trading.confirm_live:
        # The spec refuses this already; a second lock on the door that loses money.
        raise BrokerError(
            f"spec.trading.confirmLive: provider {trading.provider!r} trades real money; "
            "set spec.trading.confirmLive: true to confirm"
        )
    config = trading.parsed()
    if isinstance(config, PaperConfig):
        return PaperBroker(
            initial_cash=config.initial_cash,
            fees=FeeModel(
                kind=config.fee_model,
                bps=config.fee_bps,
                per_share=config.fee_per_share,
                minimum=config.min_fee_per_order,
            ),
            slippage_bps=config.slippage_bps,
            fill_price=config.fill_price,
            precision=precision,
            # With a state directory the paper venue is as durable as a real one.
            store=(
                PaperStore(state_dir / PAPER_VENUE_FILE, epoch=epoch)
                if state_dir is not None
                else None
            ),
        )
    credentials = load_credentials(trading.provider, directory=credentials_dir)
    # Venue adapters import their client libraries only when a session uses them.
    if trading.provider in ("binance-paper", "binance-live", "ccxt"):
        from kubetrade.runner.brokers.ccxt import broker as ccxt_broker

        return ccxt_broker.create(
            trading, precision=precision, credentials=credentials, symbols=symbols
        )
    if trading.provider in ("ibkr-paper", "ibkr-live"):
        from kubetrade.runner.brokers.ibkr import broker as ibkr

        return ibkr.create(trading, precision=precision, credentials=credentials)
    raise BrokerError(f"spec.trading.provider: unknown provider {trading.provider!r}")
