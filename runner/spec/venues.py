"""Which endpoints a paper session may reach: the routes by which it could touch real money.

A paper provider trades play money only as long as every request goes to a test
venue. Its endpoint overrides (`restUrl`, a ccxt option holding a URL or a
`hostname`, the IB API port) are accepted as paper only when they lead to:
- a loopback address, `localhost`, or a name under `.localhost` or `.test`
  (RFC 6761 reserves them; no public venue can live there), or
- the provider's own testnet host (binance-paper: testnet.binance.vision).
Any other override is a route to a live venue: the session counts as live and
needs `spec.trading.confirmLive: true`. The CRD's CEL rule says the same
(operator/crd.py), and the ccxt client checks the endpoints it was actually
built with (brokers/ccxt/venue.py), so no route depends on one check alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

TEST_HOST_NAMES: Final = frozenset({"localhost"})
TEST_HOST_SUFFIXES: Final = (".localhost", ".test")
# Testnets a paper provider may name in restUrl, besides test hosts.
TESTNET_HOSTS: Final[Mapping[str, frozenset[str]]] = {
    "binance-paper": frozenset({"testnet.binance.vision"}),
}
# The API ports TWS and IB Gateway use for live accounts by default.
IBKR_LIVE_PORTS: Final[Mapping[int, str]] = {
    7496: "TWS's live port",
    4001: "IB Gateway's live port",
}
_HOST_FIX: Final = (
    "point it at the venue's testnet or a loopback, localhost, *.localhost or *.test host"
)
_PORT_FIX: Final = "use the paper port (7497 for TWS, 4002 for IB Gateway)"


@dataclass(frozen=True, slots=True)
class LiveRoute:
    """One setting of a paper provider that can reach a live venue."""

    field: str  # as the user writes it, under spec.trading
    why: str  # what it reaches, for the message (a host, never a whole URL)
    fix: str  # how to stay paper


def host_of(url: str) -> str:
    """The host a URL names, lowercased ('' if it names none); never raises."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


# The test hosts as one regular expression, in the syntax Python's re and RE2 (CEL's
# matches()) read alike, so the runner and the API server decide exactly the same.
_OCTET: Final = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_TEST_HOSTS: Final = (
    r"localhost|[a-z0-9_-][a-z0-9._-]*\.(localhost|test)"
    rf"|127\.{_OCTET}\.{_OCTET}\.{_OCTET}"
)


def host_pattern(provider: str) -> str:
    """The hosts a paper session of `provider` may reach, as a regular expression."""
    hosts = _TEST_HOSTS + "".join(
        "|" + re.escape(host).replace(r"\-", "-")
        for host in sorted(TESTNET_HOSTS.get(provider, ()))
    )
    return rf"(?i)^({hosts})\.?$"


def url_pattern(provider: str) -> str:
    """URLs whose host a paper session of `provider` may reach, as a regular expression.

    The host sits after the scheme and any user:password@, before a port or a path;
    an IPv6 loopback is written [::1].
    """
    hosts = host_pattern(provider).removeprefix("(?i)^").removesuffix("$")
    return rf"(?i)^[a-z][a-z0-9+.-]*://([^/?#@]*@)?({hosts}|\[::1\])(:[0-9]*)?([/?#].*)?$"


def is_test_host(host: str) -> bool:
    """Whether `host` can only be a machine under the user's control, never a public venue."""
    return host == "::1" or re.fullmatch(host_pattern(""), host) is not None


def paper_host_allowed(provider: str, host: str) -> bool:
    """Whether a paper session of `provider` may send requests to `host`."""
    return host == "::1" or re.fullmatch(host_pattern(provider), host) is not None


def paper_url_allowed(provider: str, url: str) -> bool:
    """Whether a paper session of `provider` may send requests to `url`."""
    return re.fullmatch(url_pattern(provider), url) is not None


def _urls_in(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(field, url) for every string inside `value` that is a URL."""
    if isinstance(value, str):
        if "://" in value:
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _urls_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _urls_in(item, f"{path}[{index}]")


def _hostnames_in(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(field, value) for every `hostname` key: ccxt builds some exchanges' URLs from it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower() == "hostname":
                yield f"{path}.{key}", str(item)
            else:
                yield from _hostnames_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _hostnames_in(item, f"{path}[{index}]")


def paper_live_routes(
    provider: str, *, rest_url: str | None = None, options: object = None, port: int | None = None
) -> list[LiveRoute]:
    """The settings of a paper provider's config that would reach a live venue."""
    routes = []
    if rest_url is not None:
        host = host_of(rest_url)
        if not paper_url_allowed(provider, rest_url):
            routes.append(LiveRoute("config.restUrl", f"host {host or '(none)'!r}", _HOST_FIX))
    for field, url in _urls_in(options, "config.options"):
        host = host_of(url)
        if not paper_url_allowed(provider, url):
            routes.append(LiveRoute(field, f"host {host or '(none)'!r}", _HOST_FIX))
    for field, value in _hostnames_in(options, "config.options"):
        if not is_test_host(value):
            routes.append(LiveRoute(field, f"host {value.lower()!r}", _HOST_FIX))
    if port is not None and port in IBKR_LIVE_PORTS:
        routes.append(LiveRoute("config.port", f"port {port}, {IBKR_LIVE_PORTS[port]}", _PORT_FIX))
    return routes
