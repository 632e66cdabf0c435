"""The LiveTradingSession models: shapes, defaults, every rule and the schema."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from pydantic import ValidationError

from kubetrade.runner import spec
from kubetrade.runner.spec import (
    CROSS_FIELD_RULES,
    MARKET_DATA_CONFIGS,
    TRADING_CONFIGS,
    BinanceMarketDataConfig,
    BinanceTradingConfig,
    CcxtConfig,
    IbkrConfig,
    IbkrLiveConfig,
    LiveTradingSession,
    PaperConfig,
    PolygonConfig,
    ReplayConfig,
    SyntheticConfig,
    json_schema,
    looks_like_credential,
)

if TYPE_CHECKING:
    from collections.abc import Callable

DIGEST = "sha256:" + "0123456789abcdef" * 4

FULL_YAML = f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata:
  name: sma-demo
  namespace: default
  labels: {{app.kubernetes.io/name: sma}}
  annotations: {{note: demo}}
spec:
  symbols: [BTCUSDT, ETH/USDT]
  interval: 5m
  strategy:
    oci: {{reference: "registry.example/strategies/sma@{DIGEST}", pullSecretRef: {{name: pull}}}}
    config: {{fastPeriod: 5, slowPeriod: 20, nested: {{list: [1, 2.5, null, true]}}}}
  marketData:
    provider: binance
    config: {{useTestnet: true, maxRetries: 3, initialBackoff: 0.5}}
    credentialsSecretRef: {{name: binance-keys}}
  trading:
    provider: binance-live
    config: {{recvWindowMs: 10000}}
    confirmLive: true
    credentialsSecretRef: {{name: binance-keys}}
  risk:
    maxOrderNotional: 1000
    maxPositionNotional: 5000.5
    maxOrdersPerMinute: 10
    maxDailyLoss: 250
    allowShort: true
  engine:
    marketDataCacheSize: 500
    decimalPrecision: 6
    warmupBars: 100
    strategyCallTimeoutSeconds: 2.5
    strategyMemoryLimitMiB: 128
    maxConsecutiveStrategyErrors: 3
  suspend: true
  restartNonce: "2024-06-01"
  resources:
    requests: {{cpu: 100m, memory: 256Mi}}
    limits: {{memory: 1Gi}}
  metricsPort: 9200
"""


def minimal() -> dict[str, Any]:
    """The smallest valid session, as a fresh document each call."""
    return {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {"name": "sma-demo"},
        "spec": {
            "symbols": ["BTCUSDT"],
            "strategy": {"path": "sma.wasm"},
            "marketData": {"provider": "replay", "config": {"path": "bars.csv"}},
            "trading": {"provider": "paper"},
        },
    }


def with_spec(**changes: Any) -> dict[str, Any]:
    document = minimal()
    document["spec"].update(changes)
    return document


def load(document: dict[str, Any]) -> LiveTradingSession:
    return LiveTradingSession.model_validate(document)


def problems(document: dict[str, Any]) -> dict[str, str]:
    """Validation problems by document path (spec.symbols[1]); fails if the document is valid."""
    with pytest.raises(ValidationError) as caught:
        load(document)
    found = {}
    for error in caught.value.errors():
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        found[path] = error["msg"]
    return found


def only_problem(document: dict[str, Any]) -> tuple[str, str]:
    found = problems(document)
    assert len(found) == 1, found
    return next(iter(found.items()))


# ------------------------------------------------------------------ round trip


def test_full_example_round_trips_through_the_model() -> None:
    document = yaml.safe_load(FULL_YAML)
    session = load(document)
    assert session.model_dump(mode="json", exclude_unset=True) == document
    # The complete dump (defaults filled in) is itself a valid, equal document.
    assert load(session.model_dump(mode="json")) == session


def test_full_example_is_read_into_typed_fields() -> None:
    session = load(yaml.safe_load(FULL_YAML))
    s = session.spec
    assert session.metadata.labels == {"app.kubernetes.io/name": "sma"}
    assert s.symbols == ["BTCUSDT", "ETH/USDT"]
    assert s.interval_ms == 300_000
    assert s.strategy.oci is not None
    assert s.strategy.oci.reference.endswith(DIGEST)
    assert s.strategy.oci.pull_secret_ref is not None
    assert s.strategy.config["nested"] == {"list": [1, 2.5, None, True]}
    assert s.market_data.credentials_secret_ref is not None
    assert s.market_data.credentials_secret_ref.name == "binance-keys"
    assert s.risk.max_position_notional == 5000.5
    assert s.engine.strategy_memory_limit_mib == 128
    assert s.resources is not None
    assert s.resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert s.is_live


def test_dump_uses_camel_case_keys_without_being_asked() -> None:
    dumped = load(minimal()).model_dump(mode="json")
    assert "marketData" in dumped["spec"]
    assert "strategyMemoryLimitMiB" in dumped["spec"]["engine"]
    assert "apiVersion" in dumped


