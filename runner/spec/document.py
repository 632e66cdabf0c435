"""The LiveTradingSession document and its JSON schema."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import (
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema

from kubetrade.runner.domain import interval_ms
from kubetrade.runner.spec.base import Model
from kubetrade.runner.spec.fields import (
    ConfigMapKey,
    DnsLabel,
    DnsSubdomain,
    FreeForm,
    OciReference,
    Quantity,
    Symbol,
    fail,
    problem,
)
from kubetrade.runner.spec.providers import (
    LIVE_PROVIDERS,
    MARKET_DATA_CONFIGS,
    MAX_MONEY,
    TRADING_CONFIGS,
    BinanceTradingConfig,
    CcxtConfig,
    IbkrConfig,
    MarketDataConfig,
    MarketDataProvider,
    TradingConfig,
    TradingProvider,
    provider_config,
)
from kubetrade.runner.spec.rules import (
    LIVE_STRATEGY_PINNED,
    LIVE_TRADING_CONFIRMED,
    ONE_STRATEGY_SOURCE,
    WARMUP_WITHIN_CACHE,
)
from kubetrade.runner.spec.venues import LiveRoute, paper_live_routes

GROUP: Final = "kubetrade.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "kubetrade.io/v1alpha1"
KIND: Final = "LiveTradingSession"

Interval = Literal[
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w"
]


class SecretRef(Model):
    """A Kubernetes Secret in the session's namespace, mounted into the runner as files."""

    name: DnsSubdomain = Field(description="Name of the Secret.")


class ConfigMapKeyRef(Model):
    """A key of a Kubernetes ConfigMap in the session's namespace."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap.")
    key: ConfigMapKey = Field(
        default="strategy.wasm", description="Key holding the strategy's WebAssembly module."
    )


class OciArtifact(Model):
    """A strategy published as an OCI artifact (`kubetrade strategy push`)."""

    reference: OciReference = Field(
        description="<registry>/<repository>:<tag> or ...@sha256:<digest>. In Kubernetes the"
        " operator resolves a tag to its digest once per spec change and the runner loads"
        " exactly that digest; a session that can trade real money must pin a digest.",
    )
    pull_secret_ref: SecretRef | None = Field(
        default=None,
        description="A kubernetes.io/dockerconfigjson Secret with the registry's login; locally"
        " the docker config file (~/.docker/config.json or --registry-config) is used.",
    )


class StrategySpec(Model):
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


class MarketDataSpec(Model):
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
        return provider_config(MARKET_DATA_CONFIGS, config, info, "spec.marketData")

    def parsed(self) -> MarketDataConfig:
        """`config` as the provider's model, defaults applied."""
        return MARKET_DATA_CONFIGS[self.provider].model_validate(self.config)


class TradingSpec(Model):
    """Where orders go."""

    rules = (LIVE_TRADING_CONFIRMED,)

    provider: TradingProvider = Field(description="Broker provider.")
    config: FreeForm = Field(
        default_factory=dict,
        validate_default=True,  # an omitted config still has to suit the provider
        description="Provider settings, checked against the provider's own schema"
        " (paper: initialCash, currency, feeBps, slippageBps, feeModel, feePerShare,"
        " minFeePerOrder, fillPrice; binance-*: restUrl, recvWindowMs, quoteAsset; ibkr-*:"
        " host, port, clientId, account, exchange, currency, connectTimeoutSeconds; ccxt:"
        " exchange, sandbox, restUrl, options). Never credentials.",
    )
    confirm_live: StrictBool = Field(
        default=False,
        description="Must be true for a session that can reach real money: binance-live,"
        " ibkr-live, ccxt with sandbox false, and a paper provider whose restUrl, ccxt"
        " options URL or hostname leads anywhere but its testnet or a loopback, localhost,"
        " *.localhost or *.test host, or whose IB port is a live one (7496, 4001).",
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
        return provider_config(TRADING_CONFIGS, config, info, "spec.trading")

    def parsed(self) -> TradingConfig:
        """`config` as the provider's model, defaults applied."""
        return TRADING_CONFIGS[self.provider].model_validate(self.config)

    @property
    def live_routes(self) -> list[LiveRoute]:
        """Settings by which a paper provider would reach a live venue (see spec.venues)."""
        if self.provider in LIVE_PROVIDERS:
            return []
        config = self.parsed()
        if isinstance(config, BinanceTradingConfig):
            return paper_live_routes(self.provider, rest_url=config.rest_url)
        if isinstance(config, CcxtConfig) and config.sandbox:
            return paper_live_routes(
                self.provider, rest_url=config.rest_url, options=config.options
            )
        if isinstance(config, IbkrConfig):
            return paper_live_routes(self.provider, port=config.port)
        return []

    @property
    def is_live(self) -> bool:
        """Whether any route of this session reaches real money."""
        if self.provider in LIVE_PROVIDERS:
            return True
        config = self.parsed()
        if isinstance(config, CcxtConfig) and not config.sandbox:
            return True
        return bool(self.live_routes)


class RiskSpec(Model):
    """Pre-trade limits that no strategy can bypass. null means no limit."""

    max_order_notional: float | None = Field(
        default=None,
        gt=0,
        le=MAX_MONEY,
        description="Largest notional (quantity x price) of one order.",
    )
    max_position_notional: float | None = Field(
        default=None,
        gt=0,
        le=MAX_MONEY,
        description="Largest notional of the position in one symbol.",
    )
    max_orders_per_minute: int | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Most orders placed in any minute of bar time.",
    )
    max_daily_loss: float | None = Field(
        default=None,
        gt=0,
        le=MAX_MONEY,
        description="Loss within one UTC day after which new orders are refused.",
    )
    allow_short: StrictBool = Field(default=False, description="Allow selling more than is held.")


