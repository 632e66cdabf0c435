"""The LiveTradingSession document: the single source of truth for a session.

One YAML document serves both `kubetrade run session.yaml` on a laptop and
`kubectl apply -f session.yaml` in a cluster, so these models are written for
both. Keys are camelCase and read by that name only, as the API server reads
them (the Python attributes are their snake_case twins); every field carries
its default and a description, because the CRD is generated from
`json_schema()`; unknown keys are errors everywhere except in `metadata`, which
belongs to Kubernetes, and in the free-form `config` objects.

Build models from documents: `LiveTradingSession.model_validate(doc)`, or
`kubetrade.runner.session_file` for files and command-line flags.

The checks come in three kinds:
- single-field formats (names, symbols, digests, quantities), which the schema
  also carries as `pattern`s so the API server enforces them too;
- provider configs: `config` stays a free-form object in the schema, is
  validated against the model its `provider` selects, and `parsed()` returns
  that model;
- cross-field rules, all in the "Cross-field rules" section, each scoped to the
  one object it reads so it can be mirrored as an x-kubernetes-validations
  (CEL) rule on that object.

Secrets never live here: there is no credential field anywhere, and a provider
config that holds one is refused.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Final,
    Generic,
    Literal,
    Self,
    TypeVar,
)

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from kubetrade.runner.domain import interval_ms

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

GROUP: Final = "kubetrade.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "kubetrade.io/v1alpha1"
KIND: Final = "LiveTradingSession"

Interval = Literal[
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w"
]
MarketDataProvider = Literal["replay", "synthetic", "binance", "polygon"]
TradingProvider = Literal[
    "paper", "binance-paper", "binance-live", "ibkr-paper", "ibkr-live", "ccxt"
]

# ------------------------------------------------------------------ error plumbing
# Every check raises a ValidationError located at the offending key, so a user
# reads `spec.trading.confirmLive: ...` rather than the path of the object that
# happened to run the check.


def _problem(
    loc: tuple[str | int, ...], kind: str, message: str, value: object
) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)


def _relocated(error: ErrorDetails) -> InitErrorDetails:
    """The same error, rebuilt so that it can be raised again with others."""
    loc = error["loc"]
    if "url" in error:  # pydantic documents its own error types; ours have no url
        # Keep pydantic's own type so formatters can still tell its errors from ours.
        detail = InitErrorDetails(type=error["type"], loc=loc, input=error["input"])
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        return detail
    return _problem(loc, error["type"], error["msg"], error["input"])


def _fail(title: str, problems: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(title, problems)


# ---------------------------------------------------------------- field formats
# Each format is checked by a function with a message saying how to fix it; the
# same pattern goes into the schema so the API server refuses what we refuse.

_DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SYMBOL: Final = r"^[A-Za-z0-9._:/-]{1,32}$"
_CONFIG_MAP_KEY: Final = r"^[-._a-zA-Z0-9]+$"
_OCI_PINNED: Final = r"^[^\s@]+@sha256:[a-f0-9]{64}$"
_CCXT_EXCHANGE: Final = r"^[a-z][a-z0-9_]*$"
# The serialized form of a Kubernetes resource.Quantity (as controller-gen emits it).
_QUANTITY: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not re.fullmatch(_DNS_LABEL, value):
        raise PydanticCustomError(
            "dns_label",
            f"{value!r} is not a valid name: use at most 63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit (e.g. 'sma-demo')",
        )
    return value


def _check_dns_subdomain(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, value):
        raise PydanticCustomError(
            "dns_subdomain",
            f"{value!r} is not a valid Kubernetes object name: use lowercase letters, digits,"
            " '-' and '.', starting and ending with a letter or digit",
        )
    return value


def _check_symbol(value: str) -> str:
    if not re.fullmatch(_SYMBOL, value):
        raise PydanticCustomError(
            "symbol",
            f"{value!r} is not a valid symbol: use 1 to 32 characters from A-Z a-z 0-9 . _ : / -",
        )
    return value


def _check_config_map_key(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_CONFIG_MAP_KEY, value):
        raise PydanticCustomError(
            "config_map_key",
            f"{value!r} is not a valid ConfigMap key: use letters, digits, '-', '_' and '.'",
        )
    return value


def _check_oci_pinned(value: str) -> str:
    if re.fullmatch(_OCI_PINNED, value):
        return value
    if "@" not in value:
        raise PydanticCustomError(
            "oci_not_pinned",
            f"{value!r} is not pinned by digest; a tag can move under a running session, so pin"
            " the image by digest: <repository>@sha256:<64 hex digits>"
            " (`crane digest <image>` or `oras resolve <image>` prints it)",
        )
    raise PydanticCustomError(
        "oci_bad_digest",
        f"{value!r} has a malformed digest; pin by digest as <repository>@sha256:<64 lowercase"
        " hex digits>",
    )


def _int_quantity_to_str(value: object) -> object:
    # Kubernetes quantities are int-or-string: `cpu: 1` is as valid as `cpu: "1"`.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise PydanticCustomError(
            "quantity_float",
            f'{value!r} must be written as a string or an integer, e.g. "500m" or "0.5"',
        )
    return value


def _check_quantity(value: str) -> str:
    if not re.fullmatch(_QUANTITY, value):
        raise PydanticCustomError(
            "quantity",
            f"{value!r} is not a Kubernetes quantity: use a number with an optional suffix,"
            " e.g. 500m, 2, 256Mi, 1Gi",
        )
    return value


def _check_url(*schemes: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None and not value.startswith(tuple(f"{s}://" for s in schemes)):
            wanted = " or ".join(f"{s}://" for s in schemes)
            raise PydanticCustomError("url_wrong_scheme", f"{value!r} must start with {wanted}")
        return value

    return check


WebSocketUrl = Annotated[str | None, AfterValidator(_check_url("ws", "wss"))]
HttpUrl = Annotated[str | None, AfterValidator(_check_url("http", "https"))]


def _check_ccxt_exchange(value: str) -> str:
    if not re.fullmatch(_CCXT_EXCHANGE, value):
        raise PydanticCustomError(
            "ccxt_exchange",
            f"{value!r} is not a ccxt exchange id: ids are lowercase, e.g. binance, kraken, okx",
        )
    return value


CcxtExchangeId = Annotated[
    str,
    AfterValidator(_check_ccxt_exchange),
    WithJsonSchema({"type": "string", "pattern": _CCXT_EXCHANGE}),
]


DnsLabel = Annotated[
    str,
    AfterValidator(_check_dns_label),
    WithJsonSchema({"type": "string", "pattern": _DNS_LABEL, "maxLength": 63}),
]
DnsSubdomain = Annotated[
    str,
    AfterValidator(_check_dns_subdomain),
    WithJsonSchema({"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253}),
]
Symbol = Annotated[
    str,
    AfterValidator(_check_symbol),
    WithJsonSchema({"type": "string", "pattern": _SYMBOL, "maxLength": 32}),
]
ConfigMapKey = Annotated[
    str,
    AfterValidator(_check_config_map_key),
    WithJsonSchema({"type": "string", "pattern": _CONFIG_MAP_KEY, "maxLength": 253}),
]
OciReference = Annotated[
    str,
    AfterValidator(_check_oci_pinned),
    WithJsonSchema({"type": "string", "pattern": _OCI_PINNED}),
]
Quantity = Annotated[
    str,
    BeforeValidator(_int_quantity_to_str),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": _QUANTITY}],
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _none_to_empty(value: object) -> object:
    # `config:` with nothing after it is YAML for null; the API server drops such nulls
    # and applies the default, so do the same here.
    return {} if value is None else value


# Any JSON object. The CRD keeps it as is; its content is checked elsewhere, if at all.
FreeForm = Annotated[
    dict[str, JsonValue],
    BeforeValidator(_none_to_empty),
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

# ------------------------------------------------------------- cross-field rules
# Every rule that relates two or more fields lives here, as one small function
# over the object it reads: the rule's scope, its `self` when a later issue
# mirrors it as an x-kubernetes-validations CEL rule on that object. A violation
# is reported at `field` (relative to the scope; "" is the object itself). Each
# model lists its rules in `rules`; `_Model._check_rules` runs them.

_M = TypeVar("_M")


@dataclass(frozen=True, slots=True)
class Rule(Generic[_M]):
    """A rule relating fields of one object of the document."""

    name: str  # stable id, e.g. for the CEL mirror and for tests
    scope: str  # YAML path of the object the rule reads
    field: str  # where a violation is reported, relative to scope
    check: Callable[[_M], str | None]  # the problem and its fix, or None when the rule holds


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
    what = f"provider {trading.provider!r}"
    if trading.provider == "ccxt":
        what += " with config.sandbox: false"
    return f"{what} trades real money; set spec.trading.confirmLive: true to confirm"


def _warmup_within_cache(engine: EngineSpec) -> str | None:
    if engine.warmup_bars <= engine.market_data_cache_size:
        return None
    return (
        f"warmupBars ({engine.warmup_bars}) exceeds marketDataCacheSize"
        f" ({engine.market_data_cache_size}), so the cache cannot hold the warm-up window;"
        " lower spec.engine.warmupBars or raise spec.engine.marketDataCacheSize"
    )


def _replay_format_known(replay: ReplayConfig) -> str | None:
    if replay.format != "auto" or _format_from_extension(replay.path) is not None:
        return None
    return (
        f"cannot tell the format of {replay.path!r} from its extension (.csv, .parquet or .pq);"
        " set format: csv or format: parquet"
    )


def _backoff_ordered(config: _Backoff) -> str | None:
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
WARMUP_WITHIN_CACHE: Final[Rule[EngineSpec]] = Rule(
    "warmup-within-cache", "spec.engine", "warmupBars", _warmup_within_cache
)
REPLAY_FORMAT_KNOWN: Final[Rule[ReplayConfig]] = Rule(
    "replay-format-known", "spec.marketData.config", "format", _replay_format_known
)
BACKOFF_ORDERED: Final[Rule[_Backoff]] = Rule(
    "backoff-ordered", "spec.marketData.config", "maxBackoff", _backoff_ordered
)
CROSS_FIELD_RULES: Final[tuple[Rule[Any], ...]] = (
    ONE_STRATEGY_SOURCE,
    LIVE_TRADING_CONFIRMED,
    WARMUP_WITHIN_CACHE,
    REPLAY_FORMAT_KNOWN,
    BACKOFF_ORDERED,
)

# -------------------------------------------------------------------- the base


class _Model(BaseModel):
    """Base of every object in the document: camelCase keys, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,  # a document that loads here must load in the API server
        serialize_by_alias=True,
        extra="forbid",
    )

    rules: ClassVar[tuple[Rule[Any], ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _name_unknown_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Pydantic only says "Extra inputs are not permitted"; someone with a typo needs
        # the key, the likely intended one, and the keys that are allowed.
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(_is_unknown_key(error) for error in errors):
                raise
            problems = [
                cls._unknown_key(error) if _is_unknown_key(error) else _relocated(error)
                for error in errors
            ]
            raise _fail(cls.__name__, problems) from None

    @classmethod
    def _unknown_key(cls, error: ErrorDetails) -> InitErrorDetails:
        key = str(error["loc"][0])
        allowed = [field.alias or name for name, field in cls.model_fields.items()]
        guess = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        # The key, not its value, goes in the error: the value may be a secret.
        return _problem(
            error["loc"],
            "unknown_key",
            f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}",
            key,
        )

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        problems = [
            _problem((rule.field,) if rule.field else (), rule.name, message, self)
            for rule in self.rules
            if (message := rule.check(self)) is not None
        ]
        if problems:
            raise _fail(type(self).__name__, problems)
        return self


def _is_unknown_key(error: ErrorDetails) -> bool:
    # Only this object's own keys: nested objects have already renamed theirs.
    return error["type"] == "extra_forbidden" and len(error["loc"]) == 1


# ---------------------------------------------------- market data provider configs


def _format_from_extension(path: str) -> Literal["csv", "parquet"] | None:
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".parquet", ".pq")):
        return "parquet"
    return None