def test_status_from_kubectl_output_is_ignored_and_metadata_extras_pass_through() -> None:
    document = minimal()
    document["status"] = {"phase": "Running", "conditions": [{"type": "Ready"}]}
    document["metadata"].update(
        uid="0b6a", resourceVersion="42", generation=3, managedFields=[{"manager": "kubectl"}]
    )
    session = load(document)
    dumped = session.model_dump(mode="json")
    assert "status" not in dumped
    assert dumped["metadata"]["resourceVersion"] == "42"
    assert dumped["metadata"]["managedFields"] == [{"manager": "kubectl"}]


# -------------------------------------------------------------------- defaults


def test_defaults_are_applied() -> None:
    s = load(minimal()).spec
    assert s.interval == "1m"
    assert s.interval_ms == 60_000
    assert s.suspend is False
    assert s.restart_nonce == ""
    assert s.resources is None
    assert s.metrics_port == 9102
    assert s.strategy.config == {}
    assert s.trading.config == {}
    assert s.trading.confirm_live is False
    assert s.trading.credentials_secret_ref is None
    assert s.risk.model_dump() == {
        "maxOrderNotional": None,
        "maxPositionNotional": None,
        "maxOrdersPerMinute": None,
        "maxDailyLoss": None,
        "allowShort": False,
    }
    assert s.engine.model_dump() == {
        "marketDataCacheSize": 1000,
        "decimalPrecision": 8,
        "warmupBars": 0,
        "strategyCallTimeoutSeconds": 5.0,
        "strategyMemoryLimitMiB": 256,
        "maxConsecutiveStrategyErrors": 0,
        "indicators": "argo",
    }
    # The operator's own: the session's volume, its upgrades and their rollback.
    assert s.upgrade_mode == "last-state"
    assert s.storage.model_dump() == {
        "size": "1Gi", "storageClassName": None, "retainOnDelete": False
    }  # fmt: skip
    assert s.rollback.model_dump() == {
        "enabled": True, "stableBars": 3, "readinessTimeoutSeconds": 300
    }  # fmt: skip
    assert load(minimal()).metadata.namespace is None


def test_upgrade_mode_storage_and_rollback_are_checked() -> None:
    for override, where in (
        ({"upgradeMode": "savepoint"}, "spec.upgradeMode"),
        ({"storage": {"size": "lots"}}, "spec.storage.size"),
        ({"storage": {"retainOnDelete": "yes"}}, "spec.storage.retainOnDelete"),
        ({"rollback": {"stableBars": 0}}, "spec.rollback.stableBars"),
        ({"rollback": {"readinessTimeoutSeconds": 0}}, "spec.rollback.readinessTimeoutSeconds"),
        ({"rollback": {"enabled": 1}}, "spec.rollback.enabled"),
    ):
        document = minimal()
        document["spec"].update(override)
        assert only_problem(document)[0] == where, override


def test_provider_config_defaults() -> None:
    replay = ReplayConfig.model_validate({"path": "bars.parquet"})
    assert (replay.format, replay.speed, replay.loop) == ("auto", 0.0, False)
    assert replay.resolved_format == "parquet"

    synthetic = SyntheticConfig.model_validate({})
    assert synthetic.seed == 1
    assert synthetic.start_price == 100.0
    assert synthetic.volatility == 0.002
    assert synthetic.drift == 0.0
    assert synthetic.bars is None
    assert synthetic.start_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert synthetic.speed == 0.0

    binance = BinanceMarketDataConfig.model_validate({})
    assert binance.use_testnet is False
    assert (binance.ws_url, binance.rest_url) == (None, None)
    assert (binance.max_retries, binance.initial_backoff) == (10, 1.0)
    assert (binance.max_backoff, binance.backoff_factor) == (60.0, 2.0)

    polygon = PolygonConfig.model_validate({})
    assert (polygon.feed, polygon.market, polygon.max_retries) == ("realtime", "stocks", 10)

    paper = PaperConfig.model_validate({})
    assert (paper.initial_cash, paper.currency, paper.fee_model) == (10_000.0, "USD", "percentage")
    assert (paper.fee_bps, paper.slippage_bps) == (0.0, 0.0)
    assert (paper.fee_per_share, paper.min_fee_per_order) == (0.005, 1.0)

    broker = BinanceTradingConfig.model_validate({})
    assert (broker.rest_url, broker.recv_window_ms, broker.quote_asset) == (None, 5000, "USDT")

    ibkr = IbkrConfig.model_validate({})
    assert (ibkr.host, ibkr.port, ibkr.client_id, ibkr.account) == ("127.0.0.1", 7497, 1, None)
    assert (ibkr.exchange, ibkr.currency, ibkr.connect_timeout_seconds) == ("SMART", "USD", 10.0)

    ccxt = CcxtConfig.model_validate({"exchange": "kraken"})
    assert (ccxt.sandbox, ccxt.rest_url, ccxt.options) == (True, None, {})


@pytest.mark.parametrize(
    ("provider", "config", "expected"),
    [
        ("replay", {"path": "bars.csv"}, ReplayConfig),
        ("synthetic", {}, SyntheticConfig),
        ("binance", {}, BinanceMarketDataConfig),
        ("polygon", {}, PolygonConfig),
    ],
)
def test_market_data_parsed_is_the_providers_model(
    provider: str, config: dict[str, Any], expected: type
) -> None:
    session = load(with_spec(marketData={"provider": provider, "config": config}))
    assert type(session.spec.market_data.parsed()) is expected