class EngineSpec(Model):
    """How the engine runs the strategy."""

    rules = (WARMUP_WITHIN_CACHE,)

    market_data_cache_size: int = Field(
        default=1000,
        ge=10,
        le=1_000_000,
        description="Bars kept per symbol for the strategy's lookbacks.",
    )
    decimal_precision: int = Field(
        default=8,
        ge=0,
        le=12,
        description="Decimal places order quantities are cut down to, as argo-trading does; a"
        " positive quantity that cuts down to 0 fails the strategy's call.",
    )
    warmup_bars: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Bars fed to the cache before the strategy is called; at most"
        " marketDataCacheSize.",
    )
    strategy_call_timeout_seconds: float = Field(
        default=5.0,
        ge=0.001,
        le=3600,
        description="Longest one strategy call may run before it is interrupted, seconds.",
    )
    strategy_memory_limit_mib: int = Field(
        default=256,
        ge=16,
        le=65_536,
        alias="strategyMemoryLimitMiB",
        description="Most memory the strategy's WebAssembly instance may use, MiB.",
    )
    max_consecutive_strategy_errors: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Stop the session after this many strategy errors in a row; 0 never stops.",
    )
    indicators: Literal["argo", "talib"] = Field(
        default="argo",
        description="Whose definitions the strategy's indicators (get_signal) follow: argo"
        " (argo-trading's, so a strategy tuned in its backtest trades the same) or talib"
        " (TA-Lib's). See strategies/README.md.",
    )


class ResourcesSpec(Model):
    """Compute resources of the runner container, as Kubernetes quantities."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Resource requests, e.g. cpu: 100m, memory: 256Mi."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Resource limits, e.g. memory: 512Mi."
    )


class StorageSpec(Model):
    """The session's volume: a PersistentVolumeClaim the operator makes for the session,
    holding its journal, its paper venue and its strategy cache across pods and specs."""

    size: Quantity = Field(
        default="1Gi", description="Requested size of the claim, e.g. 1Gi; fixed once made."
    )
    storage_class_name: DnsSubdomain | None = Field(
        default=None,
        description="StorageClass of the claim; null uses the cluster's default. Fixed once made.",
    )
    retain_on_delete: StrictBool = Field(
        default=False,
        description="Keep the claim (and the session's journal) when the session is deleted;"
        " a new session of the same name takes it up again.",
    )


class RollbackSpec(Model):
    """When a new spec counts as stable, and what happens when it does not in time."""

    enabled: StrictBool = Field(
        default=True,
        description="Run the last stable spec again when a new one is not stable in time.",
    )
    stable_bars: int = Field(
        default=3,
        ge=1,
        le=1_000_000,
        description="Bars a new spec's runner must process, ready and without a strategy"
        " error, to be stable.",
    )
    readiness_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Seconds a new spec's runner has to get ready (pull, compile, connect),"
        " from when the operator takes the spec up; its stable bars then have stableBars"
        " bar intervals more. A spec not stable by then is rolled back.",
    )


UpgradeMode = Literal["last-state", "stateless"]


class SessionSpec(Model):
    """What to trade, with which strategy, where the data comes from and where orders go."""

    rules = (LIVE_STRATEGY_PINNED,)

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
    suspend: StrictBool = Field(
        default=False, description="Stop the runner and keep the session's state."
    )
    restart_nonce: str = Field(
        default="", max_length=253, description="Change to any new value to restart the runner."
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
    upgrade_mode: UpgradeMode = Field(
        default="last-state",
        description="How a changed spec takes over in Kubernetes: last-state resumes the"
        " journal on the session's volume (positions, open orders, strategy cache, order"
        " ids); stateless starts a fresh journal and account beside the old one, which is"
        " kept for `kubetrade report`.",
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="The session's volume in Kubernetes."
    )
    rollback: RollbackSpec = Field(
        default_factory=RollbackSpec,
        description="Automatic rollback to the last stable spec in Kubernetes.",
    )

    @field_validator("symbols")
    @classmethod
    def _symbols_unique(cls, symbols: list[str]) -> list[str]:
        first: dict[str, int] = {}
        problems = []
        for index, symbol in enumerate(symbols):
            if symbol in first:
                problems.append(
                    problem(
                        (index,),
                        "duplicate_symbol",
                        f"{symbol!r} is already listed at spec.symbols[{first[symbol]}];"
                        " list each symbol once",
                        symbol,
                    )
                )
            first.setdefault(symbol, index)
        if problems:
            raise fail("symbols", problems)
        return symbols

    @property
    def is_live(self) -> bool:
        """Whether the session trades real money."""
        return self.trading.is_live

    @property
    def interval_ms(self) -> int:
        """The bar interval in milliseconds."""
        return interval_ms(self.interval)


class ObjectMeta(Model):
    """Kubernetes object metadata; keys other than these pass through untouched."""

    model_config = ConfigDict(extra="allow")

    name: DnsLabel = Field(description="Session name, a DNS-1123 label.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace; null means the current one."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Kubernetes annotations.")


class LiveTradingSession(Model):
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


class DocumentSchema(GenerateJsonSchema):
    # Field titles are the Python names title-cased ("Fastperiod"): noise in CRD docs.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    """The JSON schema of a whole LiveTradingSession document (camelCase keys)."""
    schema = LiveTradingSession.model_json_schema(by_alias=True, schema_generator=DocumentSchema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
