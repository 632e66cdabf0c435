"""The Interactive Brokers provider against a local server speaking the TWS API wire protocol.

A real ib_async client talks to tests/servers/tws.py over loopback; nothing
of ours is mocked. The last test runs `kubetrade run` with `ibkr-paper` end
to end and checks its fills and positions against what the server recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from helpers import SMA_WASM, flat_rows, write_bars
from servers.tws import ACCOUNT, Listing, TwsServer

from kubetrade.runner.brokers import BrokerError, BrokerEvent, OrderUpdate, create_broker
from kubetrade.runner.brokers.ibkr.broker import IbkrBroker
from kubetrade.runner.domain import Fill, Order, OrderStatus, OrderType, RejectReason, Side
from kubetrade.runner.session import client_order_id
from kubetrade.runner.spec import IbkrConfig, TradingSpec

KUBETRADE = Path(sys.executable).parent / "kubetrade"
ACME = Listing("ACME", 1001, primary_exchange="NASDAQ", long_name="Acme Corp")
BRK_B = Listing("BRK B", 1002, primary_exchange="NYSE")
CLIENT_ID = 7
LIVE_ACCOUNT = "U1234567"  # IB's live account ids do not start with DU
SETTLE_S = 10.0  # a liveness guard for conditions that hold within milliseconds

BrokerFactory = Callable[..., Awaitable[IbkrBroker]]


@pytest.fixture
async def server() -> AsyncIterator[TwsServer]:
    tws = await TwsServer(listings=[ACME, BRK_B]).start()
    tws.prices["ACME"] = 12.5
    yield tws
    await tws.stop()


@pytest.fixture
async def make_broker(server: TwsServer) -> AsyncIterator[BrokerFactory]:
    brokers: list[IbkrBroker] = []

    async def make(**config: object) -> IbkrBroker:
        settings = {"port": server.port, "clientId": CLIENT_ID, "connectTimeoutSeconds": 2}
        broker = IbkrBroker(
            config=IbkrConfig.model_validate(settings | config),
            reconnect_initial=0.05,
            reconnect_max=0.2,
        )
        brokers.append(broker)
        await broker.connect()
        return broker

    yield make
    for broker in brokers:
        await broker.close()


def order(
    seq: int,
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    quantity: float = 10,
    price: float = 12.5,
    symbol: str = "ACME",
) -> Order:
    return Order(f"kt0test-1-{seq}", symbol, side, order_type, quantity, price, time=0)


def fills(events: list[BrokerEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def updates(events: list[BrokerEvent]) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate)]


async def collect_until(
    broker: IbkrBroker, done: Callable[[list[BrokerEvent]], bool], events: list[BrokerEvent]
) -> list[BrokerEvent]:
    """Poll the broker, adding to `events`, until `done(events)`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while not done(events):
        assert loop.time() < deadline, f"still waiting; events so far: {events}"
        await asyncio.sleep(0.02)
        events += await broker.poll()
    return events


def filled_quantity(ref: str) -> Callable[[list[BrokerEvent]], float]:
    return lambda events: sum(f.quantity for f in fills(events) if f.client_order_id == ref)


def place_messages(server: TwsServer, ref: str) -> list[tuple[str, ...]]:
    return [fields for fields in server.messages(3) if fields[26] == ref]


# ------------------------------------------------------------------- connect, contracts