@pytest.mark.parametrize(
    ("provider", "config", "expected", "port"),
    [
        ("paper", {}, PaperConfig, None),
        ("binance-paper", {}, BinanceTradingConfig, None),
        ("binance-live", {}, BinanceTradingConfig, None),
        ("ibkr-paper", {}, IbkrConfig, 7497),
        ("ibkr-live", {}, IbkrLiveConfig, 7496),
        ("ccxt", {"exchange": "binance"}, CcxtConfig, None),
    ],
)
def test_trading_parsed_is_the_providers_model(
    provider: str, config: dict[str, Any], expected: type, port: int | None
) -> None:
    trading = {"provider": provider, "config": config, "confirmLive": True}
    parsed = load(with_spec(trading=trading)).spec.trading.parsed()
    assert type(parsed) is expected
    if port is not None:
        assert isinstance(parsed, IbkrConfig)
        assert parsed.port == port


def test_empty_config_is_the_same_as_no_config() -> None:
    # `config:` with nothing after it is null in YAML.
    session = load(with_spec(trading={"provider": "paper", "config": None}))
    assert session.spec.trading.config == {}


# ------------------------------------------------------------ strategy source


@pytest.mark.parametrize(
    "source",
    [
        {"path": "strategies/sma.wasm"},
        {"configMapRef": {"name": "sma-strategy"}},
        {"configMapRef": {"name": "sma-strategy", "key": "v2.wasm"}},
        {"oci": {"reference": f"registry.example/strategies/sma@{DIGEST}"}},
        {"oci": {"reference": "registry.example/strategies/sma:v1"}},
    ],
)
def test_one_strategy_source_is_accepted(source: dict[str, Any]) -> None:
    load(with_spec(strategy=source))


def test_config_map_key_defaults_to_strategy_wasm() -> None:
    session = load(with_spec(strategy={"configMapRef": {"name": "sma"}}))
    assert session.spec.strategy.config_map_ref is not None
    assert session.spec.strategy.config_map_ref.key == "strategy.wasm"


def test_no_strategy_source_is_refused() -> None:
    path, message = only_problem(with_spec(strategy={"config": {"a": 1}}))
    assert path == "spec.strategy"
    assert "set one of path (local runs), configMapRef or oci" in message


def test_two_strategy_sources_are_refused() -> None:
    source = {"path": "a.wasm", "oci": {"reference": f"r.example/s@{DIGEST}"}}
    path, message = only_problem(with_spec(strategy=source))
    assert path == "spec.strategy"
    assert message == "set exactly one of path, configMapRef or oci; found path and oci"


def test_empty_strategy_path_is_refused() -> None:
    path, _ = only_problem(with_spec(strategy={"path": ""}))
    assert path == "spec.strategy.path"


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/strategies/sma:v1",
        "registry.example/strategies/sma",
        "sma:latest",
    ],
)
def test_oci_reference_by_tag_is_refused_for_real_money_with_pin_advice(image: str) -> None:
    load(with_spec(strategy={"oci": {"reference": image}}))  # a paper session may follow a tag
    live = {"provider": "binance-live", "confirmLive": True}
    path, message = only_problem(with_spec(strategy={"oci": {"reference": image}}, trading=live))
    assert path == "spec.strategy.oci.reference"
    assert "pin it by digest" in message and "real money" in message


@pytest.mark.parametrize(
    "image", ["Registry.example/sma:v1", "registry.example/sma:-v1", "registry.example/sma sma"]
)
def test_oci_reference_that_is_not_one_is_refused(image: str) -> None:
    path, message = only_problem(with_spec(strategy={"oci": {"reference": image}}))
    assert path == "spec.strategy.oci.reference"
    assert "not an OCI reference" in message


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/sma@sha256:" + "A" * 64,  # uppercase hex
        "registry.example/sma@sha256:" + "a" * 63,
        "registry.example/sma@sha512:" + "a" * 64,
        "@sha256:" + "a" * 64,
    ],
)
def test_oci_image_with_malformed_digest_is_refused(image: str) -> None:
    path, message = only_problem(with_spec(strategy={"oci": {"reference": image}}))
    assert path == "spec.strategy.oci.reference"
    assert "digest" in message


@pytest.mark.parametrize(
    "image",
    [f"registry.example:5000/team/sma@{DIGEST}", f"registry.example/sma:v1@{DIGEST}"],
)
def test_oci_image_pinned_by_digest_is_accepted(image: str) -> None:
    load(with_spec(strategy={"oci": {"reference": image}}))
    live = {"provider": "binance-live", "confirmLive": True}
    load(with_spec(strategy={"oci": {"reference": image}}, trading=live))


def test_strategy_config_is_free_form_json() -> None:
    config = {"a": [1, {"b": None}], "token budget": 5, "x": {"y": {"z": "w"}}}
    assert load(with_spec(strategy={"path": "s.wasm", "config": config})).spec.strategy.config == (
        config
    )


def test_strategy_config_must_be_json() -> None:
    document = with_spec(strategy={"path": "s.wasm", "config": {"when": datetime.now(UTC)}})
    path, _ = only_problem(document)
    assert path == "spec.strategy.config.when"


