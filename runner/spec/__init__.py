"""The LiveTradingSession document: the single source of truth for a session.

One YAML document serves both `kubetrade run session.yaml` on a laptop and
`kubectl apply -f session.yaml` in a cluster, so these models are written for
both. Keys are camelCase and read by that name only, as the API server reads
them (the Python attributes are their snake_case twins); every field carries
its default and a description, because the CRD is generated from
`json_schema()`; unknown keys are errors everywhere except in `metadata`, which
belongs to Kubernetes, and in the free-form `config` objects.

Build models from documents: `LiveTradingSession.model_validate(doc)`, or
`kubetrade.runner.app.session_file` for files and command-line flags.

The checks come in three kinds:
- single-field formats (names, symbols, digests, quantities), which the schema
  also carries as `pattern`s so the API server enforces them too;
- provider configs: `config` stays a free-form object in the schema, is
  validated against the model its `provider` selects, and `parsed()` returns
  that model;
- cross-field rules, all in `rules`, each scoped to the one object it reads so
  it can be mirrored as an x-kubernetes-validations (CEL) rule on that object.

The package is split by role: `fields` (single-field formats and the errors
every check raises), `base` (the base model and the rule type), `rules`,
`providers` (each provider's config model), `venues` (which endpoints a
paper provider may reach) and `document` (the document and
its JSON schema). Import from here.

Secrets never live here: there is no credential field anywhere, and a provider
config that holds one is refused.
"""

from kubetrade.runner.spec.base import Model, Rule
from kubetrade.runner.spec.document import (
    API_VERSION,
    GROUP,
    KIND,
    VERSION,
    ConfigMapKeyRef,
    DocumentSchema,
    EngineSpec,
    Interval,
    LiveTradingSession,
    MarketDataSpec,
    ObjectMeta,
    OciArtifact,
    ResourcesSpec,
    RiskSpec,
    RollbackSpec,
    SecretRef,
    SessionSpec,
    StorageSpec,
    StrategySpec,
    TradingSpec,
    UpgradeMode,
    json_schema,
)
from kubetrade.runner.spec.fields import OCI_PINNED
from kubetrade.runner.spec.providers import (
    MARKET_DATA_CONFIGS,
    TRADING_CONFIGS,
    BackoffConfig,
    BinanceMarketDataConfig,
    BinanceTradingConfig,
    CcxtConfig,
    IbkrConfig,
    IbkrLiveConfig,
    MarketDataConfig,
    MarketDataProvider,
    PaperConfig,
    PolygonConfig,
    ReplayConfig,
    SyntheticConfig,
    TradingConfig,
    TradingProvider,
    looks_like_credential,
)
from kubetrade.runner.spec.rules import (
    BACKOFF_ORDERED,
    CROSS_FIELD_RULES,
    LIVE_STRATEGY_PINNED,
    LIVE_TRADING_CONFIRMED,
    ONE_STRATEGY_SOURCE,
    REPLAY_FORMAT_KNOWN,
    WARMUP_WITHIN_CACHE,
)
from kubetrade.runner.spec.venues import (
    IBKR_LIVE_PORTS,
    TESTNET_HOSTS,
    LiveRoute,
    host_of,
    is_test_host,
    paper_host_allowed,
    paper_live_routes,
    url_pattern,
)

__all__ = [
    "API_VERSION",
    "BACKOFF_ORDERED",
    "CROSS_FIELD_RULES",
    "GROUP",
    "IBKR_LIVE_PORTS",
    "KIND",
    "LIVE_STRATEGY_PINNED",
    "LIVE_TRADING_CONFIRMED",
    "MARKET_DATA_CONFIGS",
    "OCI_PINNED",
    "ONE_STRATEGY_SOURCE",
    "REPLAY_FORMAT_KNOWN",
    "TESTNET_HOSTS",
    "TRADING_CONFIGS",
    "VERSION",
    "WARMUP_WITHIN_CACHE",
    "BackoffConfig",
    "BinanceMarketDataConfig",
    "BinanceTradingConfig",
    "CcxtConfig",
    "ConfigMapKeyRef",
    "DocumentSchema",
    "EngineSpec",
    "IbkrConfig",
    "IbkrLiveConfig",
    "Interval",
    "LiveRoute",
    "LiveTradingSession",
    "MarketDataConfig",
    "MarketDataProvider",
    "MarketDataSpec",
    "Model",
    "ObjectMeta",
    "OciArtifact",
    "PaperConfig",
    "PolygonConfig",
    "ReplayConfig",
    "ResourcesSpec",
    "RiskSpec",
    "RollbackSpec",
    "Rule",
    "SecretRef",
    "SessionSpec",
    "StorageSpec",
    "StrategySpec",
    "SyntheticConfig",
    "TradingConfig",
    "TradingProvider",
    "TradingSpec",
    "UpgradeMode",
    "host_of",
    "is_test_host",
    "json_schema",
    "looks_like_credential",
    "paper_host_allowed",
    "paper_live_routes",
    "url_pattern",
]
