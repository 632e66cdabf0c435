"""Placeholder for the binance market data provider (not available in this version)."""

from __future__ import annotations

from kubetrade.runner.credentials import Credentials
from kubetrade.runner.marketdata.base import MarketDataError, MarketDataProvider
from kubetrade.runner.spec import SessionSpec


def create(spec: SessionSpec, *, credentials: Credentials) -> MarketDataProvider:
    raise MarketDataError(
        f"spec.marketData.provider: {spec.market_data.provider!r} is not available in this "
        "kubetrade version yet; use 'replay' or 'synthetic'"
    )