# ----------------------------------------------------------------- live money


@pytest.mark.parametrize(
    ("provider", "config"),
    [("binance-live", {}), ("ibkr-live", {})],
)
def test_live_provider_without_confirmation_is_refused(
    provider: str, config: dict[str, Any]
) -> None:
    path, message = only_problem(with_spec(trading={"provider": provider, "config": config}))
    assert path == "spec.trading.confirmLive"
    assert message == (
        f"provider {provider!r} trades real money; set spec.trading.confirmLive: true to confirm"
    )


def test_ccxt_outside_the_sandbox_without_confirmation_is_refused() -> None:
    trading = {"provider": "ccxt", "config": {"exchange": "kraken", "sandbox": False}}
    path, message = only_problem(with_spec(trading=trading))
    assert path == "spec.trading.confirmLive"
    assert message == (
        "provider 'ccxt' with config.sandbox: false trades real money;"
        " set spec.trading.confirmLive: true to confirm"
    )


@pytest.mark.parametrize(
    ("trading", "live"),
    [
        ({"provider": "binance-live", "confirmLive": True}, True),
        ({"provider": "ibkr-live", "confirmLive": True}, True),
        (
            {
                "provider": "ccxt",
                "config": {"exchange": "kraken", "sandbox": False},
                "confirmLive": True,
            },
            True,
        ),
        ({"provider": "ccxt", "config": {"exchange": "kraken"}}, False),
        ({"provider": "paper"}, False),
        ({"provider": "paper", "confirmLive": True}, False),
        ({"provider": "binance-paper"}, False),
        ({"provider": "ibkr-paper"}, False),
    ],
)
def test_is_live(trading: dict[str, Any], live: bool) -> None:
    session = load(with_spec(trading=trading))
    assert session.spec.is_live is live
    assert session.spec.trading.is_live is live


# ------------------------------------------------------------------- symbols


def test_duplicate_symbols_are_refused_at_the_duplicate() -> None:
    path, message = only_problem(with_spec(symbols=["BTCUSDT", "ETHUSDT", "BTCUSDT"]))
    assert path == "spec.symbols[2]"
    assert message == "'BTCUSDT' is already listed at spec.symbols[0]; list each symbol once"


def test_symbols_are_required_and_not_empty() -> None:
    document = minimal()
    del document["spec"]["symbols"]
    assert only_problem(document)[0] == "spec.symbols"
    assert only_problem(with_spec(symbols=[]))[0] == "spec.symbols"


@pytest.mark.parametrize(
    "symbol", ["BTCUSDT", "BTC/USDT", "ES:CME", "BRK.B", "btc-usd_1", "X", "A" * 32]
)
def test_valid_symbols_are_accepted(symbol: str) -> None:
    load(with_spec(symbols=[symbol]))


@pytest.mark.parametrize("symbol", ["", "BTC USDT", "A" * 33, "BTC$", "BTCUSDT\n", "ÄPFEL"])
def test_invalid_symbols_are_refused(symbol: str) -> None:
    path, message = only_problem(with_spec(symbols=["ETHUSDT", symbol]))
    assert path == "spec.symbols[1]"
    assert "is not a valid symbol" in message


# -------------------------------------------------------------------- engine


def test_warmup_may_fill_the_cache_exactly() -> None:
    load(with_spec(engine={"marketDataCacheSize": 50, "warmupBars": 50}))


def test_warmup_beyond_the_cache_is_refused() -> None:
    path, message = only_problem(with_spec(engine={"marketDataCacheSize": 50, "warmupBars": 51}))
    assert path == "spec.engine.warmupBars"
    assert "exceeds marketDataCacheSize (50)" in message
    assert "raise spec.engine.marketDataCacheSize" in message


def test_warmup_beyond_the_default_cache_is_refused() -> None:
    path, _ = only_problem(with_spec(engine={"warmupBars": 1001}))
    assert path == "spec.engine.warmupBars"


@pytest.mark.parametrize(
    ("key", "good", "bad"),
    [
        ("marketDataCacheSize", 10, 9),
        ("decimalPrecision", 0, -1),
        ("decimalPrecision", 12, 13),
        ("warmupBars", 0, -1),
        ("strategyCallTimeoutSeconds", 0.001, 0),
        ("strategyMemoryLimitMiB", 16, 15),
        ("maxConsecutiveStrategyErrors", 0, -1),
    ],
)
def test_engine_bounds(key: str, good: float, bad: float) -> None:
    load(with_spec(engine={key: good}))
    assert only_problem(with_spec(engine={key: bad}))[0] == f"spec.engine.{key}"


def test_engine_indicators_are_argo_or_talib() -> None:
    assert load(with_spec(engine={"indicators": "talib"})).spec.engine.indicators == "talib"
    path, message = only_problem(with_spec(engine={"indicators": "pandas"}))
    assert path == "spec.engine.indicators"
    assert "'argo'" in message and "'talib'" in message


def test_engine_memory_key_is_spelled_mib_as_in_the_document() -> None:
    path, message = only_problem(with_spec(engine={"strategyMemoryLimitMib": 64}))
    assert path == "spec.engine.strategyMemoryLimitMib"
    assert "did you mean 'strategyMemoryLimitMiB'?" in message


