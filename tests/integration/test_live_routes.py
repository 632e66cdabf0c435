"""No route reaches real money by accident: the spec, `kubetrade run` and the ccxt client.

Each route of tests/live_routes.py is tried against the spec (with and without
confirmLive), as a `kubetrade run` a user would start, and, for ccxt, against the
client as actually built. The API server's CEL gives the same verdicts
(tests/e2e/test_live_routes_cel.py). A session that is live by confirmation says
so in its log, its /status and its metrics.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from helpers import ROOT, SMA_WASM, flat_rows, write_bars
from live_routes import CONFIRM_SPELLINGS, ROUTES, Route, confirmed, document
from servers.binance_trading import BinanceTradingServer, Market

from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.server import RunnerServer
from kubetrade.runner.app.session_file import SessionError, load_session, validate_document
from kubetrade.runner.brokers.base import BrokerError
from kubetrade.runner.brokers.ccxt.errors import Redactor
from kubetrade.runner.brokers.ccxt.venue import Tuning, VenueSettings, build_exchange

KUBETRADE = Path(sys.executable).parent / "kubetrade"
KEY = "ktRouteKey" + "Q1w2E3r4T5" * 5
SECRET = "ktRouteSecret" + "P0o9I8u7Y6" * 5


def _ids(routes: tuple[Route, ...]) -> list[str]:
    return [route.id for route in routes]


# ------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize("route", ROUTES, ids=_ids(ROUTES))
def test_the_spec_asks_confirmation_for_every_route_to_real_money(route: Route) -> None:
    plain = document(route.trading)
    if route.verdict == "paper":
        session = validate_document(plain, source=route.id)
        assert not session.spec.is_live
        return
    with pytest.raises(SessionError) as refused:
        validate_document(plain, source=route.id)
    text = str(refused.value)
    if route.verdict == "invalid":
        assert "must be true or false, unquoted" in text
        with pytest.raises(SessionError):
            validate_document(document(confirmed(route.trading)), source=route.id)
        return
    assert "spec.trading.confirmLive" in text and "real money" in text
    assert route.message in text
    session = validate_document(document(confirmed(route.trading)), source=route.id)
    assert session.spec.is_live


@pytest.mark.parametrize("spelling", CONFIRM_SPELLINGS, ids=repr)
def test_only_a_real_true_confirms_real_money(spelling: object) -> None:
    with pytest.raises(SessionError, match="confirmLive: must be true or false, unquoted"):
        validate_document(document(confirmed({"provider": "binance-live"}, spelling)), source="x")


@pytest.mark.parametrize(
    "field", ["suspend", "risk.allowShort", "marketData.config.loop", "trading.confirmLive"]
)
def test_every_boolean_of_the_document_is_strict(field: str) -> None:
    doc = document({"provider": "paper"})
    doc["spec"]["marketData"] = {"provider": "replay", "config": {"path": "bars.csv"}}
    node = doc["spec"]
    *parents, last = field.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = "false"
    with pytest.raises(SessionError, match=rf"spec\.{field}: must be true or false"):
        validate_document(doc, source="x")


# -------------------------------------------------------------------------- kubetrade run


def _kubetrade(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBETRADE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONSAFEPATH": "1", **(env or {})},
        cwd=ROOT,
        check=False,
    )


REFUSED = tuple(route for route in ROUTES if route.verdict != "paper")


@pytest.mark.parametrize("route", REFUSED, ids=_ids(REFUSED))
def test_kubetrade_run_refuses_every_unconfirmed_route_before_anything_runs(
    tmp_path: Path, route: Route
) -> None:
    doc = document(route.trading, strategy={"path": str(SMA_WASM)})
    path = tmp_path / "session.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {"KUBETRADE_BINANCE_PAPER_API_KEY": KEY, "KUBETRADE_BINANCE_PAPER_API_SECRET": SECRET}
    result = _kubetrade("run", "--no-http", path, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    field = "confirmLive" if route.verdict == "live" else ""
    assert f"spec.trading.{field}" in result.stderr
    assert route.message in result.stderr
    assert result.stdout == ""  # no bar, no order, no summary


def test_flag_form_needs_confirm_live_for_a_paper_provider_pointed_at_mainnet(
    tmp_path: Path,
) -> None:
    config = tmp_path / "trading.yaml"
    config.write_text("restUrl: https://api.binance.com\n")
    bars = write_bars(tmp_path / "bars.csv", "BTCUSDT", flat_rows([100.0] * 5))
    flags = [
        "run", "--no-http", "--strategy-wasm", str(SMA_WASM), "--market-data-provider", "replay",
        "--market-data-config", str(_replay_config(tmp_path, bars)), "--trading-provider",
        "binance-paper", "--trading-config", str(config), "--symbols", "BTCUSDT",
    ]  # fmt: skip
    result = _kubetrade(*flags)
    assert result.returncode == 2
    assert "--confirm-live" in result.stderr or "confirmLive" in result.stderr
    assert "api.binance.com" in result.stderr


def _replay_config(tmp_path: Path, bars: Path) -> Path:
    path = tmp_path / "md.yaml"
    path.write_text(f"path: {bars}\n")
    return path


# --------------------------------------------------------------- the ccxt client as built


def _exchange(settings: VenueSettings) -> Any:
    return build_exchange(
        settings,
        api_key=KEY,
        secret=SECRET,
        password=None,
        tuning=Tuning(),
        redactor=Redactor([KEY, SECRET]),
    )


def test_a_paper_ccxt_client_is_built_on_its_sandbox_or_test_hosts() -> None:
    paper = VenueSettings("binance-paper", "binance", True, None, "USDT")
    assert "testnet.binance.vision" in str(_exchange(paper).urls["api"])
    local = VenueSettings("binance-paper", "binance", True, "http://127.0.0.1:9", "USDT")
    assert "127.0.0.1:9" in str(_exchange(local).urls["api"])
    okx = VenueSettings("ccxt", "okx", True, None, None)  # its sandbox is a header, same host
    assert _exchange(okx) is not None


@pytest.mark.parametrize(
    "settings",
    [
        # The spec refuses both; the client refuses them again, whatever let them through.
        VenueSettings("binance-paper", "binance", False, None, "USDT"),
        VenueSettings("binance-paper", "binance", True, "https://api.binance.com", "USDT"),
        VenueSettings("ccxt", "bybit", True, "https://api.bybit.com", None),
    ],
    ids=["off its sandbox", "restUrl to mainnet", "ccxt restUrl to mainnet"],
)
def test_a_paper_ccxt_client_pointed_at_production_is_refused(settings: VenueSettings) -> None:
    with pytest.raises(BrokerError, match="is for play money, but its client would send"):
        _exchange(settings)


def test_a_paper_ccxt_client_of_an_exchange_without_a_sandbox_is_refused() -> None:
    with pytest.raises(BrokerError, match="kraken has no sandbox in ccxt"):
        _exchange(VenueSettings("ccxt", "kraken", True, None, None))


def test_a_confirmed_live_client_may_reach_production() -> None:
    live = VenueSettings("binance-live", "binance", False, None, "USDT", live=True)
    assert "api.binance.com" in str(_exchange(live).urls["api"])


# ------------------------------------------------- a live session says so, everywhere


async def test_a_session_that_can_reach_real_money_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bars = write_bars(tmp_path / "bars.csv", "BTCUSDT", flat_rows([100.0] * 5))
    markets = [Market("BTCUSDT", "BTC", "USDT", __import__("decimal").Decimal("100"))]
    with BinanceTradingServer(
        api_key=KEY, api_secret=SECRET, markets=markets, balances={"USDT": "1000"}
    ) as venue:
        figures = {}
        for provider, confirm in (("binance-live", True), ("binance-paper", False)):
            path = tmp_path / f"{provider}.yaml"
            doc = document(
                {"provider": provider, "confirmLive": confirm, "config": {"restUrl": venue.url}},
                strategy={"path": str(SMA_WASM)},
                name=provider,
            )
            doc["spec"]["marketData"] = {"provider": "replay", "config": {"path": str(bars)}}
            path.write_text(yaml.safe_dump(doc))
            key = provider.upper().replace("-", "_")
            os.environ[f"KUBETRADE_{key}_API_KEY"] = KEY
            os.environ[f"KUBETRADE_{key}_API_SECRET"] = SECRET
            try:
                caplog.clear()
                with caplog.at_level(logging.WARNING):
                    engine = build_engine(load_session(path), RunOptions())
                server = RunnerServer(engine, port=0, host="127.0.0.1")
                port = await server.start()
                try:
                    async with aiohttp.ClientSession() as http:
                        base = f"http://127.0.0.1:{port}"
                        async with http.get(f"{base}/status") as response:
                            status = await response.json()
                        async with http.get(f"{base}/metrics") as response:
                            metrics = await response.text()
                finally:
                    await server.stop()
            finally:
                del (
                    os.environ[f"KUBETRADE_{key}_API_KEY"],
                    os.environ[f"KUBETRADE_{key}_API_SECRET"],
                )
            loud = [r.getMessage() for r in caplog.records if "REAL MONEY" in r.getMessage()]
            figures[provider] = (status["real_money"], metrics, loud)
    live_status, live_metrics, live_log = figures["binance-live"]
    assert live_status is True
    assert (
        'kubetrade_real_money{provider="binance-live",session="binance-live"} 1.0' in live_metrics
    )
    assert len(live_log) == 1 and "binance-live" in live_log[0]
    paper_status, paper_metrics, paper_log = figures["binance-paper"]
    assert paper_status is False
    assert (
        'kubetrade_real_money{provider="binance-paper",session="binance-paper"} 0.0'
        in paper_metrics
    )
    assert paper_log == []