class ReplayConfig(_Model):
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
        description="0 replays as fast as possible; N replays at N times real time.",
    )
    loop: bool = Field(
        default=False, description="Start over from the first bar after the last one."
    )

    @property
    def resolved_format(self) -> Literal["csv", "parquet"]:
        """The file format, with auto resolved from the extension."""
        if self.format != "auto":
            return self.format
        resolved = _format_from_extension(self.path)
        if resolved is None:  # refused at validation; reachable only through model_copy
            raise ValueError(f"cannot tell the format of {self.path!r} from its extension")
        return resolved


class SyntheticConfig(_Model):
    """Generates a deterministic random walk (geometric Brownian motion) of bars."""

    seed: int = Field(default=1, description="Random seed; the same seed gives the same bars.")
    start_price: float = Field(
        default=100.0, gt=0, description="Close price of the bar before the first."
    )
    volatility: float = Field(
        default=0.002, ge=0, description="Standard deviation of the per-bar log return."
    )
    drift: float = Field(default=0.0, description="Mean of the per-bar log return.")
    bars: int | None = Field(
        default=None, ge=1, description="Number of bars to generate; null generates without end."
    )
    start_time: AwareDatetime = Field(
        default=datetime(2024, 1, 1, tzinfo=UTC),
        description="Open time of the first bar, RFC 3339 with a time zone.",
    )
    speed: float = Field(
        default=0.0, ge=0, description="0 emits as fast as possible; N emits at N times real time."
    )


