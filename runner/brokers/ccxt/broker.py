"""Trading through ccxt: Binance spot (testnet or live), or any exchange ccxt supports.

An order's path:
1. its quantity and limit price are rounded onto the market's grid and checked
   against lot size, price and notional limits; a refusal is a FAILED order with
   the reason, and nothing is sent (brokers/venue_rules.py);
2. it is sent with the session's deterministic client order id;
3. if the answer is lost (timeout, 5xx, dropped connection) the order is looked
   up by that id and sent again only if the venue has no such order, so it is
   never placed twice; rate-limit and clock refusals, which the venue never
   processed, are sent again after a pause; an order still in doubt when the
   tries run out is looked up on the next bar: adopted if the venue has it,
   failed if not (a market order sent a bar late would trade on stale intent);
4. its fills come from the venue's answer, then from polling on each bar
   (`on_bar`), each trade counted once by its id, fees in the quote asset;
5. a venue refusal is a FAILED order carrying the venue's code and message.
`connect` loads the markets (once), checks the clock and the credentials and
reads the account. Secrets never reach a log or an exception (errors.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ccxt.async_support as ccxt

from kubetrade.runner.brokers.base import Broker, BrokerError, BrokerEvent, OrderUpdate
from kubetrade.runner.brokers.ccxt.account import (
    FeeConverter,
    check_can_trade,
    quote_asset,
    read_account,
)
from kubetrade.runner.brokers.ccxt.client import VenueClient
from kubetrade.runner.brokers.ccxt.errors import (
    AuthFailed,
    ClockSkew,
    Duplicate,
    NotFound,
    RateLimited,
    Redactor,
    Refused,
    Transient,
    VenueError,
)
from kubetrade.runner.brokers.ccxt.orders import (
    OPEN,
    Tracked,
    VenueOrder,
    amend,
    filled_of,
    final_update,
    log_order,
    make_fill,
    refused,
    venue_refused,
)
from kubetrade.runner.brokers.ccxt.venue import Tuning, VenueSettings, build_exchange
from kubetrade.runner.brokers.venue_rules import Prepared, prepare, to_decimal
from kubetrade.runner.credentials import Credentials
from kubetrade.runner.domain import (
    AccountInfo,
    Bar,
    Order,
    OrderStatus,
    OrderType,
    Position,
    RejectReason,
)
from kubetrade.runner.spec import TradingSpec

__all__ = ["CcxtBroker", "Tuning", "VenueOrder", "create"]

log = logging.getLogger("kubetrade.brokers.ccxt")


def create(
    trading: TradingSpec,
    *,
    precision: int,
    credentials: Credentials,
    symbols: Sequence[str] = (),
    tuning: Tuning | None = None,
) -> CcxtBroker:
    """The broker for a binance-paper, binance-live or ccxt session (not yet connected)."""
    settings = VenueSettings.from_spec(trading)
    if not hasattr(ccxt, settings.exchange_id):
        raise BrokerError(
            f"spec.trading.config.exchange: ccxt has no exchange {settings.exchange_id!r}"
        )
    return CcxtBroker(
        settings=settings,
        api_key=credentials.require("api_key"),
        secret=credentials.require("api_secret"),
        password=credentials.get("password"),
        symbols=symbols,
        precision=precision,
        tuning=tuning,
    )


class CcxtBroker(Broker):
    """A Broker for one account at one ccxt exchange."""

    def __init__(
        self,
        *,
        settings: VenueSettings,
        api_key: str,
        secret: str,
        password: str | None = None,
        symbols: Sequence[str] = (),
        precision: int = 8,
        tuning: Tuning | None = None,
    ) -> None:
        self.name = settings.provider
        self.is_live = settings.live
        self._settings = settings
        self._tuning = tuning or Tuning()
        self._symbols = tuple(symbols)
        self._precision = precision
        self._redactor = Redactor([api_key, secret, password or ""])
        self._keys = (api_key, secret, password)  # never in a repr: see __repr__
        self._client: VenueClient | None = None  # made in connect(), inside the event loop
        self._fees: FeeConverter | None = None
        self._tracked: dict[str, Tracked] = {}  # by client order id, until final
        self._account = AccountInfo(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self._positions: dict[str, Position] = {}
        self._now = 0  # the latest bar time seen: the clock of fills found by polling

    def __repr__(self) -> str:
        return f"CcxtBroker({self.name}, {self._settings.exchange_id})"

    @property
    def client(self) -> VenueClient:
        if self._client is None:
            raise BrokerError(f"{self.name}: not connected")
        return self._client

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Load the markets once, check the clock and the credentials, read the account."""
        if self._client is None:
            api_key, secret, password = self._keys
            exchange = build_exchange(
                self._settings,
                api_key=api_key,
                secret=secret,
                password=password,
                tuning=self._tuning,
                redactor=self._redactor,
            )
            self._client = VenueClient(
                exchange, name=self.name, redactor=self._redactor, backoff=self._tuning.backoff
            )
            self._fees = FeeConverter(self._client)
        client = self._client
        try:
            await client.read("load the markets", "load_markets")
            await client.sync_clock()
            balance = await client.read("read the account", "fetch_balance")
            for symbol in self._symbols:
                if client.rules_for(symbol) is None:
                    raise BrokerError(
                        f"spec.symbols: {symbol!r} is not a spot market at {self.name} "
                        f"({client.endpoint})"
                    )
            check_can_trade(balance, self.name)
            await self._adopt(balance)
        except AuthFailed as exc:
            await self.close()
            raise BrokerError(
                f"{self.name}: {client.endpoint} refused the API key or the request signature: "
                f"{exc}; check the credentials api_key and api_secret, and that the key may "
                "trade spot from this address"
            ) from None
        except VenueError as exc:
            await self.close()
            raise BrokerError(f"{self.name}: cannot connect to {client.endpoint}: {exc}") from None
        except BrokerError:
            await self.close()
            raise
        log.info("%s: connected to %s", self.name, client.endpoint)

    async def close(self) -> None:
        if self._tracked:
            log.info(
                "%s: leaving %d order(s) open at the venue: %s",
                self.name,
                len(self._tracked),
                ", ".join(self._tracked),
            )
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- the Broker protocol -----------------------------------------------------

    async def submit(self, order: Order) -> list[BrokerEvent]:
        rules = self.client.rules_for(order.symbol)
        if rules is None:
            message = f"{order.symbol} is not a spot market at {self.name}"
            return [refused(order, RejectReason.UNKNOWN_SYMBOL, message)]
        prepared = prepare(
            rules,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            price=order.price,
            reference_price=order.price,  # a market order's price is the last close
        )
        if not isinstance(prepared, Prepared):
            return [refused(order, prepared.reason, f"{self.name}: {prepared.message}")]
        amend(order, prepared, self.name)
        log_order(order, self.name, live=self.is_live)
        tracked = Tracked(order, rules)
        self._tracked[order.client_order_id] = tracked
        return await self._place(tracked, order.time)

    async def cancel(self, order: Order) -> list[BrokerEvent]:
        tracked = self._tracked.get(order.client_order_id)
        if tracked is None:
            return []  # final already, or never sent
        time = max(self._now, order.time)
        if not tracked.confirmed:
            tracked.cancel_requested = True
            return await self._resolve(tracked, time)
        try:
            answer = await self.client.read(
                "cancel an order", "cancel_order", "", tracked.rules.venue_symbol, _by_id(order)
            )
        except NotFound:
            return await self._settle(tracked, time)  # it ended first: its record says how
        except VenueError as exc:
            log.warning("%s: cannot cancel %s: %s", self.name, order.client_order_id, exc)
            return []
        return await self._absorb(tracked, answer, time)

    async def on_bar(self, bar: Bar) -> list[BrokerEvent]:
        """Poll the venue for what became of this symbol's orders since the last bar."""
        self._now = max(self._now, bar.time)
        mine = [t for t in self._tracked.values() if t.order.symbol == bar.symbol]
        events: list[BrokerEvent] = []
        for tracked in [t for t in mine if not t.confirmed]:
            events += await self._resolve(tracked, bar.time)
        confirmed = [t for t in mine if t.confirmed and t.order.client_order_id in self._tracked]
        if not confirmed:
            return events
        try:
            # One request for all of the symbol's orders; only those that moved cost more.
            answers = await self.client.read(
                "read the open orders", "fetch_open_orders", confirmed[0].rules.venue_symbol
            )
        except VenueError as exc:
            log.warning("%s: cannot poll open orders, trying next bar: %s", self.name, exc)
            return events
        still_open = {str(a.get("clientOrderId")): a for a in answers}
        for tracked in confirmed:
            answer = still_open.get(tracked.order.client_order_id)
            if answer is None:
                events += await self._settle(tracked, bar.time)  # it ended since the last look
            elif filled_of(answer) > tracked.reported:
                events += await self._absorb(tracked, answer, bar.time)
        return events

    def account(self) -> AccountInfo:
        """The venue's account as last read (at connect, or by `refresh_account`)."""
        return self._account

    def positions(self) -> dict[str, Position]:
        return {symbol: replace(p) for symbol, p in self._positions.items()}

    # -- beyond the protocol ---------------------------------------------------------

    async def lookup(self, order: Order) -> list[BrokerEvent] | None:
        """What the venue knows of an order (after a restart): its fills and final status.

        None means the venue has no order with this client order id, so sending
        it cannot place it twice. An open order is followed from here on, like
        one sent by this process. A venue that cannot be asked is an error,
        never None: guessing "not there" could place the order twice.
        """
        rules = self.client.rules_for(order.symbol)
        if rules is None:
            return None
        tracked = self._tracked.get(order.client_order_id) or Tracked(order, rules)
        try:
            answer = await self._find(tracked)
        except VenueError as exc:
            raise BrokerError(
                f"{self.name}: cannot learn what became of order {order.client_order_id}: {exc}"
            ) from None
        if answer is None:
            return None
        self._tracked[order.client_order_id] = tracked
        return await self._absorb(tracked, answer, max(self._now, order.time))

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Open orders at the venue (ours or not) in one symbol, or in the session's symbols."""
        out: list[VenueOrder] = []
        for name in self._symbols_for(symbol):
            rules = self.client.rules_for(name)
            if rules is not None:
                answers = await self.client.read(
                    "read open orders", "fetch_open_orders", rules.venue_symbol
                )
                out += [VenueOrder.from_ccxt(a, name) for a in answers]
        return out

    async def order_status(self, order: Order) -> VenueOrder | None:
        """The venue's record of an order, found by client order id; None if it has none."""
        rules = self.client.rules_for(order.symbol)
        if rules is None:
            return None
        answer = await self._find(Tracked(order, rules))
        return None if answer is None else VenueOrder.from_ccxt(answer, order.symbol)

    async def cancel_all(self, symbol: str | None = None) -> list[BrokerEvent]:
        """Cancel every open order at the venue in one symbol, or in the session's symbols."""
        events: list[BrokerEvent] = []
        for name in self._symbols_for(symbol):
            rules = self.client.rules_for(name)
            if rules is None:
                continue
            try:
                answers = await self.client.read(
                    "cancel all orders", "cancel_all_orders", rules.venue_symbol
                )
            except NotFound:
                answers = []  # Binance answers "unknown order" when none is open
            for answer in answers:
                info = answer.get("info") or {}
                # A cancel's own clientOrderId names the cancel; the order's is "orig".
                client_id = str(info.get("origClientOrderId") or answer.get("clientOrderId"))
                tracked = self._tracked.get(client_id)
                if tracked is not None:
                    events += await self._absorb(tracked, answer, self._now)
        return events

    async def refresh_account(self) -> AccountInfo:
        """Read balances and holdings again; `account()` and `positions()` return them."""
        await self._adopt(await self.client.read("read the account", "fetch_balance"))
        return self._account

    # -- sending -------------------------------------------------------------------

    async def _place(self, tracked: Tracked, time: int) -> list[BrokerEvent]:
        """Send an order until the venue has it or refuses it, or its fate stays in doubt."""
        order, client = tracked.order, self.client
        cid = order.client_order_id
        limit = order.price if order.order_type is OrderType.LIMIT else None
        args = (
            tracked.rules.venue_symbol,
            order.order_type.lower(),
            order.side.lower(),
            order.quantity,
            limit,
            {"newClientOrderId": cid},
        )
        in_doubt = False  # an attempt may have reached the venue and not been looked for since
        last: VenueError | None = None
        for attempt in range(1, client.backoff.attempts + 1):
            try:
                answer = await client.once("create_order", *args)
            except Duplicate:
                # Binance refuses an id that is open already: an earlier attempt got there.
                in_doubt = True
                try:
                    answer = await self._find(tracked)
                except VenueError:
                    break
                if answer is None:
                    break
            except (Refused, NotFound) as exc:
                del self._tracked[cid]
                return [venue_refused(order, exc, time, self.name)]
            except Transient as exc:
                last = exc
                log.warning("%s: sending %s failed (try %d): %s", self.name, cid, attempt, exc)
                unprocessed = isinstance(exc, RateLimited | ClockSkew)  # refused, never handled
                in_doubt = in_doubt or not unprocessed
                if attempt == client.backoff.attempts:
                    break
                await client.pause(attempt, exc)
                if not in_doubt:
                    continue
                # The request may have reached the venue: look before sending again.
                try:
                    answer = await self._find(tracked)
                except VenueError:
                    break  # cannot tell; sending again could place it twice
                if answer is None:
                    in_doubt = False
                    continue
            return await self._absorb(tracked, answer, time)
        if not in_doubt:
            del self._tracked[cid]
            message = f"{self.name} did not take the order after {attempt} tries: {last}"
            return [refused(order, RejectReason.VENUE_REJECTED, message, time)]
        log.warning(
            "%s: order %s may or may not be at the venue; asking again next bar", self.name, cid
        )
        return []

    async def _resolve(self, tracked: Tracked, time: int) -> list[BrokerEvent]:
        """An order whose sending ended in doubt: adopt it if the venue has it, else fail it.

        It is not sent again a bar later: the moment the strategy chose has
        passed, so the strategy sees a failed order and decides afresh.
        """
        cid = tracked.order.client_order_id
        try:
            answer = await self._find(tracked)
        except VenueError as exc:
            log.warning("%s: cannot look up %s yet: %s", self.name, cid, exc)
            return []
        if answer is not None:
            events = await self._absorb(tracked, answer, time)
            if tracked.cancel_requested and cid in self._tracked:
                events += await self.cancel(tracked.order)
            return events
        del self._tracked[cid]
        if tracked.cancel_requested:
            message = f"{self.name} never received the order"
            return [OrderUpdate(cid, OrderStatus.CANCELLED, time, "cancelled", message)]
        message = f"{self.name} never received the order; it was not sent again a bar late"
        return [refused(tracked.order, RejectReason.VENUE_REJECTED, message, time)]

    async def _find(self, tracked: Tracked) -> dict[str, Any] | None:
        """The venue's record of an order by its client order id, or None if it has none."""
        try:
            answer: dict[str, Any] = await self.client.read(
                "look up an order",
                "fetch_order",
                "",
                tracked.rules.venue_symbol,
                _by_id(tracked.order),
            )
        except NotFound:
            return None
        return answer

    # -- what the venue reports ------------------------------------------------------

    async def _settle(self, tracked: Tracked, time: int) -> list[BrokerEvent]:
        """An order that left the open list: read its final record."""
        cid = tracked.order.client_order_id
        try:
            answer = await self._find(tracked)
        except VenueError as exc:
            log.warning("%s: cannot read %s yet: %s", self.name, cid, exc)
            return []
        if answer is None:
            log.error("%s: the venue no longer knows order %s", self.name, cid)
            return []
        return await self._absorb(tracked, answer, time)

    async def _absorb(
        self, tracked: Tracked, answer: dict[str, Any], time: int
    ) -> list[BrokerEvent]:
        """Fills and status from the venue's record of an order; forget the order once final."""
        tracked.confirmed = True
        tracked.venue_id = str(answer.get("id") or tracked.venue_id)
        events = await self._new_fills(tracked, answer.get("trades") or [], time)
        if filled_of(answer) > tracked.reported:
            # The answer did not carry every trade (a partial fill, a status query).
            try:
                trades = await self.client.read(
                    "read the order's trades",
                    "fetch_my_trades",
                    tracked.rules.venue_symbol,
                    None,
                    None,
                    {"orderId": tracked.venue_id},
                )
            except VenueError as exc:
                log.warning("%s: cannot read trades, trying next bar: %s", self.name, exc)
                return events  # still tracked: the next poll asks again
            events += await self._new_fills(tracked, trades, time)
        status = answer.get("status")
        if status in OPEN:
            return events
        del self._tracked[tracked.order.client_order_id]
        update = final_update(tracked, str(status), time, self.name)
        return [*events, update] if update is not None else events

    async def _new_fills(
        self, tracked: Tracked, trades: list[dict[str, Any]], time: int
    ) -> list[BrokerEvent]:
        """Fills for the trades not yet reported, told apart by the venue's trade id."""
        assert self._fees is not None
        events: list[BrokerEvent] = []
        for trade in trades:
            trade_id, amount = trade.get("id"), to_decimal(trade.get("amount"))
            if trade_id is None or amount is None or str(trade_id) in tracked.trade_ids:
                continue
            order_id = trade.get("order")
            if order_id is not None and tracked.venue_id and str(order_id) != tracked.venue_id:
                continue
            tracked.trade_ids.add(str(trade_id))
            tracked.reported += amount
            fee, fee_base = await self._fees.in_quote(trade, tracked.rules, self._now)
            events.append(
                make_fill(
                    tracked, trade, fee=fee, fee_base=fee_base, time=time,
                    exchange_id=self._settings.exchange_id,
                )
            )  # fmt: skip
        return events

    # -- the account ---------------------------------------------------------------------

    async def _adopt(self, balance: dict[str, Any]) -> None:
        quote = quote_asset(self.client, self._settings.quote_asset, self._symbols)
        self._account, self._positions = await read_account(
            self.client,
            balance,
            quote=quote,
            symbols=self._symbols,
            precision=self._precision,
            now=self._now,
        )

    def _symbols_for(self, symbol: str | None) -> list[str]:
        if symbol is not None:
            return [symbol]
        return sorted(set(self._symbols) | {t.order.symbol for t in self._tracked.values()})


def _by_id(order: Order) -> dict[str, str]:
    return {"origClientOrderId": order.client_order_id}
