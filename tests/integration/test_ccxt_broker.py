"""The ccxt broker against a local Binance spot server that checks signatures like Binance.

No mocks: the broker's ccxt client talks HTTP to tests/servers/binance_trading.py
on 127.0.0.1, and the last test runs `kubetrade run` as a user would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import ROOT, SMA_WASM, flat_rows, write_bars
from servers.binance_trading import BinanceTradingServer, Market

from kubetrade.runner.brokers.base import BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.ccxt import broker as ccxt_broker
from kubetrade.runner.brokers.ccxt.broker import CcxtBroker, Tuning
from kubetrade.runner.brokers.ccxt.errors import Backoff, Redactor
from kubetrade.runner.brokers.ccxt.venue import VenueSettings, build_exchange
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import Bar, Fill, Order, OrderStatus, OrderType, RejectReason, Side
from kubetrade.runner.session.book import Book
from kubetrade.runner.session.ledger import Ledger
from kubetrade.runner.spec import TradingSpec

KEY = "ktTestKey" + "A1b2C3d4E5" * 6
SECRET = "ktTestSecret" + "Z9y8X7w6V5" * 6
T0 = 1_704_067_200_000
# Short timeouts and pauses keep the fault tests fast; a real venue gets the defaults.
FAST = Tuning(
    timeout_ms=400, rate_limit_ms=1, backoff=Backoff(attempts=4, initial_s=0.01, max_s=0.05)
)


def markets() -> list[Market]:
    return [
        Market("BTCUSDT", "BTC", "USDT", Decimal("100")),
        Market("BNBUSDT", "BNB", "USDT", Decimal("500"), step=Decimal("0.001")),
    ]


@pytest.fixture
def server() -> Iterator[BinanceTradingServer]:
    with BinanceTradingServer(
        api_key=KEY, api_secret=SECRET, markets=markets(), balances={"USDT": "10000"}
    ) as venue:
        yield venue


def trading(url: str, provider: str = "binance-paper") -> TradingSpec:
    return TradingSpec.model_validate(
        {"provider": provider, "config": {"restUrl": url}, "confirmLive": provider.endswith("live")}
    )


def make_broker(
    server: BinanceTradingServer,
    *,
    key: str = KEY,
    secret: str = SECRET,
    provider: str = "binance-paper",
    symbols: Sequence[str] = ("BTCUSDT",),
) -> CcxtBroker:
    credentials = Credentials(provider, {"api_key": key, "api_secret": secret})
    return ccxt_broker.create(
        trading(server.url, provider),
        precision=8,
        credentials=credentials,
        symbols=symbols,
        tuning=FAST,
    )


@asynccontextmanager
async def connected(server: BinanceTradingServer, **kwargs: str) -> AsyncIterator[CcxtBroker]:
    broker = make_broker(server, **kwargs)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


def order(
    seq: int,
    side: Side = Side.BUY,
    kind: OrderType = OrderType.MARKET,
    quantity: float = 0.5,
    price: float = 100.0,
) -> Order:
    return Order(f"kt0badc0de-1-{seq}", "BTCUSDT", side, kind, quantity, price, T0 + seq)


def bar(minute: int) -> Bar:
    return Bar("BTCUSDT", T0 + minute * 60_000, 100, 100, 100, 100, 1)


def fills(events: list[BrokerEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def updates(events: list[BrokerEvent]) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate)]


def calls(server: BinanceTradingServer, method: str, path: str) -> int:
    return sum(1 for r in server.requests if r.method == method and r.path == path)


# -- the server itself ----------------------------------------------------------------


def signed_get(server: BinanceTradingServer, path: str, query: str) -> tuple[int, object]:
    """A signed request made by hand, as Binance's documentation describes it."""
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return http_get(server, f"{path}?{query}&signature={signature}", {"X-MBX-APIKEY": KEY})