# ---------------------------------------------------------------------- risk


@pytest.mark.parametrize(
    "key", ["maxOrderNotional", "maxPositionNotional", "maxOrdersPerMinute", "maxDailyLoss"]
)
def test_risk_limits_are_positive_or_null(key: str) -> None:
    assert getattr(load(with_spec(risk={key: 1})).spec.risk, _snake(key)) == 1
    load(with_spec(risk={key: None}))
    assert only_problem(with_spec(risk={key: 0}))[0] == f"spec.risk.{key}"
    assert only_problem(with_spec(risk={key: -5}))[0] == f"spec.risk.{key}"


def test_orders_per_minute_is_a_whole_number() -> None:
    assert only_problem(with_spec(risk={"maxOrdersPerMinute": 1.5}))[0] == (
        "spec.risk.maxOrdersPerMinute"
    )


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


# ------------------------------------------------------------ other spec keys


@pytest.mark.parametrize(
    "interval",
    ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w"],
)
def test_every_supported_interval_is_accepted(interval: str) -> None:
    session = load(with_spec(interval=interval))
    assert session.spec.interval_ms > 0


@pytest.mark.parametrize("interval", ["2m", "1M", "60s", "1 m", ""])
def test_unsupported_intervals_are_refused(interval: str) -> None:
    path, message = only_problem(with_spec(interval=interval))
    assert path == "spec.interval"
    assert "'1m'" in message


def test_interval_ms() -> None:
    assert load(with_spec(interval="4h")).spec.interval_ms == 4 * 3_600_000
    assert load(with_spec(interval="1w")).spec.interval_ms == 7 * 86_400_000


def test_metrics_port_bounds() -> None:
    load(with_spec(metricsPort=65535))
    assert only_problem(with_spec(metricsPort=0))[0] == "spec.metricsPort"
    assert only_problem(with_spec(metricsPort=65536))[0] == "spec.metricsPort"


def test_resources_accept_kubernetes_quantities() -> None:
    resources = {"requests": {"cpu": 1, "memory": "256Mi"}, "limits": {"cpu": "1.5", "mem": "1e3"}}
    parsed = load(with_spec(resources=resources)).spec.resources
    assert parsed is not None
    assert parsed.requests == {"cpu": "1", "memory": "256Mi"}
    assert parsed.limits == {"cpu": "1.5", "mem": "1e3"}


@pytest.mark.parametrize("value", ["1 Gi", "1GB", "lots", 0.5])
def test_resources_refuse_what_kubernetes_would(value: object) -> None:
    path, message = only_problem(with_spec(resources={"limits": {"memory": value}}))
    assert path == "spec.resources.limits.memory"
    assert "500m" in message


@pytest.mark.parametrize("name", ["sma-demo", "a", "0abc", "a" * 63, "a-b-c-1"])
def test_valid_names_are_accepted(name: str) -> None:
    document = minimal()
    document["metadata"]["name"] = name
    load(document)


@pytest.mark.parametrize(
    "name", ["Sma-Demo", "sma_demo", "-sma", "sma-", "a" * 64, "sma.demo", "sma-demo\n", ""]
)
def test_invalid_names_are_refused(name: str) -> None:
    document = minimal()
    document["metadata"]["name"] = name
    path, message = only_problem(document)
    assert path == "metadata.name"
    assert "is not a valid name" in message


def test_name_is_required() -> None:
    document = minimal()
    document["metadata"] = {"labels": {"a": "b"}}
    assert only_problem(document)[0] == "metadata.name"


def test_secret_refs_carry_a_valid_name_and_nothing_else() -> None:
    market = {"provider": "polygon", "credentialsSecretRef": {"name": "polygon.keys"}}
    load(with_spec(marketData=market))
    market["credentialsSecretRef"] = {"name": "Polygon_Keys"}
    assert only_problem(with_spec(marketData=market))[0] == (
        "spec.marketData.credentialsSecretRef.name"
    )
    market["credentialsSecretRef"] = {"name": "polygon", "key": "apiKey"}
    assert only_problem(with_spec(marketData=market))[0] == (
        "spec.marketData.credentialsSecretRef.key"
    )


@pytest.mark.parametrize(
    ("key", "value"), [("apiVersion", "kubetrade.io/v1"), ("kind", "LiveTradingSessions")]
)
def test_api_version_and_kind_are_exact(key: str, value: str) -> None:
    document = minimal()
    document[key] = value
    assert only_problem(document)[0] == key


# -------------------------------------------------------------- unknown keys


def test_unknown_spec_key_names_the_key_a_guess_and_the_allowed_keys() -> None:
    document = minimal()
    document["spec"]["symbol"] = ["ETHUSDT"]
    path, message = only_problem(document)
    assert path == "spec.symbol"
    assert message.startswith("unknown key 'symbol'; did you mean 'symbols'? allowed keys: ")
    assert "marketData" in message
    assert "metricsPort" in message


def test_snake_case_keys_are_refused_as_the_api_server_would() -> None:
    document = minimal()
    document["spec"]["market_data"] = document["spec"].pop("marketData")
    found = problems(document)
    assert "did you mean 'marketData'?" in found["spec.market_data"]
    assert found["spec.marketData"] == "Field required"


