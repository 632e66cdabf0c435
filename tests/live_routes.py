"""Every route by which a session could reach real money, with what must happen to it.

Shared by the spec's tests, `kubetrade run`'s and the API server's (CEL), so the three
are held to one table. `verdict`:
- "paper": accepted without confirmLive, and the session is not live;
- "live": refused without `confirmLive: true`; accepted with it, and the session is live;
- "invalid": refused whatever confirmLive says (a boolean spelt as a string or number);
`cel_sees`: False where CEL cannot see the setting (inside ccxt's free-form options):
the API server accepts the document and the runner's own check, which the operator runs
before creating a pod, refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Route:
    id: str
    trading: dict[str, Any]
    verdict: Literal["paper", "live", "invalid"]
    cel_sees: bool = True
    message: str = ""  # a part of the runner's message (when refused)


ROUTES: tuple[Route, ...] = (
    Route("binance-paper default", {"provider": "binance-paper"}, "paper"),
    Route(
        "binance-paper restUrl to mainnet",
        {"provider": "binance-paper", "config": {"restUrl": "https://api.binance.com"}},
        "live",
        message="spec.trading.config.restUrl reaches host 'api.binance.com'",
    ),
    Route(
        "binance-paper restUrl to mainnet, upper case",
        {"provider": "binance-paper", "config": {"restUrl": "https://API.Binance.COM/api"}},
        "live",
    ),
    Route(
        "binance-paper restUrl to the testnet",
        {"provider": "binance-paper", "config": {"restUrl": "https://testnet.binance.vision"}},
        "paper",
    ),
    Route(
        "binance-paper restUrl to loopback",
        {"provider": "binance-paper", "config": {"restUrl": "http://127.0.0.1:8080/x"}},
        "paper",
    ),
    Route(
        "binance-paper restUrl to IPv6 loopback",
        {"provider": "binance-paper", "config": {"restUrl": "http://[::1]:8080"}},
        "paper",
    ),
    Route(
        "binance-paper restUrl to localhost and .test",
        {"provider": "binance-paper", "config": {"restUrl": "http://Venue.TEST:80"}},
        "paper",
    ),
    Route(
        "binance-paper restUrl with loopback as the user part",
        {"provider": "binance-paper", "config": {"restUrl": "http://127.0.0.1@evil.example/"}},
        "live",
    ),
    Route(
        "binance-paper restUrl to a loopback-looking name",
        {"provider": "binance-paper", "config": {"restUrl": "http://127.0.0.1.evil.example/"}},
        "live",
    ),
    Route(
        "binance-paper restUrl to the futures testnet of another provider",
        {"provider": "binance-paper", "config": {"restUrl": "https://testnet.binancefuture.com"}},
        "live",
    ),
    Route(
        "ccxt sandbox restUrl to mainnet",
        {
            "provider": "ccxt",
            "config": {"exchange": "kraken", "sandbox": True, "restUrl": "https://api.kraken.com"},
        },
        "live",
        message="spec.trading.config.restUrl reaches host 'api.kraken.com'",
    ),
    Route(
        "ccxt sandbox (default) restUrl to mainnet",
        {
            "provider": "ccxt",
            "config": {"exchange": "binance", "restUrl": "https://api.binance.com"},
        },
        "live",
    ),
    Route(
        "ccxt sandbox restUrl to loopback",
        {"provider": "ccxt", "config": {"exchange": "binance", "restUrl": "http://localhost:1"}},
        "paper",
    ),
    Route(
        "ccxt sandbox with a URL in options",
        {
            "provider": "ccxt",
            "config": {
                "exchange": "binance",
                "options": {"urls": {"api": "https://api.binance.com"}},
            },
        },
        "live",
        cel_sees=False,
        message="spec.trading.config.options.urls.api reaches host 'api.binance.com'",
    ),
    Route(
        "ccxt sandbox with a hostname in options",
        {"provider": "ccxt", "config": {"exchange": "okx", "options": {"hostname": "www.okx.com"}}},
        "live",
        cel_sees=False,
        message="spec.trading.config.options.hostname reaches host 'www.okx.com'",
    ),
    Route(
        "ccxt off its sandbox",
        {"provider": "ccxt", "config": {"exchange": "binance", "sandbox": False}},
        "live",
    ),
    Route(
        "ccxt sandbox spelt as a string",
        {"provider": "ccxt", "config": {"exchange": "binance", "sandbox": "false"}},
        "invalid",
    ),
    Route(
        "ccxt sandbox spelt as a number",
        {"provider": "ccxt", "config": {"exchange": "binance", "sandbox": 0}},
        "invalid",
    ),
    Route("ibkr-paper default port", {"provider": "ibkr-paper"}, "paper"),
    Route(
        "ibkr-paper on the paper gateway port",
        {"provider": "ibkr-paper", "config": {"port": 4002}},
        "paper",
    ),
    Route(
        "ibkr-paper on TWS's live port",
        {"provider": "ibkr-paper", "config": {"port": 7496}},
        "live",
        message="spec.trading.config.port reaches port 7496",
    ),
    Route(
        "ibkr-paper on IB Gateway's live port",
        {"provider": "ibkr-paper", "config": {"port": 4001}},
        "live",
    ),
    Route("binance-live", {"provider": "binance-live"}, "live"),
    Route("ibkr-live", {"provider": "ibkr-live"}, "live"),
    Route("paper", {"provider": "paper"}, "paper"),
)

# confirmLive itself must be a real boolean: nothing else confirms real money.
CONFIRM_SPELLINGS: tuple[object, ...] = ("true", "yes", 1, "1", "on")


def document(
    trading: dict[str, Any], *, name: str = "route", strategy: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A whole session around `trading`."""
    return {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {"name": name},
        "spec": {
            "symbols": ["BTCUSDT"],
            "strategy": strategy or {"configMapRef": {"name": "strategy"}},
            "marketData": {"provider": "synthetic", "config": {"bars": 5}},
            "trading": trading,
        },
    }


def confirmed(trading: dict[str, Any], value: object = True) -> dict[str, Any]:
    return {**trading, "confirmLive": value}