def http_get(
    server: BinanceTradingServer, target: str, headers: dict[str, str] | None = None
) -> tuple[int, object]:
    request = urllib.request.Request(server.url + target, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_checks_signatures_and_timestamps_like_binance(
    server: BinanceTradingServer,
) -> None:
    now = server.now()
    assert signed_get(server, "/api/v3/account", f"timestamp={now}")[0] == 200
    # Signed over one query, sent with another: the signature no longer matches.
    signature = hmac.new(SECRET.encode(), f"timestamp={now}".encode(), hashlib.sha256)
    tampered = f"/api/v3/account?timestamp={now}&recvWindow=60000&signature={signature.hexdigest()}"
    assert http_get(server, tampered, {"X-MBX-APIKEY": KEY}) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )
    status, body = signed_get(server, "/api/v3/account", f"timestamp={now - 6000}")
    assert (status, body) == (
        400,
        {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
    )
    assert (
        signed_get(server, "/api/v3/account", f"timestamp={now - 6000}&recvWindow=10000")[0] == 200
    )
    assert signed_get(server, "/api/v3/account", f"timestamp={now + 5000}")[1] == {
        "code": -1021,
        "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
    }
    assert signed_get(server, "/api/v3/account", f"timestamp={now}&recvWindow=70000")[1] == {
        "code": -1131,
        "msg": "recvWindow must be less than 60000",
    }
    assert http_get(server, f"/api/v3/account?timestamp={now}")[0] == 401  # no key


def test_server_serves_klines(server: BinanceTradingServer) -> None:
    row = [T0, "100.0", "101.0", "99.0", "100.5", "12.0", T0 + 59_999, "1206.0", 7, "6", "603", "0"]
    server.klines["BTCUSDT"] = [row, [T0 + 60_000, *row[1:]]]
    status, body = http_get(server, f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={T0 + 1}")
    assert status == 200 and body == [[T0 + 60_000, *row[1:]]]


# -- connecting ------------------------------------------------------------------------


async def test_connect_checks_clock_and_account_and_adopts_holdings() -> None:
    with BinanceTradingServer(
        api_key=KEY,
        api_secret=SECRET,
        markets=markets(),
        balances={"USDT": "2500", "BTC": "0.25", "BNB": "2"},
    ) as server:
        server.clock_offset_ms = 30_000  # the venue's clock is ahead: requests are signed by it
        async with connected(server) as broker:
            assert broker.account().balance == 2500
            assert broker.account().buying_power == 2500
            position = broker.positions()["BTCUSDT"]
            assert (position.quantity, position.average_cost) == (0.25, 100.0)
            assert set(broker.positions()) == {"BTCUSDT"}  # only the session's symbols
        paths = [r.path for r in server.requests]
        assert paths[:3] == ["/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/account"]


async def test_markets_are_loaded_once(server: BinanceTradingServer) -> None:
    async with connected(server) as broker:
        for seq in range(1, 4):
            await broker.submit(order(seq, quantity=0.1))
        await broker.on_bar(bar(1))
    assert calls(server, "GET", "/api/v3/exchangeInfo") == 1


@pytest.mark.parametrize(
    ("key", "secret", "code", "text"),
    [
        (KEY, SECRET[::-1], "-1022", "Signature for this request is not valid."),
        ("ktWrongKey" + "Q" * 54, SECRET, "-2015", "Invalid API-key, IP, or permissions"),
    ],
    ids=["bad-signature", "unknown-key"],
)
async def test_bad_credentials_are_refused_by_the_venue_and_reported_clearly(
    server: BinanceTradingServer, key: str, secret: str, code: str, text: str
) -> None:
    broker = make_broker(server, key=key, secret=secret)
    with pytest.raises(BrokerError) as caught:
        await broker.connect()
    message = str(caught.value)
    assert "binance-paper" in message and code in message and text in message
    assert "api_key and api_secret" in message
    assert key not in message and secret not in message
    account = [r for r in server.requests if r.path == "/api/v3/account"]
    assert [r.status for r in account] == [400 if code == "-1022" else 401]  # not retried


async def test_unknown_session_symbol_is_a_start_up_error(server: BinanceTradingServer) -> None:
    broker = make_broker(server, symbols=("BTCUSDT", "DOGEUSDT"))
    with pytest.raises(BrokerError, match="DOGEUSDT"):
        await broker.connect()


async def test_transient_errors_at_start_up_are_retried(server: BinanceTradingServer) -> None:
    server.fail("GET", "/api/v3/exchangeInfo", status=503, times=2)
    server.fail("GET", "/api/v3/account", status=500, times=1)
    async with connected(server) as broker:
        assert broker.account().balance == 10000


async def test_generic_ccxt_provider_trades_on_the_exchange_it_names(
    server: BinanceTradingServer,
) -> None:
    spec = TradingSpec.model_validate(
        {"provider": "ccxt", "config": {"exchange": "binance", "restUrl": server.url}}
    )
    credentials = Credentials("ccxt", {"api_key": KEY, "api_secret": SECRET})
    broker = ccxt_broker.create(
        spec, precision=8, credentials=credentials, symbols=("BTC/USDT",), tuning=FAST
    )
    assert (broker.name, broker.is_live) == ("ccxt", False)  # sandbox unless told otherwise
    await broker.connect()
    try:
        assert broker.account().balance == 10000  # the quote of the session's market
        named = Order("kt0badc0de-1-1", "BTC/USDT", Side.BUY, OrderType.MARKET, 0.5, 100.0, T0)
        [fill] = fills(await broker.submit(named))
    finally:
        await broker.close()
    assert (fill.symbol, fill.quantity) == ("BTC/USDT", 0.5)
    assert server.order_requests[0].params["symbol"] == "BTCUSDT"


def test_paper_uses_the_testnet_and_live_the_mainnet_by_default() -> None:
    for provider, host in (
        ("binance-paper", "https://testnet.binance.vision/api/v3"),
        ("binance-live", "https://api.binance.com/api/v3"),
    ):
        spec = TradingSpec.model_validate({"provider": provider, "confirmLive": True})
        settings = VenueSettings.from_spec(spec)
        exchange = build_exchange(
            settings,
            api_key=KEY,
            secret=SECRET,
            password=None,
            tuning=Tuning(),
            redactor=Redactor([KEY, SECRET]),
        )
        assert exchange.urls["api"]["private"] == host
        assert exchange.enableRateLimit is True
        assert settings.sandbox is (provider == "binance-paper")


# -- placing orders ----------------------------------------------------------------------


async def test_market_order_fills_with_its_fee_in_the_quote_asset(
    server: BinanceTradingServer,
) -> None:
    async with connected(server) as broker:
        events = await broker.submit(order(1, quantity=0.5))
    [fill] = fills(events)
    # Binance charges a buy's commission in the asset bought: 0.0005 BTC at 100 USDT.
    assert (fill.quantity, fill.price) == (0.5, 100.0)
    assert fill.fee == pytest.approx(0.05)
    [request] = server.order_requests
    assert request.params["newClientOrderId"] == "kt0badc0de-1-1"
    assert request.params["quantity"] == "0.5" and request.params["type"] == "MARKET"


async def test_fee_paid_in_another_asset_is_converted_at_its_price() -> None:
    with BinanceTradingServer(
        api_key=KEY,
        api_secret=SECRET,
        markets=markets(),
        balances={"USDT": "10000", "BNB": "1"},
        commission_asset="BNB",
    ) as server:
        async with connected(server) as broker:
            [fill] = fills(await broker.submit(order(1, quantity=0.5)))
        assert server.trades[0].commission_asset == "BNB"
        assert server.trades[0].commission == Decimal("0.0001")  # 50 USDT x 0.1% / 500
        assert fill.fee == pytest.approx(0.05)


async def test_quantity_and_price_are_rounded_onto_the_markets_grid(
    server: BinanceTradingServer,
) -> None:
    buy = order(1, kind=OrderType.LIMIT, quantity=0.123456789, price=99.999)
    sell = order(2, side=Side.SELL, kind=OrderType.LIMIT, quantity=0.0400009, price=150.001)
    server.account.move("BTC", free=Decimal(1))
    async with connected(server) as broker:
        assert await broker.submit(buy) == []  # rests below the market
        assert await broker.submit(sell) == []
    sent = [r.params for r in server.order_requests]
    # Quantities go down (never more than asked); a buy's price down, a sell's up.
    assert (sent[0]["quantity"], sent[0]["price"]) == ("0.12345", "99.99")
    assert (sent[1]["quantity"], sent[1]["price"]) == ("0.04", "150.01")
    assert (buy.quantity, buy.price, sell.price) == (0.12345, 99.99, 150.01)


@pytest.mark.parametrize(
    ("quantity", "price", "kind", "reason", "words"),
    [
        (0.000004, 100.0, OrderType.MARKET, RejectReason.INVALID_QUANTITY, "lot step"),
        (0.04, 100.0, OrderType.MARKET, RejectReason.INVALID_QUANTITY, "minimum notional 5"),
        (0.04, 100.0, OrderType.LIMIT, RejectReason.INVALID_QUANTITY, "minimum notional 5"),
        (150.0, 100.0, OrderType.MARKET, RejectReason.INVALID_QUANTITY, "maximum order quantity"),
        (10_000.0, 100.0, OrderType.LIMIT, RejectReason.INVALID_QUANTITY, "maximum order quantity"),
        (0.5, 0.001, OrderType.LIMIT, RejectReason.INVALID_PRICE, "price tick"),
    ],
    ids=["below-step", "market-notional", "limit-notional", "market-lot", "lot", "tick"],
)
async def test_lot_size_and_notional_violations_are_refused_before_sending(
    server: BinanceTradingServer,
    quantity: float,
    price: float,
    kind: OrderType,
    reason: str,
    words: str,
) -> None:
    async with connected(server) as broker:
        [update] = updates(await broker.submit(order(1, kind=kind, quantity=quantity, price=price)))
    assert (update.status, update.reason) == (OrderStatus.FAILED, reason)
    assert words in update.message and "BTCUSDT" in update.message
    assert server.order_requests == []  # nothing reached the venue


async def test_venue_rejection_is_a_failed_order_with_the_venues_reason(
    server: BinanceTradingServer,
) -> None:
    async with connected(server) as broker:
        [update] = updates(await broker.submit(order(1, quantity=150.0, kind=OrderType.LIMIT)))
    assert update.status is OrderStatus.FAILED
    assert update.reason == RejectReason.INSUFFICIENT_BUYING_POWER
    assert "Account has insufficient balance for requested action." in update.message
    assert "-2010" in update.message
    assert [r.outcome for r in server.order_requests] == ["-2010"]


async def test_live_provider_logs_its_type_on_every_order(
    server: BinanceTradingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubetrade")
    async with connected(server, provider="binance-live") as broker:
        assert broker.is_live
        await broker.submit(order(1, quantity=0.1))
        await broker.submit(order(2, side=Side.SELL, quantity=0.1))
    lines = [r for r in caplog.records if "LIVE: real money" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in lines)
    assert all("binance-live" in r.getMessage() for r in lines)


# -- never twice ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["hang", "drop"])
async def test_order_that_reached_the_venue_without_an_answer_is_not_placed_twice(
    server: BinanceTradingServer, fault: str
) -> None:
    if fault == "hang":
        server.hang("POST", "/api/v3/order", after=True)  # created, then no answer in time
    else:
        server.drop("POST", "/api/v3/order", after=True)  # created, then the connection dies
    async with connected(server) as broker:
        events = await broker.submit(order(1, quantity=0.5))
    assert len(server.order_requests) == 1
    assert len(server.orders_with("kt0badc0de-1-1")) == 1
    lookups = [r for r in server.requests if r.method == "GET" and r.path == "/api/v3/order"]
    assert lookups and lookups[0].params["origClientOrderId"] == "kt0badc0de-1-1"
    [fill] = fills(events)  # the order's fill is still delivered, once
    assert fill.quantity == 0.5


async def test_order_that_never_reached_the_venue_is_sent_again_once(
    server: BinanceTradingServer,
) -> None:
    server.hang("POST", "/api/v3/order", after=False)
    async with connected(server) as broker:
        events = await broker.submit(order(1, quantity=0.5))
    assert calls(server, "POST", "/api/v3/order") == 2  # the lost one, and the resend
    assert len(server.orders_with("kt0badc0de-1-1")) == 1
    assert [f.quantity for f in fills(events)] == [0.5]


async def test_order_in_doubt_is_resolved_on_the_next_bar_never_resent_blindly(
    server: BinanceTradingServer,
) -> None:
    server.hang("POST", "/api/v3/order", after=True)
    server.fail("GET", "/api/v3/order", status=503, times=FAST.backoff.attempts)
    async with connected(server) as broker:
        assert await broker.submit(order(1, quantity=0.5)) == []  # fate unknown: pending
        events = await broker.on_bar(bar(1))
    assert len(server.order_requests) == 1
    [fill] = fills(events)
    assert (fill.quantity, fill.time) == (0.5, bar(1).time)


async def test_order_in_doubt_that_never_arrived_fails_on_the_next_bar(
    server: BinanceTradingServer,
) -> None:
    server.hang("POST", "/api/v3/order", after=False)
    server.fail("GET", "/api/v3/order", status=503, times=FAST.backoff.attempts)
    async with connected(server) as broker:
        assert await broker.submit(order(1, quantity=0.5)) == []
        [update] = updates(await broker.on_bar(bar(1)))
    assert (update.status, update.time) == (OrderStatus.FAILED, bar(1).time)
    assert "never received" in update.message
    assert server.orders == [] and calls(server, "POST", "/api/v3/order") == 1


async def test_order_refused_unprocessed_every_time_fails_at_once(
    server: BinanceTradingServer,
) -> None:
    server.fail("POST", "/api/v3/order", status=429, code=-1003, msg="Too many requests.", times=9)
    async with connected(server) as broker:
        [update] = updates(await broker.submit(order(1, quantity=0.5)))
    assert update.status is OrderStatus.FAILED and "Too many requests." in update.message
    assert calls(server, "POST", "/api/v3/order") == FAST.backoff.attempts
    assert calls(server, "GET", "/api/v3/order") == 0  # never in doubt: nothing to look up


async def test_resend_after_a_restart_adopts_the_open_order(
    server: BinanceTradingServer,
) -> None:
    resting = order(1, kind=OrderType.LIMIT, quantity=0.2, price=90.0)
    async with connected(server) as broker:
        assert await broker.submit(resting) == []
    async with connected(server) as restarted:  # a new process sends the same order again
        assert (
            await restarted.submit(order(1, kind=OrderType.LIMIT, quantity=0.2, price=90.0)) == []
        )
        server.set_price("BTCUSDT", 89)
        [fill] = fills(await restarted.on_bar(bar(1)))
    assert [r.outcome for r in server.order_requests] == ["NEW", "-2010"]  # Duplicate order sent.
    assert len(server.orders_with("kt0badc0de-1-1")) == 1
    assert fill.price == 90.0


async def test_lookup_after_a_restart_reports_what_the_venue_did(
    server: BinanceTradingServer,
) -> None:
    resting = order(1, kind=OrderType.LIMIT, quantity=0.2, price=90.0)
    async with connected(server) as broker:
        await broker.submit(resting)
    server.fill(resting.client_order_id, "0.05")
    async with connected(server) as restarted:
        [fill] = await restarted.lookup(resting) or []
        assert isinstance(fill, Fill) and (fill.quantity, fill.price) == (0.05, 90.0)
        assert await restarted.lookup(order(2)) is None  # never reached the venue
        server.set_price("BTCUSDT", 89)  # still followed: the rest fills on the next bar
        [rest] = fills(await restarted.on_bar(bar(1)))
    assert rest.quantity == pytest.approx(0.15)
    assert fill.fill_id != rest.fill_id


async def test_rate_limited_order_waits_and_succeeds(server: BinanceTradingServer) -> None:
    server.fail(
        "POST",
        "/api/v3/order",
        status=429,
        code=-1003,
        msg="Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute.",
        retry_after=1,
    )
    async with connected(server) as broker:
        [fill] = fills(await broker.submit(order(1, quantity=0.5)))
    assert fill.quantity == 0.5
    statuses = [r.status for r in server.requests if r.path == "/api/v3/order"]
    assert statuses == [429, 200]  # refused unprocessed, so no look-up was needed
    assert len(server.orders_with("kt0badc0de-1-1")) == 1


async def test_clock_drift_mid_session_is_corrected(server: BinanceTradingServer) -> None:
    async with connected(server) as broker:
        server.clock_offset_ms = -20_000  # the venue now sees our requests from its future
        [fill] = fills(await broker.submit(order(1, quantity=0.5)))
    assert fill.quantity == 0.5
    assert [r.status for r in server.requests if r.path == "/api/v3/order"] == [400, 200]


# -- fills, cancels, the account -----------------------------------------------------------


def apply(book: Book, events: list[BrokerEvent]) -> None:
    """What the engine does with a broker's events."""
    for event in events:
        if isinstance(event, Fill):
            book.apply_fill(event)
        else:
            target = book.orders[event.client_order_id]
            book.set_status(target, event.status, event.time, event.reason, event.message)


async def test_partial_fills_accumulate_to_the_right_position_and_cash(
    server: BinanceTradingServer,
) -> None:
    book = Book(ledger=Ledger(cash=10_000.0))
    resting = order(1, kind=OrderType.LIMIT, quantity=0.3, price=99.0)
    book.add(resting)
    async with connected(server) as broker:
        apply(book, await broker.submit(resting))
        server.fill("kt0badc0de-1-1", "0.1")
        apply(book, await broker.on_bar(bar(1)))
        server.fill("kt0badc0de-1-1", "0.05")
        apply(book, await broker.on_bar(bar(2)))
        assert (resting.status, resting.filled_quantity) == (OrderStatus.PENDING, 0.15)
        apply(book, await broker.on_bar(bar(3)))  # nothing new: nothing counted twice
        server.set_price("BTCUSDT", "98.5")  # trades through the limit: the rest fills
        apply(book, await broker.on_bar(bar(4)))
    assert resting.status is OrderStatus.FILLED
    assert [f.quantity for f in book.fills] == [0.1, 0.05, 0.15]
    # Binance took each buy's commission out of the BTC bought: the book holds what the
    # venue holds, and its cash is the venue's USDT, which paid no fee.
    commission = sum(t.commission for t in server.trades)
    assert commission == Decimal("0.0003")
    assert [f.fee_base for f in book.fills] == pytest.approx([0.0001, 0.00005, 0.00015])
    btc, usdt = server.balance("BTC")[0], server.balance("USDT")[0]
    assert btc == Decimal("0.3") - commission
    assert book.ledger.quantity("BTCUSDT") == pytest.approx(float(btc))
    assert usdt == Decimal("10000") - Decimal("0.3") * 99
    assert book.ledger.cash == pytest.approx(float(usdt))
    assert book.ledger.total_fees == pytest.approx(float(commission * 99))


async def test_market_order_cut_short_by_liquidity_ends_cancelled_with_its_fills(
    server: BinanceTradingServer,
) -> None:
    server.markets["BTCUSDT"].liquidity = Decimal("0.4")
    server.markets["BTCUSDT"].fill_parts = 2
    async with connected(server) as broker:
        events = await broker.submit(order(1, quantity=1.0))
    assert [f.quantity for f in fills(events)] == [0.2, 0.2]
    [update] = updates(events)
    assert (update.status, update.reason) == (OrderStatus.CANCELLED, "expired")
    assert "0.4 of 1 filled" in update.message


async def test_cancel_cancel_all_open_orders_and_status(server: BinanceTradingServer) -> None:
    first = order(1, kind=OrderType.LIMIT, quantity=0.2, price=90.0)
    second = order(2, kind=OrderType.LIMIT, quantity=0.2, price=91.0)
    third = order(3, kind=OrderType.LIMIT, quantity=0.2, price=92.0)
    async with connected(server) as broker:
        for each in (first, second, third):
            await broker.submit(each)
        assert {o.client_order_id for o in await broker.open_orders()} == {
            first.client_order_id,
            second.client_order_id,
            third.client_order_id,
        }
        server.fill(first.client_order_id, "0.05")
        events = await broker.cancel(first)
        assert [f.quantity for f in fills(events)] == [0.05]
        assert [u.status for u in updates(events)] == [OrderStatus.CANCELLED]
        assert await broker.cancel(first) == []  # final already
        events = await broker.cancel_all()
        assert {u.client_order_id for u in updates(events)} == {
            second.client_order_id,
            third.client_order_id,
        }
        status = await broker.order_status(second)
        assert status is not None and status.status == "canceled"
        assert await broker.order_status(order(9)) is None
        assert await broker.open_orders() == []
    assert server.balance("USDT") == (Decimal("10000") - Decimal("0.05") * 90, Decimal(0))


# -- secrets ---------------------------------------------------------------------------------


async def test_secrets_never_reach_logs_or_exceptions(
    server: BinanceTradingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("ccxt", "ccxt.base.exchange", "kubetrade", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    texts: list[str] = []
    bad = make_broker(server, secret=SECRET[::-1])
    try:
        await bad.connect()
    except BrokerError as exc:
        texts += [str(exc), repr(exc), *traceback.format_exception(exc)]
    texts.append(repr(bad))
    server.hang("POST", "/api/v3/order", after=True)
    server.fail("GET", "/api/v3/openOrders", status=503)
    async with connected(server) as broker:
        texts.append(repr(broker))
        for event in await broker.submit(order(1, quantity=0.5)):
            texts.append(repr(event))
        resting = order(2, kind=OrderType.LIMIT, quantity=0.2, price=90.0)
        await broker.submit(resting)
        server.fill(resting.client_order_id, "0.1")
        texts += [repr(e) for e in await broker.on_bar(bar(1))]
        texts += [repr(e) for e in await broker.on_bar(bar(2))]
        texts += [repr(e) for e in await broker.cancel(resting)]
        texts += [
            repr(e) for e in await broker.submit(order(3, quantity=500.0, kind=OrderType.LIMIT))
        ]
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/v3/order" in logged  # the wire log was captured
    everything = logged + "\n".join(texts)
    assert KEY not in everything
    assert SECRET not in everything and SECRET[::-1] not in everything
    assert not re.search(r"signature=[0-9a-f]{16}", everything)


# -- end to end: kubetrade run -----------------------------------------------------------------

_FILLED = re.compile(r"filled\s+(BUY|SELL) ([\d.]+) BTCUSDT @ ([\d.]+) fee ([\d.e-]+)")


@pytest.mark.parametrize(
    "commission_asset",
    # Binance's default takes a buy's commission from the BTC bought and a sell's from the
    # USDT received; with BNB held (and the option on) it takes BNB instead.
    [None, "BNB"],
    ids=["fees-in-the-asset-received", "fees-in-bnb"],
)
def test_kubetrade_run_trades_on_binance_paper_end_to_end(
    tmp_path: Path, commission_asset: str | None
) -> None:
    closes = [100.0] * 6 + [101, 103, 105, 107, 104, 100, 96, 92, 95, 99, 104, 108, 110]
    bars = write_bars(tmp_path / "bars.csv", "BTCUSDT", flat_rows(closes))
    # 0.1005 BTC less a 0.1% commission in BTC is off the 0.00001 lot grid: selling it all
    # leaves a remainder no order can sell, which the strategy must take for flat.
    quantity = 0.1005 if commission_asset is None else 0.1
    with BinanceTradingServer(
        api_key=KEY,
        api_secret=SECRET,
        markets=markets(),
        balances={"USDT": "10000", "BNB": "1"},
        commission_asset=commission_asset,
    ) as server:
        session = tmp_path / "session.yaml"
        session.write_text(
            f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: binance-e2e}}
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy:
    path: {SMA_WASM}
    config: {{fastPeriod: 2, slowPeriod: 4, quantity: {quantity}}}
  marketData:
    provider: replay
    config: {{path: {bars}, speed: 0}}
  trading:
    provider: binance-paper
    config: {{restUrl: "{server.url}"}}
"""
        )
        out = tmp_path / "summary.json"
        env = {
            **os.environ,
            "PYTHONSAFEPATH": "1",
            "KUBETRADE_BINANCE_PAPER_API_KEY": KEY,
            "KUBETRADE_BINANCE_PAPER_API_SECRET": SECRET,
        }
        result = subprocess.run(
            [str(Path(sys.executable).parent / "kubetrade"), "--log-level", "debug", "run",
             "--no-http", "--summary-json", str(out), str(session)],
            capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        trades = list(server.trades)
        btc, _ = server.balance("BTC")
        usdt, _ = server.balance("USDT")
        bnb, _ = server.balance("BNB")
    assert KEY not in result.stdout + result.stderr and SECRET not in result.stdout + result.stderr
    printed = _FILLED.findall(result.stdout)
    assert len(printed) >= 2, result.stdout  # at least one round trip
    assert [(s, float(q), float(p)) for s, q, p, _ in printed] == [
        (t.order.side, float(t.quantity), float(t.price)) for t in trades
    ]
    # The fee each fill reports, in USDT: BNB at 500, BTC at the trade's price.
    rates = {"BNB": Decimal(500), "USDT": Decimal(1)}
    fees = [t.commission * rates.get(t.commission_asset, t.price) for t in trades]
    for (_, _, _, fee), expected in zip(printed, fees, strict=True):
        assert float(fee) == pytest.approx(float(expected), rel=1e-3)
    ids = [r.params["newClientOrderId"] for r in server.order_requests]
    assert len(ids) == len(set(ids)) == len(trades)
    assert all(re.fullmatch(r"kt[0-9a-f]{8}-1-\d+", i) for i in ids)
    summary = json.loads(out.read_text())
    # Every sell of the whole position went through: the book's position is what the venue
    # holds, commissions taken in BTC included.
    assert summary["fills"] == len(trades) and summary["rejected"] == 0
    # Up, down, up again: the second entry happens although the venue kept a remainder.
    assert [t.order.side for t in trades] == ["BUY", "SELL", "BUY"]
    bought = sum(t.quantity for t in trades if t.order.side == "BUY")
    sold = sum(t.quantity for t in trades if t.order.side == "SELL")
    kept = sum(t.commission for t in trades if t.commission_asset == "BTC")
    assert (kept > 0) is (commission_asset is None)
    assert btc == bought - sold - kept
    # The book's equity is the venue's quote cash plus the session's symbols at the last
    # close; the BNB that pays the fees is not one of the session's symbols.
    last_close = Decimal(str(closes[-1]))
    venue_equity = usdt + btc * last_close
    if commission_asset == "BNB":
        assert bnb < 1  # the fees were taken from it
        # Fees paid in BNB are a cost of the session all the same: the book charges them
        # (converted at 500 USDT per BNB) against its cash.
        assert summary["equity"] == pytest.approx(float(venue_equity - sum(fees)), abs=1e-6)
    else:
        assert bnb == 1  # untouched: the venue took BTC and USDT, which the book counts
        assert summary["equity"] == pytest.approx(float(venue_equity), abs=1e-6)