def test_unknown_keys_are_reported_alongside_other_problems() -> None:
    document = with_spec(interval="2m", engine={"warmupBar": 3, "decimalPrecision": 20})
    assert set(problems(document)) == {
        "spec.interval",
        "spec.engine.warmupBar",
        "spec.engine.decimalPrecision",
    }


def test_top_level_unknown_key_is_refused() -> None:
    document = minimal()
    document["specs"] = {}
    path, message = only_problem(document)
    assert path == "specs"
    assert "did you mean 'spec'?" in message


# ----------------------------------------------------------- provider configs


@pytest.mark.parametrize(
    ("section", "provider", "typo", "allowed"),
    [
        ("marketData", "replay", "sped", "path, format, speed, loop"),
        (
            "marketData",
            "synthetic",
            "startprice",
            "seed, startPrice, volatility, drift, bars, startTime, speed",
        ),
        ("marketData", "binance", "testnet", "useTestnet, wsUrl, restUrl"),
        ("marketData", "polygon", "feeds", "wsUrl, restUrl, feed, market"),
        ("trading", "paper", "cash", "initialCash, currency, feeBps, slippageBps, feeModel"),
        ("trading", "binance-paper", "recvWindow", "restUrl, recvWindowMs, quoteAsset"),
        ("trading", "ibkr-paper", "clientID", "host, port, clientId, account"),
        ("trading", "ccxt", "sandbox_mode", "exchange, sandbox, restUrl, options"),
    ],
)
def test_typo_in_provider_config_names_the_key_and_the_allowed_keys(
    section: str, provider: str, typo: str, allowed: str
) -> None:
    config: dict[str, Any] = {"path": "bars.csv"} if provider == "replay" else {}
    if provider == "ccxt":
        config["exchange"] = "kraken"
    config[typo] = 1
    path, message = only_problem(with_spec(**{section: {"provider": provider, "config": config}}))
    assert path == f"spec.{section}.config.{typo}"
    assert message.startswith(f"unknown key {typo!r}; ")
    assert allowed in message


def test_typo_guess_is_offered_when_close() -> None:
    config = {"path": "bars.csv", "sped": 2}
    _, message = only_problem(with_spec(marketData={"provider": "replay", "config": config}))
    assert (
        message
        == "unknown key 'sped'; did you mean 'speed'? allowed keys: path, format, speed, loop"
    )


def test_provider_config_value_errors_point_into_config() -> None:
    config = {"path": "bars.csv", "speed": -1}
    path, _ = only_problem(with_spec(marketData={"provider": "replay", "config": config}))
    assert path == "spec.marketData.config.speed"
    config["speed"] = 0
    load(with_spec(marketData={"provider": "replay", "config": config}))


def test_replay_needs_a_path() -> None:
    path, _ = only_problem(with_spec(marketData={"provider": "replay"}))
    assert path == "spec.marketData.config.path"


@pytest.mark.parametrize(
    ("file", "resolved"),
    [("bars.csv", "csv"), ("BARS.CSV", "csv"), ("b.parquet", "parquet"), ("b.pq", "parquet")],
)
def test_replay_format_auto_follows_the_extension(file: str, resolved: str) -> None:
    assert ReplayConfig.model_validate({"path": file}).resolved_format == resolved


def test_replay_format_must_be_given_when_the_extension_does_not_tell() -> None:
    config: dict[str, Any] = {"path": "bars.txt"}
    path, message = only_problem(with_spec(marketData={"provider": "replay", "config": config}))
    assert path == "spec.marketData.config.format"
    assert "set format: csv or format: parquet" in message
    config["format"] = "csv"
    session = load(with_spec(marketData={"provider": "replay", "config": config}))
    parsed = session.spec.market_data.parsed()
    assert isinstance(parsed, ReplayConfig)
    assert parsed.resolved_format == "csv"


def test_synthetic_config_bounds() -> None:
    for good in ({"volatility": 0}, {"bars": 1}, {"bars": None}, {"startPrice": 0.01}):
        SyntheticConfig.model_validate(good)
    for bad in ({"volatility": -0.1}, {"bars": 0}, {"startPrice": 0}, {"speed": -1}):
        with pytest.raises(ValidationError):
            SyntheticConfig.model_validate(bad)


def test_synthetic_start_time_is_rfc3339_with_a_zone() -> None:
    parsed = SyntheticConfig.model_validate({"startTime": "2024-03-01T12:00:00+02:00"})
    assert parsed.start_time == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    config = {"startTime": "2024-03-01T12:00:00"}
    path, _ = only_problem(with_spec(marketData={"provider": "synthetic", "config": config}))
    assert path == "spec.marketData.config.startTime"


def test_backoff_bounds_and_order() -> None:
    BinanceMarketDataConfig.model_validate(
        {"backoffFactor": 1, "maxRetries": 0, "initialBackoff": 5, "maxBackoff": 5}
    )
    market = {"provider": "binance", "config": {"backoffFactor": 0.99}}
    assert only_problem(with_spec(marketData=market))[0] == "spec.marketData.config.backoffFactor"
    market = {"provider": "polygon", "config": {"initialBackoff": 10, "maxBackoff": 5}}
    path, message = only_problem(with_spec(marketData=market))
    assert path == "spec.marketData.config.maxBackoff"
    assert "below initialBackoff" in message


