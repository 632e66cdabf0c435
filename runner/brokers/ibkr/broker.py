"""Interactive Brokers through TWS or IB Gateway (ibkr-paper, ibkr-live), with ib_async.

The engine's book is the session's record; this provider tells it what IB
did, as OrderUpdate and Fill events:

- submit() resolves the symbol's contract, checks the quantity against IB's
  size rules and sends a market order (DAY) or a limit order (GTC, on the
  tick grid) whose orderRef is our client order id. It waits briefly for IB
  to acknowledge the order (a market order: to fill it) and returns what is
  known by then.
- Every execution becomes one Fill, with its commission as the fee; whatever
  arrives between calls is delivered by on_bar() and poll(). An order IB
  cancels or refuses becomes CANCELLED, or FAILED with IB's reason.
- An order is never sent twice: before sending, its orderRef is looked up in
  the orders and executions IB reports; after a reconnect, orders whose fate
  is unknown are looked up the same way and sent again only if IB never saw
  them. Orders placed while disconnected wait and go out on reconnect.
- When the gateway drops, the provider reconnects with backoff and asks for
  the executions since the last one it saw, so fills made meanwhile are not
  lost.

Nothing secret is involved: IB authenticates the gateway's login, not the API
client. The account id is logged at INFO at most; records above INFO, ours
and ib_async's, carry it masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from ib_async import (
    IB,
    AccountValue,
    ExecutionFilter,
    LimitOrder,
    MarketOrder,
    RequestError,
    StartupFetch,
    StartupFetchALL,
    Trade,
)
from ib_async import Fill as IbFill

from kubetrade.runner.brokers.base import Broker, BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.ibkr.contracts import Contracts, UnknownSymbol, session_symbol
from kubetrade.runner.brokers.ibkr.orders import OrderTracker, Tracked, refusal
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import (
    AccountInfo,
    Bar,
    Order,
    OrderStatus,
    OrderType,
    Position,
    RejectReason,
    Side,
)
from kubetrade.runner.spec import IbkrConfig, TradingSpec

log = logging.getLogger("kubetrade.brokers.ibkr")

# Interactive Brokers gives paper trading accounts ids that start with DU.
PAPER_ACCOUNT_PREFIX = "DU"
_IB_LOGGERS = ("ib_async.client", "ib_async.wrapper", "ib_async.ib", "ib_async.Decoder")


def mask(account: str) -> str:
    """An account id fit for warnings and errors: only its last three characters."""
    return "*" * max(len(account) - 3, 0) + account[-3:]


class _MaskAccount(logging.Filter):
    """Masks the account id in records above INFO."""

    def __init__(self, account: str) -> None:
        super().__init__()
        self.account = account

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            text = record.getMessage()
            if self.account in text:
                record.msg, record.args = text.replace(self.account, mask(self.account)), None
        return True


@dataclass(eq=False)  # no slots: eventkit holds weak references to bound methods
class IbkrBroker(Broker):
    config: IbkrConfig
    name: str = "ibkr-paper"
    is_live: bool = False
    paper_only: bool = True  # ibkr-paper: refuse any login that manages a live account
    precision: int = 8
    ack_timeout: float = 5.0  # how long submit and cancel wait for IB's answer
    market_fill_timeout: float = 5.0  # how long submit waits for a market order to fill
    commission_timeout: float = 5.0  # after this, an execution goes out with fee 0
    reconnect_initial: float = 1.0  # seconds before the first reconnect attempt ...
    reconnect_max: float = 30.0  # ... doubling up to this
    reconnect_attempts: int = 30
    account_id: str = field(default="", init=False)
    ib: IB = field(init=False)
    _contracts: Contracts = field(init=False)
    _tracker: OrderTracker = field(init=False)
    _values: dict[tuple[str, str, str], str] = field(default_factory=dict, init=False)
    _positions: dict[str, Position] = field(default_factory=dict, init=False)
    _connected: bool = field(default=False, init=False)
    _closing: bool = field(default=False, init=False)
    _failure: str = field(default="", init=False)
    _notice: str = field(default="", init=False)  # IB's last word on the connection itself
    _reconnecting: asyncio.Task[None] | None = field(default=None, init=False)
    _news: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _masks: list[_MaskAccount] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.ib = IB()
        # A failed request (unknown contract, ...) raises with IB's code and text.
        self.ib.RaiseRequestErrors = True
        self._contracts = Contracts(self.ib, self.config.exchange, self.config.currency)
        self._tracker = OrderTracker(self.precision, self.commission_timeout)
        self.ib.orderStatusEvent += self._on_status
        self.ib.execDetailsEvent += self._on_execution
        self.ib.commissionReportEvent += self._on_commission
        self.ib.accountValueEvent += self._on_value
        self.ib.accountSummaryEvent += self._on_value
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.errorEvent += self._on_error
        if self.config.account:
            self._mask(self.config.account)

    @property
    def connected(self) -> bool:
        """Connected and in step with IB (after a reconnect: once resynchronized)."""
        return self._connected

    # -- the Broker protocol --------------------------------------------------------------

    async def connect(self) -> None:
        try:
            await self._open(first=True)
        except BrokerError:
            self.ib.disconnect()
            raise
        except (OSError, TimeoutError, RequestError) as exc:  # ConnectionError is an OSError
            self.ib.disconnect()
            cfg = self.config
            cause = self._notice or f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise BrokerError(
                f"cannot connect to TWS/IB Gateway at {cfg.host}:{cfg.port} with clientId "
                f"{cfg.client_id} ({cause}); check that it is running, that its API is "
                "enabled on that port, and that no other client uses this clientId "
                "(spec.trading.config.clientId)"
            ) from None

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        self.ib.disconnect()
        for name in (*_IB_LOGGERS, log.name):
            for mask_filter in self._masks:
                logging.getLogger(name).removeFilter(mask_filter)

    async def submit(self, order: Order) -> list[BrokerEvent]:
        self._raise_if_failed()
        self._log_order(order)
        if order.client_order_id in self._tracker.orders:
            return await self.poll()  # sent again by the engine: IB has it, or it is queued
        refused = refusal(order)
        if refused is not None:
            return [OrderUpdate(order.client_order_id, OrderStatus.FAILED, order.time, *refused)]
        tracked = self._tracker.track(order)
        if self._connected:
            # A drop on the way leaves it to the reconnect, which finds it at IB or sends it.
            with contextlib.suppress(ConnectionError):
                await self._send(tracked)
            market = order.order_type is OrderType.MARKET
            timeout = self.market_fill_timeout if market else self.ack_timeout
            await self._wait(lambda: self._tracker.settled(tracked), timeout)
        return await self.poll()

    async def cancel(self, order: Order) -> list[BrokerEvent]:
        self._raise_if_failed()
        tracked = self._tracker.orders.get(order.client_order_id)
        if tracked is None or tracked.closed:
            return await self.poll()
        tracked.cancel_requested = True
        if not tracked.sent:
            self._tracker.close(tracked, OrderStatus.CANCELLED, "cancelled", "never sent")
        elif self._connected and tracked.trade is not None and not tracked.trade.isDone():
            self.ib.cancelOrder(tracked.trade.order)
            await self._wait(lambda: self._tracker.ended(tracked), self.ack_timeout)
        # While disconnected, the reconnect cancels it once it is found at IB.
        return await self.poll()

    async def lookup(self, order: Order) -> list[BrokerEvent] | None:
        """What IB knows of an order (after a restart): its fills and how it ended.

        None means IB has no order or execution with this orderRef today, so
        sending it cannot place it twice; an open order is followed from here
        on, like one sent by this process. Not being connected is an error,
        never None: guessing "not there" could place the order twice.
        """
        self._raise_if_failed()
        if not self._connected:
            raise BrokerError(
                f"{self.name}: cannot learn what became of order {order.client_order_id}: "
                "not connected to TWS/IB Gateway"
            )
        if order.client_order_id not in self._tracker.orders:
            tracked = self._tracker.track(order)
            if not self._adopt(tracked):
                self._tracker.forget(order.client_order_id)
                return None
        return await self.poll()

    async def on_bar(self, bar: Bar) -> list[BrokerEvent]:
        """IB is the venue: a bar changes nothing there; it is a chance to report news."""
        return await self.poll()

    async def poll(self) -> list[BrokerEvent]:
        """What IB reported since the last call: fills, cancellations, refusals."""
        self._raise_if_failed()
        return self._tracker.drain(connected=self._connected)

    def account(self) -> AccountInfo:
        cash = self._number("TotalCashValue")
        cash = 0.0 if cash is None else cash
        equity = self._number("NetLiquidation")
        available = self._number("AvailableFunds")
        return AccountInfo(
            balance=cash,
            equity=cash if equity is None else equity,
            buying_power=cash if available is None else available,
            realized_pnl=self._number("RealizedPnL") or 0.0,
            unrealized_pnl=self._number("UnrealizedPnL") or 0.0,
            total_fees=self._tracker.fees,
            margin_used=self._number("InitMarginReq") or 0.0,
        )

    def positions(self) -> dict[str, Position]:
        if self.ib.isConnected():  # else the last known ones
            self._positions = {
                session_symbol(p.contract.symbol): Position(
                    symbol=session_symbol(p.contract.symbol),
                    quantity=round(p.position, self.precision),
                    average_cost=p.avgCost,  # IB's, commissions included
                )
                for p in self.ib.positions(self.account_id)
                if p.contract.secType == "STK" and p.position
            }
        return dict(self._positions)

    # -- connecting ------------------------------------------------------------------------

    async def _open(self, *, first: bool) -> None:
        cfg = self.config
        self._notice = ""
        # After a reconnect, executions are asked for since the last one seen instead.
        fetch = StartupFetchALL if first else StartupFetchALL & ~StartupFetch.EXECUTIONS
        await self.ib.connectAsync(
            cfg.host,
            cfg.port,
            clientId=cfg.client_id,
            timeout=cfg.connect_timeout_seconds,
            account=cfg.account or "",
            fetchFields=fetch,
        )
        managed = self.ib.managedAccounts()
        account = self._choose_account(managed)
        self._check_account_kind(managed, account)
        if not self.account_id:
            self.account_id = account
            self._mask(account)
            log.info("%s: connected to %s:%d, account %s", self.name, cfg.host, cfg.port, account)
        elif account != self.account_id:  # the gateway was logged in again, as someone else
            raise BrokerError(
                f"{self.name}: TWS/IB Gateway now serves account {mask(account)}, not "
                f"{mask(self.account_id)}; set spec.trading.config.account to keep one account"
            )
        await asyncio.wait_for(self.ib.reqAccountSummaryAsync(), cfg.connect_timeout_seconds)
        if first:
            for fill in self.ib.fills():  # today's executions: what a resend is checked against
                self._tracker.record(fill)
        else:
            await self._resync()
        if not self.ib.isConnected():
            # Dropped again while catching up; nobody else would notice, so retry here.
            raise ConnectionError("the connection dropped while synchronizing")
        self._connected = True
        self._news.set()

    def _check_account_kind(self, managed: list[str], account: str) -> None:
        """ibkr-paper trades only where every account is paper; ibkr-live never on paper.

        The port says little (gateways remap it); the accounts the login manages say
        what money is at stake. IB's paper account ids start with DU.
        """
        paper = [account.startswith(PAPER_ACCOUNT_PREFIX) for account in managed]
        if self.paper_only and not all(paper):
            live = sum(1 for is_paper in paper if not is_paper)
            raise BrokerError(
                f"{self.name}: this TWS/IB Gateway login manages {live} live account(s)"
                f" (paper accounts start with {PAPER_ACCOUNT_PREFIX}); refusing to trade."
                " Log the gateway in to a paper account, or use provider ibkr-live with"
                " spec.trading.confirmLive: true for real money"
            )
        if not self.paper_only and account.startswith(PAPER_ACCOUNT_PREFIX):
            raise BrokerError(
                f"{self.name}: the account this session would trade is a paper account"
                f" (its id starts with {PAPER_ACCOUNT_PREFIX}); use provider ibkr-paper for"
                " paper trading, or log the gateway in to the live account"
            )

    def _choose_account(self, managed: list[str]) -> str:
        wanted = self.config.account
        if wanted:
            if wanted not in managed:
                raise BrokerError(
                    f"spec.trading.config.account: account {mask(wanted)} is not managed by "
                    f"this TWS/IB Gateway login ({len(managed)} account(s) are)"
                )
            return wanted
        if len(managed) == 1:
            return managed[0]
        raise BrokerError(
            f"spec.trading.config.account: this TWS/IB Gateway login manages {len(managed)} "
            "accounts; set account to the one this session trades"
        )

    def _mask(self, account: str) -> None:
        if any(f.account == account for f in self._masks):
            return
        mask_filter = _MaskAccount(account)
        self._masks.append(mask_filter)
        for name in (*_IB_LOGGERS, log.name):
            logging.getLogger(name).addFilter(mask_filter)

    def _on_disconnected(self) -> None:
        if self._closing or not self._connected:
            return  # our own close, or a failure while (re)connecting, handled there
        self._connected = False
        cfg = self.config
        log.warning("%s: lost TWS/IB Gateway at %s:%d; reconnecting", self.name, cfg.host, cfg.port)
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        cfg = self.config
        delay = self.reconnect_initial
        for attempt in range(1, self.reconnect_attempts + 1):
            await asyncio.sleep(delay)
            try:
                await self._open(first=False)
            except BrokerError as exc:  # e.g. the account is no longer managed
                self._failure = str(exc)
                return
            except Exception as exc:  # a background task: report, retry, never die silently
                self.ib.disconnect()
                log.warning("%s: reconnect attempt %d failed: %r", self.name, attempt, exc)
                delay = min(delay * 2, self.reconnect_max)
                continue
            log.warning("%s: reconnected after %d attempt(s)", self.name, attempt)
            return
        self._failure = (
            f"lost TWS/IB Gateway at {cfg.host}:{cfg.port} and gave up after "
            f"{self.reconnect_attempts} reconnect attempts"
        )

    async def _resync(self) -> None:
        """After a reconnect: collect missed executions, then settle each order's fate."""
        since = self._tracker.last_execution
        execution_filter = ExecutionFilter(
            clientId=self.config.client_id,
            acctCode=self.account_id,
            # Inclusive, to the second; executions already handed out are skipped by id.
            time=since.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S") if since else "",
        )
        request = self.ib.reqExecutionsAsync(execution_filter)
        for fill in await asyncio.wait_for(request, self.config.connect_timeout_seconds):
            self._tracker.record(fill)
        for tracked in list(self._tracker.orders.values()):
            if tracked.sent and not tracked.closed:
                self._reconcile(tracked)
        # Orders placed while disconnected and those IB never received; more may be
        # placed while these are sent, so look again until none is left.
        while unsent := self._tracker.unsent():
            for tracked in unsent:
                await self._send(tracked)

    def _reconcile(self, tracked: Tracked) -> None:
        if self._adopt(tracked):
            trade = tracked.trade
            if tracked.cancel_requested and trade is not None and not trade.isDone():
                self.ib.cancelOrder(trade.order)  # asked for while disconnected
        elif tracked.acked:
            log.warning(
                "%s: order %s was at IB before the drop but is not listed now; not resending it",
                self.name,
                tracked.ref,
            )
        elif tracked.cancel_requested:
            self._tracker.close(tracked, OrderStatus.CANCELLED, "cancelled", "never reached IB")
        else:
            tracked.sent = False  # IB never saw it: send it again

    def _raise_if_failed(self) -> None:
        if self._failure:
            raise BrokerError(self._failure)

    # -- orders ------------------------------------------------------------------------------

    def _log_order(self, order: Order) -> None:
        limit = f" @ {order.price:g}" if order.order_type is OrderType.LIMIT else ""
        text = f"{order.side} {order.quantity:g} {order.symbol} {order.order_type}{limit}"
        if self.is_live:
            log.warning("%s (real money): order %s %s", self.name, order.client_order_id, text)
        else:
            log.info("%s: order %s %s", self.name, order.client_order_id, text)

    async def _send(self, tracked: Tracked) -> None:
        """Send an order unless IB has it; a ConnectionError leaves it for the reconnect."""
        order = tracked.order
        try:
            instrument = await self._contracts.resolve(order.symbol)
        except UnknownSymbol as exc:
            self._tracker.close(tracked, OrderStatus.FAILED, RejectReason.UNKNOWN_SYMBOL, str(exc))
            return
        problem = instrument.quantity_problem(order.quantity)
        if problem is not None:
            self._tracker.close(tracked, OrderStatus.FAILED, RejectReason.INVALID_QUANTITY, problem)
            return
        if self._adopt(tracked):
            return
        action = "BUY" if order.side is Side.BUY else "SELL"
        ib_order = (
            MarketOrder(action, order.quantity, tif="DAY")
            if order.order_type is OrderType.MARKET
            else LimitOrder(
                action, order.quantity, instrument.limit_price(order.price, order.side), tif="GTC"
            )
        )
        ib_order.orderRef = tracked.ref
        ib_order.account = self.account_id
        tracked.trade = self.ib.placeOrder(instrument.contract, ib_order)
        tracked.sent = True

    def _adopt(self, tracked: Tracked) -> bool:
        """Link to the order if IB already has one with this orderRef; True if so."""
        trade = next((t for t in self.ib.trades() if t.order.orderRef == tracked.ref), None)
        fills = list(self._tracker.executions.get(tracked.ref, {}).values())
        if trade is None and not fills:
            return False
        log.info("%s: order %s found at IB by its orderRef", self.name, tracked.ref)
        tracked.sent = tracked.acked = True
        for fill in fills:
            self._tracker.record(fill)
        if trade is not None:
            self._tracker.status(trade)
        return True

    async def _wait(self, done: Callable[[], bool], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._connected and not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._news.clear()
            # Woken by any news from IB; the cap also catches commission reports that
            # ib_async files without an event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), min(remaining, 0.25))

    # -- news from IB (ib_async events) --------------------------------------------------------

    def _on_status(self, trade: Trade) -> None:
        self._tracker.status(trade)
        self._news.set()

    def _on_execution(self, trade: Trade, fill: IbFill) -> None:
        self._tracker.record(fill)
        self._news.set()

    def _on_commission(self, trade: Trade, fill: IbFill, report: Any) -> None:
        self._news.set()  # ib_async filed the report in the fill the tracker holds

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        # reqId -1 is about the connection, not a request; 21xx are status notices.
        if req_id == -1 and not 2100 <= code < 2200:
            self._notice = f"IB error {code}: {message}"
        if code in (1100, 1300):  # TWS lost IB's servers, or the socket port was reset
            log.warning("%s: %s", self.name, self._notice)

    def _on_value(self, value: AccountValue) -> None:
        self._values[(value.account, value.tag, value.currency)] = value.value

    def _number(self, tag: str) -> float | None:
        # The trading currency first, then the account's base currency.
        for currency in (self.config.currency, "BASE", ""):
            text = self._values.get((self.account_id, tag, currency))
            if text:
                with contextlib.suppress(ValueError):
                    return float(text)
        return None


def create(trading: TradingSpec, *, precision: int, credentials: Credentials) -> Broker:
    # `credentials` is unused: TWS / IB Gateway is logged in already; its API has no keys.
    config = trading.parsed()
    if not isinstance(config, IbkrConfig):
        raise BrokerError(f"spec.trading.provider: {trading.provider!r} is not an ibkr provider")
    return IbkrBroker(
        config=config,
        name=trading.provider,
        is_live=trading.is_live,
        paper_only=trading.provider == "ibkr-paper",
        precision=precision,
    )
