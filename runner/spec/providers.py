"""The providers' own settings: each provider's `config` is checked against its model."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    JsonValue,
    StrictBool,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import InitErrorDetails

from kubetrade.runner.domain import MAX_PRICE
from kubetrade.runner.spec.base import Model
from kubetrade.runner.spec.fields import (
    BarTime,
    CcxtExchangeId,
    FreeForm,
    HttpUrl,
    WebSocketUrl,
    fail,
    format_from_extension,
    problem,
    relocated,
)
from kubetrade.runner.spec.rules import BACKOFF_ORDERED, REPLAY_FORMAT_KNOWN

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

MarketDataProvider = Literal["replay", "synthetic", "binance", "polygon"]
TradingProvider = Literal[
    "paper", "binance-paper", "binance-live", "ibkr-paper", "ibkr-live", "ccxt"
]
# Bounds on numbers, so that no figure can overflow the arithmetic that uses it (a price
# times a quantity, a wait times a factor) or wrap a C integer; generous beyond any use.
MAX_MONEY: Final = 1e15  # cash, notional, loss limits
MAX_SPEED: Final = 1e6  # replay speed-up
MAX_WAIT_SECONDS: Final = 86_400.0  # any wait or timeout: a day

# Providers that trade real money by their nature, whatever their config says.
LIVE_PROVIDERS: Final = frozenset({"binance-live", "ibkr-live"})


class ReplayConfig(Model):
    """Replays recorded OHLCV bars from a file."""

    rules = (REPLAY_FORMAT_KNOWN,)

    path: str = Field(
        min_length=1,
        description="CSV or Parquet file of OHLCV bars; a relative path is relative to the"
        " session file.",
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto", description="File format; auto picks it from the extension."
    )
    speed: float = Field(
        default=0.0,
        ge=0,
        le=MAX_SPEED,
        description="0 replays as fast as possible; N replays at N times real time.",
    )
    loop: StrictBool = Field(
        default=False, description="Start over from the first bar after the last one."
    )

    @property
    def resolved_format(self) -> Literal["csv", "parquet"]:
        """The file format, with auto resolved from the extension."""
        if self.format != "auto":
            return self.format
        resolved = format_from_extension(self.path)
        if resolved is None:  # refused at validation; reachable only through model_copy
            raise ValueError(f"cannot tell the format of {self.path!r} from its extension")
        return resolved


class SyntheticConfig(Model):
    """Generates a deterministic random walk (geometric Brownian motion) of bars."""

    seed: int = Field(
        default=1,
        ge=-(2**63),
        le=2**63 - 1,
        description="Random seed; the same seed gives the same bars.",
    )
    start_price: float = Field(
        default=100.0, gt=0, le=MAX_PRICE, description="Close price of the bar before the first."
    )
    volatility: float = Field(
        default=0.002, ge=0, le=1, description="Standard deviation of the per-bar log return."
    )
    drift: float = Field(default=0.0, ge=-1, le=1, description="Mean of the per-bar log return.")
    bars: int | None = Field(
        default=None,
        ge=1,
        le=10**9,
        description="Number of bars to generate; null generates without end.",
    )
    start_time: BarTime = Field(
        default=datetime(2024, 1, 1, tzinfo=UTC),
        description="Open time of the first bar, RFC 3339 with a time zone.",
    )
    speed: float = Field(
        default=0.0,
        ge=0,
        le=MAX_SPEED,
        description="0 emits as fast as possible; N emits at N times real time.",
    )


class BackoffConfig(Model):
    """Reconnection settings shared by the streaming providers."""

    rules = (BACKOFF_ORDERED,)

    max_retries: int = Field(
        default=10,
        ge=0,
        le=1_000_000,
        description="Reconnection attempts before giving up; 0 means no retries.",
    )
    initial_backoff: float = Field(
        default=1.0,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds to wait before the first reconnection attempt.",
    )
    max_backoff: float = Field(
        default=60.0,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="Longest wait between attempts, seconds.",
    )
    backoff_factor: float = Field(
        default=2.0, ge=1, le=100, description="Each wait is the previous one times this factor."
    )


class BinanceMarketDataConfig(BackoffConfig):
    """Streams closed klines from Binance's websocket, backfilling gaps over REST."""

    use_testnet: StrictBool = Field(default=False, description="Use Binance's testnet endpoints.")
    ws_url: WebSocketUrl = Field(
        default=None, description="Websocket base URL; null uses Binance's."
    )
    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses Binance's.")


class PolygonConfig(BackoffConfig):
    """Streams aggregate bars from Polygon.io's websocket, backfilling gaps over REST."""

    ws_url: WebSocketUrl = Field(
        default=None, description="Websocket base URL; null uses Polygon's."
    )
    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses Polygon's.")
    feed: Literal["delayed", "realtime"] = Field(
        default="realtime", description="Polygon feed; your plan decides which you may use."
    )
    market: Literal["stocks"] = Field(default="stocks", description="Polygon market.")


class PaperConfig(Model):
    """Simulated fills against the session's bars; no venue involved."""

    initial_cash: float = Field(
        default=10_000.0, gt=0, le=MAX_MONEY, description="Starting cash balance."
    )
    currency: str = Field(default="USD", min_length=1, description="Currency of the cash balance.")
    fee_bps: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="Fee in basis points of notional, for feeModel percentage.",
    )
    slippage_bps: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="Adverse price slippage in basis points applied to each fill.",
    )
    fee_model: Literal["percentage", "perShare", "zero"] = Field(
        default="percentage", description="How fees are charged."
    )
    fee_per_share: float = Field(
        default=0.005, ge=0, le=MAX_PRICE, description="Fee per unit traded, for feeModel perShare."
    )
    min_fee_per_order: float = Field(
        default=1.0, ge=0, le=MAX_MONEY, description="Minimum fee per order, for feeModel perShare."
    )
    fill_price: Literal["close", "midpoint", "nextOpen"] = Field(
        default="close",
        description="Price a market order fills at, before slippage: close (the close of the"
        " bar it was placed on), midpoint ((high + low) / 2 of that bar, as argo-trading's"
        " backtest fills) or nextOpen (the open of the symbol's next bar).",
    )