class _Backoff(_Model):
    """Reconnection settings shared by the streaming providers."""

    rules = (BACKOFF_ORDERED,)

    max_retries: int = Field(
        default=10, ge=0, description="Reconnection attempts before giving up; 0 means no retries."
    )
    initial_backoff: float = Field(
        default=1.0, gt=0, description="Seconds to wait before the first reconnection attempt."
    )
    max_backoff: float = Field(
        default=60.0, gt=0, description="Longest wait between attempts, seconds."
    )
    backoff_factor: float = Field(
        default=2.0, ge=1, description="Each wait is the previous one times this factor."
    )


class BinanceMarketDataConfig(_Backoff):
    """Streams closed klines from Binance's websocket, backfilling gaps over REST."""

    use_testnet: bool = Field(default=False, description="Use Binance's testnet endpoints.")
    ws_url: WebSocketUrl = Field(
        default=None, description="Websocket base URL; null uses Binance's."
    )
    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses Binance's.")


class PolygonConfig(_Backoff):
    """Streams aggregate bars from Polygon.io's websocket, backfilling gaps over REST."""

    ws_url: WebSocketUrl = Field(
        default=None, description="Websocket base URL; null uses Polygon's."
    )
    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses Polygon's.")
    feed: Literal["delayed", "realtime"] = Field(
        default="realtime", description="Polygon feed; your plan decides which you may use."
    )
    market: Literal["stocks"] = Field(default="stocks", description="Polygon market.")


