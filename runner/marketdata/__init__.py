"""Market data providers, one module each; `create_market_data` picks one for a session.

Where the data path starts: every provider streams closed bars (base.py); the other
modules serve the live feeds (connections, reconnects, backfill, ordering, health) or
replay (excerpt.py: what an error may quote of a user's data file)."""

from __future__ import annotations

from pathlib import Path

from kubetrade.runner.credentials import load_credentials, refuse_credential_path
from kubetrade.runner.domain import datetime_to_ms
from kubetrade.runner.marketdata.base import MarketDataError, MarketDataProvider
from kubetrade.runner.marketdata.replay import ReplayProvider
from kubetrade.runner.marketdata.synthetic import SyntheticProvider
from kubetrade.runner.spec import ReplayConfig, SessionSpec, SyntheticConfig

__all__ = ["MarketDataError", "MarketDataProvider", "create_market_data"]


def create_market_data(
    spec: SessionSpec, *, base_dir: Path, warmup_bars: int, credentials_dir: Path | None = None
) -> tuple[MarketDataProvider, dict[str, int] | None]:
    """The provider, and per symbol the time before which warm-up history ends.

    Replayed and synthetic data have no "now": their warm-up is the data just
    before the first streamed bar. Live providers return None (history up to now).
    """
    config = spec.market_data.parsed()
    symbols = tuple(spec.symbols)
    if isinstance(config, ReplayConfig):
        path = Path(config.path)
        path = path if path.is_absolute() else base_dir / path
        refuse_credential_path(
            path, field="spec.marketData.config.path", credentials_dir=credentials_dir
        )
        replay = ReplayProvider(
            path=path,
            symbols=symbols,
            interval_ms=spec.interval_ms,
            speed=config.speed,
            fmt=config.format,
            loop=config.loop,
            start_after_warmup=warmup_bars,
        )
        return replay, {s: replay.stream_start(s) for s in symbols}
    if isinstance(config, SyntheticConfig):
        start = datetime_to_ms(config.start_time)
        synthetic = SyntheticProvider(
            symbols=symbols,
            interval_ms=spec.interval_ms,
            seed=config.seed,
            start_price=config.start_price,
            volatility=config.volatility,
            drift=config.drift,
            bars=config.bars,
            start_time_ms=start,
            speed=config.speed,
        )
        return synthetic, dict.fromkeys(symbols, start)
    credentials = load_credentials(spec.market_data.provider, directory=credentials_dir)
    # Network providers import their client libraries only when a session uses them.
    if spec.market_data.provider == "binance":
        from kubetrade.runner.marketdata import binance

        return binance.create(spec, credentials=credentials), None
    if spec.market_data.provider == "polygon":
        from kubetrade.runner.marketdata import polygon

        return polygon.create(spec, credentials=credentials), None
    raise MarketDataError(
        f"spec.marketData.provider: unknown provider {spec.market_data.provider!r}"
    )