class BinanceTradingConfig(Model):
    """Trades on Binance spot (binance-paper: the testnet; binance-live: real money)."""

    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses Binance's.")
    recv_window_ms: int = Field(
        default=5000, ge=1, le=60_000, description="How long a signed request stays valid, ms."
    )
    quote_asset: str = Field(
        default="USDT", min_length=1, description="Asset that cash balances are counted in."
    )


class IbkrConfig(Model):
    """Trades through Interactive Brokers' TWS or IB Gateway (paper account)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="TWS / IB Gateway host.")
    port: int = Field(
        default=7497, ge=1, le=65_535, description="TWS / IB Gateway API port (7497: paper TWS)."
    )
    client_id: int = Field(
        default=1, ge=0, le=2**31 - 1, description="API client id, unique per connection."
    )
    account: str | None = Field(
        default=None, description="Account to trade; null uses the only managed account."
    )
    exchange: str = Field(default="SMART", min_length=1, description="Routing exchange for orders.")
    currency: str = Field(
        default="USD", min_length=1, description="Currency of the traded contracts."
    )
    connect_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds to wait for the API handshake.",
    )


class IbkrLiveConfig(IbkrConfig):
    """Trades through Interactive Brokers' TWS or IB Gateway (live account: real money)."""

    port: int = Field(
        default=7496, ge=1, le=65_535, description="TWS / IB Gateway API port (7496: live TWS)."
    )


class CcxtConfig(Model):
    """Trades on any exchange the ccxt library supports."""

    exchange: CcxtExchangeId = Field(description="ccxt exchange id, e.g. binance, kraken, okx.")
    sandbox: StrictBool = Field(
        default=True, description="Use the exchange's sandbox; false trades real money."
    )
    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses the exchange's.")
    options: FreeForm = Field(
        default_factory=dict, description="Passed to the ccxt exchange's options."
    )


MarketDataConfig = ReplayConfig | SyntheticConfig | BinanceMarketDataConfig | PolygonConfig
TradingConfig = PaperConfig | BinanceTradingConfig | IbkrConfig | CcxtConfig

MARKET_DATA_CONFIGS: Final[Mapping[MarketDataProvider, type[MarketDataConfig]]] = {
    "replay": ReplayConfig,
    "synthetic": SyntheticConfig,
    "binance": BinanceMarketDataConfig,
    "polygon": PolygonConfig,
}
TRADING_CONFIGS: Final[Mapping[TradingProvider, type[TradingConfig]]] = {
    "paper": PaperConfig,
    "binance-paper": BinanceTradingConfig,
    "binance-live": BinanceTradingConfig,
    "ibkr-paper": IbkrConfig,
    "ibkr-live": IbkrLiveConfig,
    "ccxt": CcxtConfig,
}

# Normalized (lowercase, alphanumerics only) key fragments that name a credential.
_CREDENTIAL_WORDS: Final = (
    "apikey",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "token",
    "privatekey",
    "credential",
)
_CREDENTIAL_KEYS: Final = frozenset({"key", "auth", "authorization"})


def looks_like_credential(key: str) -> bool:
    """Whether a config key names a credential (apiKey, secret, password, token, ...)."""
    folded = re.sub(r"[^a-z0-9]", "", key.lower())
    return folded in _CREDENTIAL_KEYS or any(word in folded for word in _CREDENTIAL_WORDS)


def _credential_problems(
    value: object, loc: tuple[str | int, ...], owner: str
) -> Iterator[InitErrorDetails]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and looks_like_credential(key):
                yield problem(
                    (*loc, key),
                    "credential_in_config",
                    f"{key!r} looks like a credential, and credentials never go in a session"
                    " (it is stored in clear, in a ConfigMap and in etcd); put it in a"
                    f" Kubernetes Secret named by {owner}.credentialsSecretRef, or in an"
                    " environment variable for local runs: see the README's Credentials section",
                    key,
                )
            else:
                yield from _credential_problems(item, (*loc, key), owner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _credential_problems(item, (*loc, index), owner)


_C = TypeVar("_C", bound=BaseModel)


def _parseprovider_config(model: type[_C], config: dict[str, JsonValue], owner: str) -> None:
    """Validate `config` against `model`, reporting credentials first (and never echoing them)."""
    problems = list(_credential_problems(config, (), owner))
    rest = {key: value for key, value in config.items() if not looks_like_credential(key)}
    try:
        model.model_validate(rest)
    except ValidationError as exc:
        problems.extend(relocated(error) for error in exc.errors())
    if problems:
        raise fail(model.__name__, problems)


def provider_config(
    configs: Mapping[Any, type[Model]],  # keyed by the provider Literal
    config: dict[str, JsonValue],
    info: ValidationInfo,
    owner: str,
) -> dict[str, JsonValue]:
    """Check `config` against the model its sibling `provider` selects."""
    provider = info.data.get("provider")  # absent when the provider itself is invalid
    if provider is not None:
        _parseprovider_config(configs[provider], config, owner)
    return config
