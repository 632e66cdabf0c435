"""The ccxt client for a session's trading provider: which exchange, which endpoints.

binance-paper trades on the Binance Spot testnet, binance-live on Binance
itself, and the generic `ccxt` provider on any exchange ccxt supports (its
sandbox unless `sandbox: false`). `restUrl` replaces the scheme and host of
every REST endpoint the client knows and keeps their paths, which is how tests
point the client at a local server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt

from kubetrade.runner.brokers.base import BrokerError
from kubetrade.runner.brokers.ccxt.errors import Backoff, Redactor
from kubetrade.runner.spec import (
    BinanceTradingConfig,
    CcxtConfig,
    TradingSpec,
    host_of,
    paper_host_allowed,
)

_WIRE_LOG = logging.getLogger("kubetrade.brokers.ccxt.wire")


@dataclass(frozen=True, slots=True)
class Tuning:
    """Client timings. The defaults suit a real venue; tests shorten them."""

    timeout_ms: int = 10_000  # per HTTP request
    rate_limit_ms: float | None = None  # ccxt's request spacing; None keeps the exchange's own
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, slots=True)
class VenueSettings:
    provider: str  # the session's provider name: binance-paper, binance-live, ccxt
    exchange_id: str
    sandbox: bool
    rest_url: str | None
    quote_asset: str | None  # None: the quote of the session's markets
    recv_window_ms: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    live: bool = False  # real money is at stake (TradingSpec.is_live), confirmed by the user

    @classmethod
    def from_spec(cls, trading: TradingSpec) -> VenueSettings:
        config = trading.parsed()
        if isinstance(config, BinanceTradingConfig):
            return cls(
                provider=trading.provider,
                exchange_id="binance",
                sandbox=trading.provider == "binance-paper",
                rest_url=config.rest_url,
                quote_asset=config.quote_asset,
                recv_window_ms=config.recv_window_ms,
                live=trading.is_live,
            )
        if isinstance(config, CcxtConfig):
            return cls(
                provider=trading.provider,
                exchange_id=config.exchange,
                sandbox=config.sandbox,
                rest_url=config.rest_url,
                quote_asset=None,
                options=dict(config.options),
                live=trading.is_live,
            )
        raise BrokerError(f"spec.trading.provider: {trading.provider!r} is not a ccxt provider")


class _RedactingLog(logging.LoggerAdapter[logging.Logger]):
    """ccxt's request log, minus the API key (a header) and the signature (in the URL).

    ccxt logs each request and response at DEBUG through `exchange.logger`; an
    adapter per client scrubs the text before any handler can see it.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(_WIRE_LOG, {})
        self.redactor = redactor

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        kwargs.pop("exc_info", None)  # a traceback could carry the raw request
        self.logger.log(level, self.redactor.text(text), **kwargs)


def _rebase(value: Any, base: str) -> Any:
    if isinstance(value, str):
        return base + urlsplit(value).path
    if isinstance(value, dict):
        return {key: _rebase(item, base) for key, item in value.items()}
    return value


def build_exchange(
    settings: VenueSettings,
    *,
    api_key: str,
    secret: str,
    password: str | None,
    tuning: Tuning,
    redactor: Redactor,
) -> Any:
    """A ccxt async exchange client, configured but not yet connected."""
    exchange_class = getattr(ccxt, settings.exchange_id, None)
    if exchange_class is None:
        raise BrokerError(
            f"spec.trading.config.exchange: ccxt has no exchange {settings.exchange_id!r}"
        )
    options: dict[str, Any] = dict(settings.options)
    if settings.exchange_id == "binance":
        # Spot only: the futures and margin endpoints need other keys and would
        # make every start-up depend on services this provider never uses.
        options.update(
            {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,  # a signed SAPI call the testnet lacks
            }
        )
        if settings.recv_window_ms is not None:
            options["recvWindow"] = settings.recv_window_ms
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": True,  # ccxt spaces requests by each endpoint's weight
        "timeout": tuning.timeout_ms,
        "options": options,
    }
    if password:
        config["password"] = password
    if tuning.rate_limit_ms is not None:
        config["rateLimit"] = tuning.rate_limit_ms
    exchange = exchange_class(config)
    exchange.logger = _RedactingLog(redactor)
    if settings.sandbox:
        try:
            if not exchange.urls.get("test"):  # some exchanges list test: None
                raise ccxt.NotSupported(settings.exchange_id)
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported:
            raise BrokerError(
                f"spec.trading.config.sandbox: {settings.exchange_id} has no sandbox in ccxt; "
                "set sandbox: false (real money, needs confirmLive: true) or use another exchange"
            ) from None
    if settings.rest_url:
        exchange.urls["api"] = _rebase(exchange.urls["api"], settings.rest_url.rstrip("/"))
    if not settings.live:
        _check_paper_endpoints(exchange, settings, test_hosts=_hosts(exchange_class().urls))
    return exchange


def _hosts(urls: Any, *, key: str = "test") -> set[str]:
    """Every host named under `urls[key]` of a ccxt exchange's URL table."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.add(host_of(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(urls.get(key) if isinstance(urls, dict) else None)
    return found


def _check_paper_endpoints(exchange: Any, settings: VenueSettings, *, test_hosts: set[str]) -> None:
    """Refuse a paper client whose endpoints are not its exchange's sandbox or a test host.

    The spec already counts every override it can see as a route to real money; this
    checks the client as built, whatever option or library default put a URL there.
    Hosts are compared with ccxt's `{hostname}` placeholder filled in, as requests are.
    """
    hostname = str(getattr(exchange, "hostname", "") or "")
    default_hostname = str(getattr(type(exchange)(), "hostname", "") or "")
    allowed = {host.replace("{hostname}", default_hostname) for host in test_hosts}
    for host in sorted(_hosts(exchange.urls, key="api")):
        actual = host.replace("{hostname}", hostname)
        if actual in allowed or paper_host_allowed(settings.provider, actual):
            continue
        raise BrokerError(
            f"spec.trading: provider {settings.provider!r} is for play money, but its client"
            f" would send requests to {actual!r}, which is not {settings.exchange_id}'s sandbox"
            " or a test host; remove the setting that points there, or set"
            " spec.trading.confirmLive: true if you mean real money"
        )


def rest_endpoint(exchange: Any) -> str:
    """Where the client sends REST requests, for messages (scheme and host only)."""
    api = exchange.urls.get("api")
    first: Any = api
    while isinstance(first, dict) and first:
        first = first.get("public") or first.get("rest") or next(iter(first.values()))
    parts = urlsplit(first if isinstance(first, str) else "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the venue"
