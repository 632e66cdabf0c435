"""Trading providers, one module each; `create_broker` picks one for a session."""

from __future__ import annotations

from kubetrade.runner.brokers.base import Broker, BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.paper import FeeModel, PaperBroker
from kubetrade.runner.spec import PaperConfig, TradingSpec

__all__ = ["Broker", "BrokerError", "BrokerEvent", "OrderUpdate", "create_broker"]


def create_broker(trading: TradingSpec, *, precision: int) -> Broker:
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
        )
    raise BrokerError(
        f"spec.trading.provider: {trading.provider!r} is not available in this kubetrade "
        "version yet; use 'paper'"
    )
