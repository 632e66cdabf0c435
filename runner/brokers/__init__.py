"""Trading providers: the paper venue (paper.py, its durable state in the session's
journal: session/venue.py), ccxt/ and ibkr/, each behind the Broker protocol (base.py);
`create_broker` picks one for a session."""

from __future__ import annotations

from pathlib import Path

from kubetrade.runner.brokers.base import Broker, BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.paper import FeeModel, PaperBroker
from kubetrade.runner.credentials import load_credentials
from kubetrade.runner.session.venue import VenueStore
from kubetrade.runner.spec import PaperConfig, TradingSpec

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerEvent",
    "OrderUpdate",
    "create_broker",
]


def create_broker(
    trading: TradingSpec,
    *,
    precision: int,
    credentials_dir: Path | None = None,
    venue_store: VenueStore | None = None,
    symbols: tuple[str, ...] = (),
) -> Broker:
    """`venue_store`: where a durable paper venue keeps its state (the session's journal,
    with a state directory); without one the paper venue keeps nothing."""
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
            store=venue_store,
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