# -------------------------------------------------------- trading provider configs


class PaperConfig(_Model):
    """Simulated fills at the bar's close price; no venue involved."""

    initial_cash: float = Field(default=10_000.0, gt=0, description="Starting cash balance.")
    currency: str = Field(default="USD", min_length=1, description="Currency of the cash balance.")
    fee_bps: float = Field(
        default=0.0, ge=0, description="Fee in basis points of notional, for feeModel percentage."
    )
    slippage_bps: float = Field(
        default=0.0,
        ge=0,
        description="Adverse price slippage in basis points applied to each fill.",
    )
    fee_model: Literal["percentage", "perShare", "zero"] = Field(
        default="percentage", description="How fees are charged."
    )
    fee_per_share: float = Field(
        default=0.005, ge=0, description="Fee per unit traded, for feeModel perShare."
    )
    min_fee_per_order: float = Field(
        default=1.0, ge=0, description="Minimum fee per order, for feeModel perShare."
    )


class BinanceTradingConfig(_Model):
    """Trades on Binance spot (binance-paper: the testnet; binance-live: real money)."""

    rest_url: HttpUrl = Field(default=None, description="REST base URL; null uses Binance's.")
    recv_window_ms: int = Field(
        default=5000, ge=1, le=60_000, description="How long a signed request stays valid, ms."
    )
    quote_asset: str = Field(
        default="USDT", min_length=1, description="Asset that cash balances are counted in."
    )


