"""Placeholder for the ibkr trading provider (not available in this version)."""

from __future__ import annotations

from kubetrade.runner.brokers.base import Broker, BrokerError
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.spec import TradingSpec


def create(trading: TradingSpec, *, precision: int, credentials: Credentials) -> Broker:
    raise BrokerError(
        f"spec.trading.provider: {trading.provider!r} is not available in this kubetrade "
        "version yet; use 'paper'"
    )