def test_urls_need_the_right_scheme() -> None:
    BinanceMarketDataConfig.model_validate(
        {"wsUrl": "ws://127.0.0.1:9000", "restUrl": "https://api.example"}
    )
    market = {"provider": "binance", "config": {"wsUrl": "http://127.0.0.1:9000"}}
    path, message = only_problem(with_spec(marketData=market))
    assert path == "spec.marketData.config.wsUrl"
    assert "ws:// or wss://" in message


def test_binance_recv_window_bounds() -> None:
    for good in (1, 60_000):
        BinanceTradingConfig.model_validate({"recvWindowMs": good})
    for bad in (0, 60_001):
        trading = {"provider": "binance-paper", "config": {"recvWindowMs": bad}}
        assert only_problem(with_spec(trading=trading))[0] == "spec.trading.config.recvWindowMs"


def test_ccxt_needs_a_lowercase_exchange_id() -> None:
    path, _ = only_problem(with_spec(trading={"provider": "ccxt"}))
    assert path == "spec.trading.config.exchange"
    path, message = only_problem(
        with_spec(trading={"provider": "ccxt", "config": {"exchange": "Kraken"}})
    )
    assert path == "spec.trading.config.exchange"
    assert "lowercase" in message


def test_unknown_provider_is_refused() -> None:
    path, message = only_problem(with_spec(trading={"provider": "alpaca", "config": {"x": 1}}))
    assert path == "spec.trading.provider"
    assert "'paper'" in message


def test_provider_tables_cover_every_provider() -> None:
    assert set(MARKET_DATA_CONFIGS) == {"replay", "synthetic", "binance", "polygon"}
    assert set(TRADING_CONFIGS) == {
        "paper",
        "binance-paper",
        "binance-live",
        "ibkr-paper",
        "ibkr-live",
        "ccxt",
    }


# ----------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "key",
    [
        "apiKey",
        "api_key",
        "API-KEY",
        "secret",
        "secretKey",
        "apiSecret",
        "password",
        "token",
        "accessToken",
        "privateKey",
        "passphrase",
        "key",
    ],
)
def test_credentials_in_a_provider_config_are_refused(key: str) -> None:
    config = {"path": "bars.csv", key: "sk-live-DO-NOT-LEAK"}
    with pytest.raises(ValidationError) as caught:
        load(with_spec(marketData={"provider": "replay", "config": config}))
    (error,) = caught.value.errors()
    assert error["loc"] == ("spec", "marketData", "config", key)
    assert "looks like a credential" in error["msg"]
    assert "Kubernetes Secret named by spec.marketData.credentialsSecretRef" in error["msg"]
    assert "README's Credentials section" in error["msg"]
    # The value never appears, not even in pydantic's own rendering of the error.
    assert "DO-NOT-LEAK" not in str(caught.value)


def test_credentials_nested_in_ccxt_options_are_refused() -> None:
    config = {"exchange": "kraken", "options": {"auth": {"apiKey": "sk-DO-NOT-LEAK"}}}
    with pytest.raises(ValidationError) as caught:
        load(with_spec(trading={"provider": "ccxt", "config": config}))
    assert caught.value.errors()[0]["loc"] == ("spec", "trading", "config", "options", "auth")
    assert "spec.trading.credentialsSecretRef" in caught.value.errors()[0]["msg"]
    assert "DO-NOT-LEAK" not in str(caught.value)


def test_credentials_are_reported_with_other_config_problems() -> None:
    config = {"path": "bars.csv", "apiKey": "x", "speed": -1}
    found = problems(with_spec(marketData={"provider": "replay", "config": config}))
    assert set(found) == {"spec.marketData.config.apiKey", "spec.marketData.config.speed"}


def test_no_field_anywhere_looks_like_a_credential() -> None:
    # Secrets never live in the spec: the only credential-ish names are the Secret refs.
    names = set()
    for model in {*MARKET_DATA_CONFIGS.values(), *TRADING_CONFIGS.values()}:
        names |= {field.alias or name for name, field in model.model_fields.items()}
    names |= set(_property_names(json_schema()))
    suspicious = {n for n in names if looks_like_credential(n)}
    # credentialsSecretRef and pullSecretRef name Secrets; `key` is configMapRef.key.
    assert suspicious == {"credentialsSecretRef", "pullSecretRef", "key"}


# -------------------------------------------------------------------- schema


def _property_names(schema: Any) -> list[str]:
    names: list[str] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties":
                names.extend(value)
            names.extend(_property_names(value))
    elif isinstance(schema, list):
        for item in schema:
            names.extend(_property_names(item))
    return names


def _objects(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"LiveTradingSession": schema, **schema["$defs"]}


def test_model_json_schema_by_alias_works() -> None:
    schema = LiveTradingSession.model_json_schema(by_alias=True)
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec"}