class IbkrConfig(_Model):
    """Trades through Interactive Brokers' TWS or IB Gateway (paper account)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="TWS / IB Gateway host.")
    port: int = Field(
        default=7497, ge=1, le=65_535, description="TWS / IB Gateway API port (7497: paper TWS)."
    )
    client_id: int = Field(default=1, ge=0, description="API client id, unique per connection.")
    account: str | None = Field(
        default=None, description="Account to trade; null uses the only managed account."
    )
    exchange: str = Field(default="SMART", min_length=1, description="Routing exchange for orders.")
    currency: str = Field(
        default="USD", min_length=1, description="Currency of the traded contracts."
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Seconds to wait for the API handshake."
    )


class IbkrLiveConfig(IbkrConfig):
    """Trades through Interactive Brokers' TWS or IB Gateway (live account: real money)."""

    port: int = Field(
        default=7496, ge=1, le=65_535, description="TWS / IB Gateway API port (7496: live TWS)."
    )


class CcxtConfig(_Model):
    """Trades on any exchange the ccxt library supports."""

    exchange: CcxtExchangeId = Field(description="ccxt exchange id, e.g. binance, kraken, okx.")
    sandbox: bool = Field(
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
                yield _problem(
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


def _parse_provider_config(model: type[_C], config: dict[str, JsonValue], owner: str) -> None:
    """Validate `config` against `model`, reporting credentials first (and never echoing them)."""
    problems = list(_credential_problems(config, (), owner))
    rest = {key: value for key, value in config.items() if not looks_like_credential(key)}
    try:
        model.model_validate(rest)
    except ValidationError as exc:
        problems.extend(_relocated(error) for error in exc.errors())
    if problems:
        raise _fail(model.__name__, problems)


def _provider_config(
    configs: Mapping[Any, type[_Model]],  # keyed by the provider Literal
    config: dict[str, JsonValue],
    info: ValidationInfo,
    owner: str,
) -> dict[str, JsonValue]:
    """Check `config` against the model its sibling `provider` selects."""
    provider = info.data.get("provider")  # absent when the provider itself is invalid
    if provider is not None:
        _parse_provider_config(configs[provider], config, owner)
    return config


# ---------------------------------------------------------------- the document


class SecretRef(_Model):
    """A Kubernetes Secret in the session's namespace, mounted into the runner as files."""

    name: DnsSubdomain = Field(description="Name of the Secret.")


class ConfigMapKeyRef(_Model):
    """A key of a Kubernetes ConfigMap in the session's namespace."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap.")
    key: ConfigMapKey = Field(
        default="strategy.wasm", description="Key holding the strategy's WebAssembly module."
    )


class OciArtifact(_Model):
    """A strategy published as an OCI artifact."""

    image: OciReference = Field(
        description="Artifact reference pinned by digest: <repository>@sha256:<64 hex digits>."
    )


class StrategySpec(_Model):
    """The WebAssembly strategy and its parameters. Set exactly one of path, configMapRef, oci."""

    rules = (ONE_STRATEGY_SOURCE,)

    path: str | None = Field(
        default=None,
        min_length=1,
        description="Local .wasm file, for local runs; a relative path is relative to the"
        " session file.",
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="ConfigMap key holding the .wasm, for runs in Kubernetes."
    )
    oci: OciArtifact | None = Field(
        default=None, description="OCI artifact holding the .wasm, pinned by digest."
    )
    config: FreeForm = Field(
        default_factory=dict,
        description="Free-form parameters, passed as JSON to the strategy's Initialize.",
    )


class MarketDataSpec(_Model):
    """Where closed bars come from."""

    provider: MarketDataProvider = Field(description="Market data provider.")
    config: FreeForm = Field(
        default_factory=dict,
        validate_default=True,  # an omitted config still has to suit the provider
        description="Provider settings, checked against the provider's own schema"
        " (replay: path, format, speed, loop; synthetic: seed, startPrice, volatility, drift,"
        " bars, startTime, speed; binance: useTestnet, wsUrl, restUrl and backoff;"
        " polygon: wsUrl, restUrl, feed, market and backoff). Never credentials.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with the provider's credentials (polygon needs an API key).",
    )

    @field_validator("config")
    @classmethod
    def _config_fits_provider(
        cls, config: dict[str, JsonValue], info: ValidationInfo
    ) -> dict[str, JsonValue]:
        return _provider_config(MARKET_DATA_CONFIGS, config, info, "spec.marketData")

    def parsed(self) -> MarketDataConfig:
        """`config` as the provider's model, defaults applied."""
        return MARKET_DATA_CONFIGS[self.provider].model_validate(self.config)


class TradingSpec(_Model):
    """Where orders go."""

    rules = (LIVE_TRADING_CONFIRMED,)

    provider: TradingProvider = Field(description="Broker provider.")
    config: FreeForm = Field(
        default_factory=dict,
        validate_default=True,  # an omitted config still has to suit the provider
        description="Provider settings, checked against the provider's own schema"
        " (paper: initialCash, currency, feeBps, slippageBps, feeModel, feePerShare,"
        " minFeePerOrder; binance-*: restUrl, recvWindowMs, quoteAsset; ibkr-*: host, port,"
        " clientId, account, exchange, currency, connectTimeoutSeconds; ccxt: exchange,"
        " sandbox, restUrl, options). Never credentials.",
    )
    confirm_live: bool = Field(
        default=False,
        description="Must be true for a provider that trades real money (binance-live,"
        " ibkr-live, ccxt with sandbox false).",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with the broker's credentials (binance-* and ccxt need one).",
    )

    @field_validator("config")
    @classmethod
    def _config_fits_provider(
        cls, config: dict[str, JsonValue], info: ValidationInfo
    ) -> dict[str, JsonValue]:
        return _provider_config(TRADING_CONFIGS, config, info, "spec.trading")

    def parsed(self) -> TradingConfig:
        """`config` as the provider's model, defaults applied."""
        return TRADING_CONFIGS[self.provider].model_validate(self.config)

    @property
    def is_live(self) -> bool:
        """Whether this provider trades real money."""
        if self.provider in ("binance-live", "ibkr-live"):
            return True
        if self.provider == "ccxt":
            config = self.parsed()
            return isinstance(config, CcxtConfig) and not config.sandbox
        return False


class RiskSpec(_Model):
    """Pre-trade limits that no strategy can bypass. null means no limit."""

    max_order_notional: float | None = Field(
        default=None, gt=0, description="Largest notional (quantity x price) of one order."
    )
    max_position_notional: float | None = Field(
        default=None, gt=0, description="Largest notional of the position in one symbol."
    )
    max_orders_per_minute: int | None = Field(
        default=None, gt=0, description="Most orders placed in any minute of bar time."
    )
    max_daily_loss: float | None = Field(
        default=None,
        gt=0,
        description="Loss within one UTC day after which new orders are refused.",
    )
    allow_short: bool = Field(default=False, description="Allow selling more than is held.")


class EngineSpec(_Model):
    """How the engine runs the strategy."""

    rules = (WARMUP_WITHIN_CACHE,)

    market_data_cache_size: int = Field(
        default=1000, ge=10, description="Bars kept per symbol for the strategy's lookbacks."
    )
    decimal_precision: int = Field(
        default=8, ge=0, le=12, description="Decimal places that order quantities are rounded to."
    )
    warmup_bars: int = Field(
        default=0,
        ge=0,
        description="Bars fed to the cache before the strategy is called; at most"
        " marketDataCacheSize.",
    )
    strategy_call_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Longest one strategy call may run before it is interrupted."
    )
    strategy_memory_limit_mib: int = Field(
        default=256,
        ge=16,
        alias="strategyMemoryLimitMiB",
        description="Most memory the strategy's WebAssembly instance may use, MiB.",
    )
    max_consecutive_strategy_errors: int = Field(
        default=0,
        ge=0,
        description="Stop the session after this many strategy errors in a row; 0 never stops.",
    )


class ResourcesSpec(_Model):
    """Compute resources of the runner container, as Kubernetes quantities."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Resource requests, e.g. cpu: 100m, memory: 256Mi."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Resource limits, e.g. memory: 512Mi."
    )


class SessionSpec(_Model):
    """What to trade, with which strategy, where the data comes from and where orders go."""

    symbols: list[Symbol] = Field(
        min_length=1,
        description="Symbols to trade, each listed once.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    interval: Interval = Field(default="1m", description="Bar interval.")
    strategy: StrategySpec = Field(description="The WebAssembly strategy.")
    market_data: MarketDataSpec = Field(description="The market data provider and its settings.")
    trading: TradingSpec = Field(description="The broker provider and its settings.")
    risk: RiskSpec = Field(default_factory=RiskSpec, description="Pre-trade limits.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="Engine settings.")
    suspend: bool = Field(
        default=False, description="Stop the runner and keep the session's state."
    )
    restart_nonce: str = Field(
        default="", description="Change to any new value to restart the runner."
    )
    resources: ResourcesSpec | None = Field(
        default=None, description="Runner container resources; null uses the operator's defaults."
    )
    metrics_port: int = Field(
        default=9102,
        ge=1,
        le=65_535,
        description="Port serving /metrics, /healthz, /readyz, /status.",
    )

    @field_validator("symbols")
    @classmethod
    def _symbols_unique(cls, symbols: list[str]) -> list[str]:
        first: dict[str, int] = {}
        problems = []
        for index, symbol in enumerate(symbols):
            if symbol in first:
                problems.append(
                    _problem(
                        (index,),
                        "duplicate_symbol",
                        f"{symbol!r} is already listed at spec.symbols[{first[symbol]}];"
                        " list each symbol once",
                        symbol,
                    )
                )
            first.setdefault(symbol, index)
        if problems:
            raise _fail("symbols", problems)
        return symbols

    @property
    def is_live(self) -> bool:
        """Whether the session trades real money."""
        return self.trading.is_live

    @property
    def interval_ms(self) -> int:
        """The bar interval in milliseconds."""
        return interval_ms(self.interval)


class ObjectMeta(_Model):
    """Kubernetes object metadata; keys other than these pass through untouched."""

    model_config = ConfigDict(extra="allow")

    name: DnsLabel = Field(description="Session name, a DNS-1123 label.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace; null means the current one."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Kubernetes annotations.")


class LiveTradingSession(_Model):
    """A trading strategy running live: the kubetrade.io/v1alpha1 LiveTradingSession."""

    api_version: Literal["kubetrade.io/v1alpha1"] = Field(description="Always " + API_VERSION)
    kind: Literal["LiveTradingSession"] = Field(description="Always " + KIND)
    metadata: ObjectMeta = Field(description="Kubernetes object metadata.")
    spec: SessionSpec = Field(description="The session.")

    @model_validator(mode="before")
    @classmethod
    def _ignore_status(cls, data: Any) -> Any:
        # `kubectl get -o yaml` output carries the status the operator wrote; it is
        # output, never input, so it is dropped rather than refused.
        if isinstance(data, dict) and "status" in data:
            return {key: value for key, value in data.items() if key != "status"}
        return data


class _DocumentSchema(GenerateJsonSchema):
    # Field titles are the Python names title-cased ("Fastperiod"): noise in CRD docs.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    """The JSON schema of a whole LiveTradingSession document (camelCase keys)."""
    schema = LiveTradingSession.model_json_schema(by_alias=True, schema_generator=_DocumentSchema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
