"""Trading providers, one module each; `create_broker` picks one for a session."""

from __future__ import annotations

from pathlib import Path

from kubetrade.runner.brokers.base import Broker, BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.paper import FeeModel, PaperBroker
from kubetrade.runner.brokers.paper_store import PaperStore
from kubetrade.runner.credentials import load_credentials
from kubetrade.runner.spec import PaperConfig, TradingSpec

__all__ = ["Broker", "BrokerError", "BrokerEvent", "OrderUpdate", "create_broker"]


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
            precision=precision,
            # With a state directory the paper venue is as durable as a real one.
            store=(
                PaperStore(state_dir / "paper-venue.db", epoch=epoch)
                if state_dir is not None
                else None
            ),
        )
    credentials = load_credentials(trading.provider, directory=credentials_dir)
    # Venue adapters import their client libraries only when a session uses them.
    if trading.provider in ("binance-paper", "binance-live", "ccxt"):
        from kubetrade.runner.brokers import ccxt_broker

        return ccxt_broker.create(
            trading, precision=precision, credentials=credentials, symbols=symbols
        )
    if trading.provider in ("ibkr-paper", "ibkr-live"):
        from kubetrade.runner.brokers import ibkr

        return ibkr.create(trading, precision=precision, credentials=credentials)
    raise BrokerError(f"spec.trading.provider: unknown provider {trading.provider!r}")