def test_document_schema_has_camel_case_properties() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata", "spec"}
    defs = schema["$defs"]
    assert list(defs["SessionSpec"]["properties"]) == [
        "symbols",
        "interval",
        "strategy",
        "marketData",
        "trading",
        "risk",
        "engine",
        "suspend",
        "restartNonce",
        "resources",
        "metricsPort",
        "upgradeMode",
        "storage",
        "rollback",
    ]
    assert "strategyMemoryLimitMiB" in defs["EngineSpec"]["properties"]
    assert "configMapRef" in defs["StrategySpec"]["properties"]
    for name in _property_names(schema):
        assert "_" not in name, name


def test_every_property_has_a_description() -> None:
    for model, schema in _objects(json_schema()).items():
        assert schema.get("description"), model
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{model}.{name}"


def test_unknown_keys_are_closed_except_in_metadata_and_config() -> None:
    objects = _objects(json_schema())
    for model, schema in objects.items():
        expected = model == "ObjectMeta"
        assert schema["additionalProperties"] is expected, model
    for model in ("StrategySpec", "MarketDataSpec", "TradingSpec"):
        config = objects[model]["properties"]["config"]
        assert config["type"] == "object"
        assert config["x-kubernetes-preserve-unknown-fields"] is True


def test_schema_is_plain_json_and_carries_the_server_side_checks() -> None:
    schema = json_schema()
    text = json.dumps(schema)  # nothing Python-only survives serialization
    assert '"format": "path"' not in text
    assert "status" not in schema["properties"]
    defs = schema["$defs"]
    symbols = defs["SessionSpec"]["properties"]["symbols"]
    assert symbols["x-kubernetes-list-type"] == "set"
    assert symbols["minItems"] == 1
    assert defs["SessionSpec"]["properties"]["interval"]["enum"][:3] == ["1s", "1m", "3m"]
    assert defs["EngineSpec"]["properties"]["marketDataCacheSize"]["minimum"] == 10
    assert defs["EngineSpec"]["properties"]["marketDataCacheSize"]["default"] == 1000
    assert defs["ObjectMeta"]["properties"]["name"]["maxLength"] == 63
    assert "sha256" in defs["OciArtifact"]["properties"]["reference"]["pattern"]
    quantity = defs["ResourcesSpec"]["properties"]["limits"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True


@pytest.mark.parametrize(
    ("schema_path", "samples"),
    [
        (
            ("ObjectMeta", "name"),
            ["sma-demo", "a" * 63, "Sma", "-a", "a-", "a.b", "a" * 64, "ok\n"],
        ),
        (("SessionSpec", "symbols", "items"), ["BTC/USDT", "A" * 32, "A" * 33, "A B", ""]),
        (
            ("OciArtifact", "reference"),
            [f"r.example/s@{DIGEST}", "r.example/s:v1", "r@sha256:ab", "R.example/s", "s"],
        ),
        (("SecretRef", "name"), ["keys", "my.keys-1", "My_Keys", ".keys"]),
    ],
)
def test_schema_patterns_agree_with_the_validators(
    schema_path: tuple[str, ...], samples: list[str]
) -> None:
    node = json_schema()["$defs"][schema_path[0]]["properties"]
    node = node[schema_path[1]]
    for key in schema_path[2:]:
        node = node[key]
    pattern, max_length = node["pattern"], node.get("maxLength", 10**6)
    for sample in samples:
        by_schema = bool(re.fullmatch(pattern, sample)) and len(sample) <= max_length
        document = minimal()
        _PLACE[schema_path[0]](document, sample)
        try:
            load(document)
            by_model = True
        except ValidationError:
            by_model = False
        assert by_schema == by_model, sample


_PLACE: dict[str, Callable[[dict[str, Any], str], None]] = {
    "ObjectMeta": lambda d, v: d["metadata"].update(name=v),
    "SessionSpec": lambda d, v: d["spec"].update(symbols=[v]),
    "OciArtifact": lambda d, v: d["spec"].update(strategy={"oci": {"reference": v}}),
    "SecretRef": lambda d, v: d["spec"]["trading"].update(credentialsSecretRef={"name": v}),
}


def test_schema_defaults_match_the_models() -> None:
    engine = json_schema()["$defs"]["EngineSpec"]["properties"]
    assert {key: prop["default"] for key, prop in engine.items()} == spec.EngineSpec().model_dump()


# ------------------------------------------------------------------- the rules


def test_cross_field_rules_are_listed_once_with_stable_names() -> None:
    names = [rule.name for rule in CROSS_FIELD_RULES]
    assert len(names) == len(set(names))
    assert {
        "one-strategy-source",
        "live-trading-confirmed",
        "warmup-within-cache",
    } <= set(names)
    for rule in CROSS_FIELD_RULES:
        assert rule.scope.split(".")[0] == "spec"


def test_rule_violations_carry_the_rule_name_as_error_type() -> None:
    document = with_spec(
        strategy={"config": {}},
        trading={"provider": "binance-live"},
        engine={"warmupBars": 5000},
    )
    with pytest.raises(ValidationError) as caught:
        load(document)
    assert {error["type"] for error in caught.value.errors()} == {
        "one-strategy-source",
        "live-trading-confirmed",
        "warmup-within-cache",
    }