async def test_connect_reads_the_account_and_resolves_contracts(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    server.hold("ACME", 5, 11.0)
    broker = await make_broker()
    start = server.received[0]
    assert (start.msg_id, start.fields[2]) == (71, str(CLIENT_ID))  # startApi after the handshake
    asked = {r.msg_id for r in server.received}
    # What ib_async asks for while connecting, and the account summary we ask for.
    assert {61, 5, 99, 6, 76, 7, 62} <= asked
    assert broker.account_id == ACCOUNT
    account = broker.account()
    assert account.balance == pytest.approx(server.cash)
    assert account.equity == pytest.approx(server.cash + 5 * 12.5)
    held = broker.positions()
    assert set(held) == {"ACME"}
    assert (held["ACME"].quantity, held["ACME"].average_cost) == (5, 11.0)

    # A share class: BRK.B in the session is "BRK B" at IB, routed through SMART.
    server.prices["BRK B"] = 480.0
    events = await broker.submit(order(1, symbol="BRK.B", quantity=1))
    (details,) = [f for f in server.messages(9) if f[4] == "BRK B"]
    assert (details[10], details[12]) == ("SMART", "USD")  # exchange, currency
    (placed,) = place_messages(server, "kt0test-1-1")
    assert (placed[2], placed[3], placed[9]) == ("1002", "BRK B", "SMART")  # conId symbol exch
    (fill,) = fills(events)
    assert (fill.symbol, fill.quantity, fill.price) == ("BRK.B", 1, 480.0)

    events = await broker.submit(order(2, symbol="NOPE"))
    (refused,) = updates(events)
    assert (refused.status, refused.reason) == (OrderStatus.FAILED, RejectReason.UNKNOWN_SYMBOL)
    assert "'NOPE'" in refused.message and "error 200" in refused.message
    assert place_messages(server, "kt0test-1-2") == []


async def test_unreachable_gateway_and_unmanaged_account_are_clear_errors(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    with pytest.raises(BrokerError, match=r"spec\.trading\.config\.account") as unmanaged:
        await make_broker(account="DU0000999")
    assert "DU0000999" not in str(unmanaged.value) and "999" in str(unmanaged.value)
    await make_broker()
    with pytest.raises(BrokerError, match="IB error 326: Unable to connect as the client id"):
        await make_broker(connectTimeoutSeconds=0.5)  # the same clientId twice
    await server.refuse()
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{server.port}.*Connect call failed"):
        await make_broker(clientId=8)


async def _connect_as(provider: str, server: TwsServer, **config: object) -> IbkrBroker:
    trading = TradingSpec.model_validate(
        {
            "provider": provider,
            "confirmLive": provider == "ibkr-live",
            "config": {"port": server.port, "clientId": 12, "connectTimeoutSeconds": 2, **config},
        }
    )
    broker = create_broker(trading, precision=8)
    assert isinstance(broker, IbkrBroker)
    try:
        await broker.connect()
    except BaseException:
        await broker.close()
        raise
    return broker


@pytest.mark.parametrize(
    "accounts",
    [[LIVE_ACCOUNT], [ACCOUNT, LIVE_ACCOUNT]],
    ids=["a live account", "a paper and a live account"],
)
async def test_ibkr_paper_refuses_a_login_that_manages_a_live_account(
    server: TwsServer, accounts: list[str]
) -> None:
    server.accounts = accounts
    with pytest.raises(BrokerError, match="live account") as refused:
        await _connect_as("ibkr-paper", server, account=accounts[0])
    message = str(refused.value)
    assert "ibkr-paper" in message and "paper accounts start with DU" in message
    assert LIVE_ACCOUNT not in message
    assert server.orders == []


async def test_ibkr_live_refuses_a_paper_account(server: TwsServer) -> None:
    server.accounts = [ACCOUNT]
    with pytest.raises(BrokerError, match="is a paper account") as refused:
        await _connect_as("ibkr-live", server)
    assert ACCOUNT not in str(refused.value)


async def test_each_ibkr_provider_connects_to_its_own_kind_of_account(server: TwsServer) -> None:
    server.accounts = [ACCOUNT]
    paper = await _connect_as("ibkr-paper", server)
    assert paper.account_id == ACCOUNT and not paper.is_live
    await paper.close()
    server.accounts = [LIVE_ACCOUNT]
    live = await _connect_as("ibkr-live", server)
    assert live.account_id == LIVE_ACCOUNT and live.is_live
    await live.close()


# ---------------------------------------------------------------------------- orders


async def test_market_order_is_filled_with_the_commission_as_fee(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    server.half_spread = 0.05
    broker = await make_broker()
    events = await broker.submit(order(1))
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 10, events)
    (fill,) = fills(events)
    (execution,) = server.executions
    assert (fill.side, fill.quantity, fill.price) == (Side.BUY, 10, 12.55)
    assert fill.fee == execution.commission == 1.0  # $0.005 a share, $1 minimum
    assert fill.fill_id == f"ib-{execution.exec_id}"
    (sent,) = server.orders_with_ref("kt0test-1-1")
    assert (sent.order_type, sent.tif, sent.quantity, sent.account) == ("MKT", "DAY", 10, ACCOUNT)
    assert broker.account().balance == pytest.approx(server.cash)
    assert broker.account().total_fees == 1.0
    assert broker.positions()["ACME"].quantity == 10


async def test_limit_order_rests_then_fills(server: TwsServer, make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    # 12.004 is off IB's 0.01 tick: a buy goes to the tick below, never above the limit.
    events = await broker.submit(order(1, order_type=OrderType.LIMIT, price=12.004))
    (sent,) = server.orders_with_ref("kt0test-1-1")
    assert (sent.order_type, sent.limit, sent.tif, sent.status) == ("LMT", 12.0, "GTC", "Submitted")
    events += await broker.poll()
    assert fills(events) == []  # 12.5 is above the limit: it rests
    server.set_price("ACME", 11.9)
    await collect_until(broker, lambda e: bool(fills(e)), events)
    (fill,) = fills(events)
    assert (fill.quantity, fill.price, fill.fee) == (10, 11.9, 1.0)
    assert updates(events) == []  # filled, not cancelled


async def test_cancel_a_resting_order(server: TwsServer, make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    resting = order(1, order_type=OrderType.LIMIT, price=11)
    assert await broker.submit(resting) == []
    events = await broker.cancel(resting)
    await collect_until(broker, lambda e: bool(updates(e)), events)
    (cancelled,) = updates(events)
    assert (cancelled.client_order_id, cancelled.status) == ("kt0test-1-1", OrderStatus.CANCELLED)
    (sent,) = server.orders_with_ref("kt0test-1-1")
    assert sent.status == "Cancelled"
    assert [f[2] for f in server.messages(4)] == [str(sent.order_id)]
    # A filled order has nothing left to cancel: no request, no event.
    filled = order(2)
    await collect_until(broker, lambda e: bool(fills(e)), await broker.submit(filled))
    assert await broker.cancel(filled) == []
    assert len(server.messages(4)) == 1


async def test_partial_fills_then_cancel(server: TwsServer, make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    resting = order(1, order_type=OrderType.LIMIT, price=12.0)
    events = await broker.submit(resting)
    server.fill("kt0test-1-1", 4)
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 4, events)
    server.fill("kt0test-1-1", 3, price=11.98)
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 7, events)
    events += await broker.cancel(resting)
    await collect_until(broker, lambda e: bool(updates(e)), events)
    assert [(type(e).__name__, getattr(e, "quantity", None)) for e in events] == [
        ("Fill", 4),
        ("Fill", 3),
        ("OrderUpdate", None),  # the cancel comes after the fills it follows
    ]
    first, second = fills(events)
    assert (first.price, first.fee) == (12.0, 1.0)  # the order's minimum commission
    assert (second.price, second.fee) == (11.98, 0.015)  # then $0.005 a share
    assert updates(events)[0].status is OrderStatus.CANCELLED
    assert server.position("ACME") == 7


async def test_refusals_are_failed_orders_with_the_reason(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    server.reject_next_order = "Insufficient funds to cover this order"
    events = await broker.submit(order(1))
    await collect_until(broker, lambda e: bool(updates(e)), events)
    (failed,) = updates(events)
    assert (failed.status, failed.reason) == (
        OrderStatus.FAILED,
        RejectReason.INSUFFICIENT_BUYING_POWER,
    )
    assert "IB error 201" in failed.message and "Insufficient funds" in failed.message
    # Half a share breaks ACME's size increment: refused before anything is sent.
    (fractional,) = await broker.submit(order(2, quantity=0.5))
    assert isinstance(fractional, OrderUpdate)
    assert (fractional.status, fractional.reason) == (
        OrderStatus.FAILED,
        RejectReason.INVALID_QUANTITY,
    )
    assert place_messages(server, "kt0test-1-2") == []


# ------------------------------------------------------------------------- reconnects


async def test_order_lost_with_the_connection_is_sent_again_once(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    server.drop_next_order = "lost"
    events = await broker.submit(order(1))
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 10, events)
    assert server.connects == 2
    assert len(place_messages(server, "kt0test-1-1")) == 2  # the lost one, then the resend
    assert len(server.orders_with_ref("kt0test-1-1")) == 1
    assert len(fills(events)) == 1


async def test_filled_order_accepted_before_the_drop_is_not_sent_again(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    server.drop_next_order = "after_accept"  # filled at IB, but the answer never arrives
    events = await broker.submit(order(1))
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 10, events)
    assert server.connects == 2
    assert len(place_messages(server, "kt0test-1-1")) == 1
    assert len(server.orders_with_ref("kt0test-1-1")) == 1
    (fill,) = fills(events)
    assert fill.fee == server.executions[0].commission == 1.0
    # The engine sending it again changes nothing either.
    assert fills(await broker.submit(order(1))) == []
    assert len(place_messages(server, "kt0test-1-1")) == 1


async def test_resting_order_accepted_before_the_drop_is_found_by_its_ref(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    server.drop_next_order = "after_accept"  # resting at IB, but the answer never arrives
    resting = order(1, order_type=OrderType.LIMIT, price=12.0)
    events = await broker.submit(resting)
    await collect_until(broker, lambda e: server.connects == 2 and broker.connected, events)
    # Found among the open orders IB lists on reconnect, so not sent again ...
    assert len(place_messages(server, "kt0test-1-1")) == 1
    # ... and linked again: it fills, and can be cancelled, as if nothing had happened.
    server.fill("kt0test-1-1", 6)
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 6, events)
    events += await broker.cancel(resting)
    await collect_until(broker, lambda e: bool(updates(e)), events)
    assert [u.status for u in updates(events)] == [OrderStatus.CANCELLED]
    assert [o.status for o in server.orders] == ["Cancelled"]


async def test_fills_made_while_disconnected_are_not_lost(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    events = await broker.submit(order(1))
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-1")(e) == 10, events)
    seen = server.executions[0].time
    events += await broker.submit(order(2, Side.SELL, OrderType.LIMIT, price=13.0))

    await server.refuse()  # the gateway goes away and stays away for a while
    server.drop()
    server.set_price("ACME", 13.2)  # the resting sell fills meanwhile
    queued = order(3, quantity=5)
    assert await broker.submit(queued) == []  # placed while disconnected: waits
    await asyncio.sleep(0.3)  # a few refused reconnect attempts
    assert server.connects == 1
    await server.accept()

    await collect_until(broker, lambda e: filled_quantity("kt0test-1-3")(e) == 5, events)
    await collect_until(broker, lambda e: filled_quantity("kt0test-1-2")(e) == 10, events)
    by_order = {f.client_order_id: (f.side, f.quantity, f.price) for f in fills(events)}
    assert by_order == {
        "kt0test-1-1": (Side.BUY, 10, 12.5),
        "kt0test-1-2": (Side.SELL, 10, 13.2),
        "kt0test-1-3": (Side.BUY, 5, 13.2),
    }
    assert len(fills(events)) == 3  # nothing twice, though the first is asked for again
    assert sorted(f.fill_id for f in fills(events)) == sorted(
        f"ib-{e.exec_id}" for e in server.executions
    )
    # After reconnecting: executions of this client and account since the last one seen.
    last = server.messages(7)[-1]
    since = seen.strftime("%Y%m%d-%H:%M:%S")
    assert (last[3], last[4], last[5]) == (str(CLIENT_ID), ACCOUNT, since)


async def test_after_a_restart_lookup_tells_what_became_of_each_order(
    server: TwsServer, make_broker: BrokerFactory
) -> None:
    before = await make_broker()
    filled, resting, never_sent = order(1), order(2, order_type=OrderType.LIMIT, price=12), order(3)
    await collect_until(before, lambda e: bool(fills(e)), await before.submit(filled))
    await before.submit(resting)
    await before.close()  # the runner stops (or crashes); its orders stay at IB

    after = await make_broker()  # a new process, the same clientId
    known = await after.lookup(filled)
    assert known is not None
    (fill,) = fills(known)
    assert (fill.fill_id, fill.quantity, fill.fee) == (f"ib-{server.executions[0].exec_id}", 10, 1)
    assert await after.lookup(resting) == []  # open at IB, no fills yet: followed from now on
    assert await after.lookup(never_sent) is None  # safe to send
    server.fill("kt0test-1-2", 10)
    events = await collect_until(after, lambda e: bool(fills(e)), [])
    assert [(f.client_order_id, f.quantity) for f in fills(events)] == [("kt0test-1-2", 10)]
    assert len(server.orders) == 2  # nothing was sent again


async def test_live_provider_logs_every_order_and_never_the_account_above_info(
    server: TwsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.accounts = [LIVE_ACCOUNT]  # ibkr-live refuses a paper account
    trading = TradingSpec.model_validate(
        {
            "provider": "ibkr-live",
            "confirmLive": True,
            "config": {"port": server.port, "clientId": 9, "account": LIVE_ACCOUNT},
        }
    )
    broker = create_broker(trading, precision=8)
    assert isinstance(broker, IbkrBroker) and broker.is_live
    await broker.connect()
    try:
        events = await broker.submit(order(1))
        server.reject_next_order = "Order size exceeds the account's limit"
        events += await broker.submit(order(2))
        await collect_until(broker, lambda e: len(fills(e)) == 1 and len(updates(e)) == 1, events)
        server.drop()  # ib_async reports the drop, with what it knows, as errors
        await asyncio.sleep(0.2)
    finally:
        await broker.close()
    order_lines = [r for r in caplog.records if "kt0test-1-" in r.getMessage()]
    for ref in ("kt0test-1-1", "kt0test-1-2"):
        assert any(ref in r.getMessage() and "ibkr-live" in r.getMessage() for r in order_lines)
    loud = [r for r in caplog.records if r.levelno > logging.INFO]
    assert loud, "expected warnings and errors to check"
    assert not [r.getMessage() for r in loud if LIVE_ACCOUNT in r.getMessage()]
    assert any("*****567" in r.getMessage() for r in loud)


# ----------------------------------------------------------------- kubetrade run, end to end


async def test_kubetrade_run_trades_through_ibkr_paper(server: TwsServer, tmp_path: Path) -> None:
    # fast SMA(2) / slow SMA(3): up-crossings at bars 4 and 9, a down-crossing at bar 7.
    closes = [10, 10, 10, 10, 13, 16, 12, 8, 9, 15, 15]
    bars = write_bars(tmp_path / "bars.csv", "ACME", flat_rows(closes))
    server.prices["ACME"] = 12.0
    server.half_spread = 0.05
    session = tmp_path / "session.yaml"
    session.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: ibkr-e2e}}
spec:
  symbols: [ACME]
  interval: 1m
  strategy:
    path: {SMA_WASM}
    config: {{fastPeriod: 2, slowPeriod: 3, quantity: 10}}
  marketData:
    provider: replay
    config: {{path: {bars}}}
  trading:
    provider: ibkr-paper
    config: {{host: 127.0.0.1, port: {server.port}, clientId: 11, connectTimeoutSeconds: 5}}
"""
    )
    out = tmp_path / "summary.json"
    proc = await asyncio.create_subprocess_exec(
        str(KUBETRADE), "run", "--no-http", "--summary-json", str(out), str(session),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    stdout_bytes, stderr_bytes = await asyncio.wait_for(proc.communicate(), 120)
    stdout, stderr = stdout_bytes.decode(), stderr_bytes.decode()
    assert proc.returncode == 0, stderr

    refs = [client_order_id("ibkr-e2e", 1, n) for n in (1, 2, 3)]
    assert [(o.order_ref, o.action, o.quantity, o.order_type) for o in server.orders] == [
        (refs[0], "BUY", 10, "MKT"),
        (refs[1], "SELL", 10, "MKT"),
        (refs[2], "BUY", 10, "MKT"),
    ]
    venue = [(e.side, e.shares, e.price, e.commission) for e in server.executions]
    assert venue == [("BOT", 10, 12.05, 1.0), ("SLD", 10, 11.95, 1.0), ("BOT", 10, 12.05, 1.0)]
    # What the runner printed for each fill is what the venue executed.
    printed = re.findall(r"filled\s+(BUY|SELL) (\S+) ACME @ (\S+) fee (\S+)", stdout)
    assert [(s, float(q), float(p), float(f)) for s, q, p, f in printed] == [
        ("BUY", 10, 12.05, 1.0),
        ("SELL", 10, 11.95, 1.0),
        ("BUY", 10, 12.05, 1.0),
    ]
    assert server.position("ACME") == 10
    assert server.cash == pytest.approx(100_000 - 121.5 + 118.5 - 121.5)
    summary = json.loads(out.read_text())
    assert (summary["orders"], summary["fills"], summary["rejected"]) == (3, 3, 0)
    assert summary["realized_pnl"] == pytest.approx((11.95 - 12.05) * 10)
    # The book started from the venue's cash and holds the venue's position at the last close.
    assert summary["equity"] == pytest.approx(server.cash + 10 * 15)
    assert ACCOUNT not in stderr  # warnings and errors carry it masked, if at all
