"""Every rule of the session document that relates two or more fields."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from kubetrade.runner.spec.base import Rule
from kubetrade.runner.spec.fields import OCI_PINNED, format_from_extension

if TYPE_CHECKING:
    from kubetrade.runner.spec.document import (
        EngineSpec,
        SessionSpec,
        StrategySpec,
        TradingSpec,
    )
    from kubetrade.runner.spec.providers import BackoffConfig, ReplayConfig

# Every rule that relates two or more fields lives here, as one small function
# over the object it reads: the rule's scope, its `self` when a later issue
# mirrors it as an x-kubernetes-validations CEL rule on that object. A violation
# is reported at `field` (relative to the scope; "" is the object itself). Each
# model lists its rules in `rules`; `Model._check_rules` (base) runs them.


def _one_strategy_source(strategy: StrategySpec) -> str | None:
    sources = {"path": strategy.path, "configMapRef": strategy.config_map_ref, "oci": strategy.oci}
    chosen = [key for key, value in sources.items() if value is not None]
    if len(chosen) == 1:
        return None
    if not chosen:
        return (
            "say where the strategy's .wasm comes from: set one of path (local runs),"
            " configMapRef or oci (in Kubernetes)"
        )
    return f"set exactly one of path, configMapRef or oci; found {' and '.join(chosen)}"


def _live_trading_confirmed(trading: TradingSpec) -> str | None:
    if not trading.is_live or trading.confirm_live:
        return None
    routes = trading.live_routes
    if routes:
        # A paper provider pointed elsewhere: name each setting and the host it reaches
        # (never the whole URL, which may carry user:password).
        where = "; ".join(
            f"spec.trading.{route.field} reaches {route.why} ({route.fix})" for route in routes
        )
        return (
            f"provider {trading.provider!r} is for play money, but {where}, which can be a"
            " live venue trading real money; set spec.trading.confirmLive: true if you mean it"
        )
    what = f"provider {trading.provider!r}"
    if trading.provider == "ccxt":
        what += " with config.sandbox: false"
    return f"{what} trades real money; set spec.trading.confirmLive: true to confirm"


def _live_strategy_pinned(session: SessionSpec) -> str | None:
    oci = session.strategy.oci
    if not session.trading.confirm_live or oci is None or re.search(OCI_PINNED, oci.reference):
        return None
    return (
        f"{oci.reference!r} is a tag, and a session that can trade real money"
        " (spec.trading.confirmLive: true) runs exactly the strategy it was tested with: pin"
        " it by digest, <repository>@sha256:<digest> (`kubetrade strategy push` prints it)"
    )


def _warmup_within_cache(engine: EngineSpec) -> str | None:
    if engine.warmup_bars <= engine.market_data_cache_size:
        return None
    return (
        f"warmupBars ({engine.warmup_bars}) exceeds marketDataCacheSize"
        f" ({engine.market_data_cache_size}), so the cache cannot hold the warm-up window;"
        " lower spec.engine.warmupBars or raise spec.engine.marketDataCacheSize"
    )


def _replay_format_known(replay: ReplayConfig) -> str | None:
    if replay.format != "auto" or format_from_extension(replay.path) is not None:
        return None
    return (
        f"cannot tell the format of {replay.path!r} from its extension (.csv, .parquet or .pq);"
        " set format: csv or format: parquet"
    )


def _backoff_ordered(config: BackoffConfig) -> str | None:
    if config.max_backoff >= config.initial_backoff:
        return None
    return (
        f"maxBackoff ({config.max_backoff}) is below initialBackoff ({config.initial_backoff});"
        " raise maxBackoff or lower initialBackoff"
    )


ONE_STRATEGY_SOURCE: Final[Rule[StrategySpec]] = Rule(
    "one-strategy-source", "spec.strategy", "", _one_strategy_source
)
LIVE_TRADING_CONFIRMED: Final[Rule[TradingSpec]] = Rule(
    "live-trading-confirmed", "spec.trading", "confirmLive", _live_trading_confirmed
)
LIVE_STRATEGY_PINNED: Final[Rule[SessionSpec]] = Rule(
    "live-strategy-pinned", "spec", "strategy.oci.reference", _live_strategy_pinned
)
WARMUP_WITHIN_CACHE: Final[Rule[EngineSpec]] = Rule(
    "warmup-within-cache", "spec.engine", "warmupBars", _warmup_within_cache
)
REPLAY_FORMAT_KNOWN: Final[Rule[ReplayConfig]] = Rule(
    "replay-format-known", "spec.marketData.config", "format", _replay_format_known
)
BACKOFF_ORDERED: Final[Rule[BackoffConfig]] = Rule(
    "backoff-ordered", "spec.marketData.config", "maxBackoff", _backoff_ordered
)
CROSS_FIELD_RULES: Final[tuple[Rule[Any], ...]] = (
    ONE_STRATEGY_SOURCE,
    LIVE_TRADING_CONFIRMED,
    LIVE_STRATEGY_PINNED,
    WARMUP_WITHIN_CACHE,
    REPLAY_FORMAT_KNOWN,
    BACKOFF_ORDERED,
)
