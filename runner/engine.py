"""The streaming engine: bars in, strategy decisions, orders out, events reported.

For each closed bar, in order:
  1. drop it if it is for another symbol or not newer than the last bar of its
     symbol (a provider must never make the strategy see a bar twice);
  2. let the broker advance on it (a simulated venue fills resting orders);
  3. append it to the window cache and call the strategy with bar time as its
     clock;
  4. send the orders the strategy placed (already risk-checked) and the
     cancels it asked for, in the order it asked.
Nothing on this path reads the wall clock, so the same bars give the same
orders. A stop request (SIGTERM) lets the current bar finish, then the engine
closes its providers and reports EngineStopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kubetrade.runner import collector
from kubetrade.runner import events as ev
from kubetrade.runner.brokers.base import Broker
from kubetrade.runner.domain import Bar, OrderStatus
from kubetrade.runner.faults import crash_point
from kubetrade.runner.fencing import Fenced
from kubetrade.runner.journal import Journal
from kubetrade.runner.marketdata.base import MarketDataProvider
from kubetrade.runner.marketdata.health import FeedHealth
from kubetrade.runner.metrics import SessionMetrics
from kubetrade.runner.orders import OrderRouter
from kubetrade.runner.recovery import account_differences, journal_effects, restore_state
from kubetrade.runner.state import SessionState
from kubetrade.runner.strategy.host import StrategyError as StrategyCallError

log = logging.getLogger("kubetrade.engine")


class Strategy(Protocol):
    def initialize(self, config_json: str) -> None: ...

    def process_data(self, bar: Bar) -> None: ...

    def name(self) -> str: ...

    def close(self) -> None: ...


class EngineFailure(Exception):
    """The session cannot go on (the strategy failed to start, a provider gave up)."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    interval: str = "1m"
    strategy_config: Mapping[str, Any] | None = None
    warmup_bars: int = 0
    max_bars: int | None = None  # stop after this many bars (None: until the data ends)
    max_consecutive_strategy_errors: int = 0  # 0: never stop for strategy errors
    # Per symbol, warm-up history ends before this bar time; None means "now" (live data).
    warmup_end: Mapping[str, int] | None = None


class Engine:
    def __init__(
        self,
        *,
        state: SessionState,
        strategy: Strategy,
        market_data: MarketDataProvider,
        broker: Broker,
        options: EngineOptions,
        metrics: SessionMetrics | None = None,
        new_strategy: Callable[[], Strategy] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.state = state
        self.journal = journal
        state.journal = journal
        self.orders = OrderRouter(
            state=state, broker=broker, metrics=metrics or SessionMetrics(session=state.session),
            journal=journal,
        )  # fmt: skip
        self.strategy = strategy
        # Makes a fresh instance after the strategy itself trapped (see _recover).
        self.new_strategy = new_strategy
        self.market_data = market_data
        self.broker = broker
        self.options = options
        self.metrics = self.orders.metrics
        self.metrics.account_source = state.book.account
        # Network feeds report their connection; replayed data has no such thing.
        self.feed_health: FeedHealth | None = getattr(market_data, "health", None)
        if self.feed_health is not None:
            self.metrics.watch_feed(self.feed_health)
        self._feed_seen: tuple[bool, int] | None = None
        self.bars = 0
        self.strategy_errors = 0
        self.strategy_restarts = 0
        self.ready = False
        self._consecutive_errors = 0
        self._last_error = ""
        self._last_time: dict[str, int] = {}
        self._resume_after: dict[str, int] = {}  # per symbol: bars up to here were processed
        self._unsent: set[str] = set()
        self.skipped = 0  # bars already processed before a restart
        self._pending_equity: tuple[int, float, float] | None = None
        self._stop_requested = False
        self._waiting_task: asyncio.Task[Any] | None = None
        self._task: asyncio.Task[Any] | None = None  # the one running the bar loop
        self._started = 0.0

    # -- control -----------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the bar in hand, then stop. Safe to call from a signal handler."""
        self._stop_requested = True
        # A wait for the next bar can last an interval; interrupt it. Work on a
        # bar in hand is never interrupted (orders may be in flight).
        if self._waiting_task is not None:
            self._waiting_task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    async def run_with(self, callbacks: ev.EngineCallbacks) -> ev.Summary:
        """Run to the end, dispatching events to callbacks; on_engine_stop always runs."""
        stopped: ev.EngineStopped | None = None
        try:
            # aclosing: a callback that raises still closes the providers at once.
            async with contextlib.aclosing(self.run()) as events:
                async for event in events:
                    if isinstance(event, ev.EngineStopped):
                        stopped = event
                    callbacks.dispatch(event)
        finally:
            if stopped is None:
                stopped = ev.EngineStopped(self.summary(), error="engine ended abnormally")
                callbacks.dispatch(stopped)
        if stopped.error is not None:
            raise EngineFailure(stopped.error)
        return stopped.summary

    async def run(self) -> AsyncGenerator[ev.Event, None]:
        self._started = time.monotonic()
        error: str | None = None
        looping = False
        try:
            await self.broker.connect()
            restored = self._restore()
            # First settle what the journal left open, so the venue's fills reach the
            # book; then compare the book with the venue's account, which wins.
            settled = await self.orders.resolve_open(self._unsent)
            self._unsent.clear()
            refresh = getattr(self.broker, "refresh_account", None)
            if restored and refresh is not None:
                await refresh()  # balances as they are after the orders just settled
            settled += self._adopt_account(restored)
            if self.journal is not None and self.journal.initial_cash() is None:
                self.journal.set_initial_cash(self.state.book.ledger.cash)
            name = self._start_strategy()
            yield ev.EngineStarted(self.state.symbols, self.options.interval, name)
            for event in settled:
                yield event
            await self._warm_up()
            # The bar loop, inline: every event passes one generator, not two.
            stream = self.market_data.stream().__aiter__()
            self._task = asyncio.current_task()
            self.ready = True
            self.metrics.ready(True)
            collector.session_started()  # what is alive now lives as long as the session
            looping = True
            max_bars = self.options.max_bars
            task = self._task
            while not self._stop_requested:
                # (Inline, not a helper coroutine: this runs once per bar.)
                self._waiting_task = task
                try:
                    bar = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if not self.stopping or task is None:
                        raise
                    task.uncancel()  # our own stop request, not a cancellation from outside
                    break
                finally:
                    self._waiting_task = None
                for event in await self._on_bar(bar):
                    yield event
                if self.feed_health is not None:
                    status = self._feed_status()
                    if status is not None:
                        yield status
                if max_bars is not None and self.bars >= max_bars:
                    break
        except (EngineFailure, Fenced) as exc:  # a newer runner took over: say so, no trace
            error = str(exc)
        except Exception as exc:  # report, never swallow silently
            log.exception("engine failed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready = False
            self.metrics.ready(False)
            if looping:
                collector.session_stopped()
            await self._close()
        if error is not None:
            yield ev.EngineError(error)
        yield ev.EngineStopped(self.summary(), error)

    # -- phases ------------------------------------------------------------------

    def _restore(self) -> bool:
        """Resume from the journal, if it holds a previous run; True if it did."""
        if self.journal is None:
            return False
        snapshot = self.journal.snapshot()
        self.state.epoch = snapshot.epoch  # new ids never collide with journaled ones
        if not snapshot.orders and not snapshot.cursor and not snapshot.cache:
            return False
        initial = self.journal.initial_cash()
        if initial is not None:
            self.state.book.ledger.cash = initial  # the journal's fills replay from here
        restore_state(self.state, snapshot)
        self._last_time = dict(snapshot.cursor)
        self._resume_after = dict(snapshot.cursor)
        self._unsent = set(snapshot.unsent)
        return True

    def _adopt_account(self, restored: bool) -> list[ev.Event]:
        """Take the venue's cash and holdings, which are the truth; report differences."""
        ledger = self.state.book.ledger
        venue_cash = self.broker.account().balance
        venue_positions = {s: replace(p) for s, p in self.broker.positions().items()}
        events: list[ev.Event] = []
        if restored:
            events = [
                ev.EngineError(f"reconciled with the venue: {difference}")
                for difference in account_differences(ledger, venue_cash, venue_positions)
            ]
        ledger.cash = venue_cash
        ledger.positions = venue_positions
        return events

    def _start_strategy(self) -> str:
        try:
            name = self.strategy.name()
            self.state.strategy_name = name
            self.strategy.initialize(json.dumps(dict(self.options.strategy_config or {})))
        except StrategyCallError as exc:
            raise EngineFailure(f"strategy failed to initialize: {exc}") from exc
        return name

    async def _warm_up(self) -> None:
        """Fill the window with history so the strategy's first bar sees context."""
        if self.options.warmup_bars <= 0 and not self._resume_after:
            return
        now = int(time.time() * 1000)  # live data: history up to now
        ends = dict(self.options.warmup_end or {})
        count = self.options.warmup_bars
        if self._resume_after:
            # After a restart the window is rebuilt as it was at the last processed bar.
            ends.update({s: t + 1 for s, t in self._resume_after.items()})
            count = self.state.window.size
        for symbol in self.state.symbols:
            end = ends.get(symbol, now)
            for bar in await self.market_data.history(symbol, end=end, count=count):
                self.state.window.append(bar)
                self.state.book.marks[symbol] = bar.close
                self._last_time[symbol] = bar.time

    async def _on_bar(self, bar: Bar) -> list[ev.Event]:
        state = self.state
        last = self._last_time.get(bar.symbol)
        if bar.symbol not in state.symbols or (last is not None and bar.time <= last):
            if bar.time <= self._resume_after.get(bar.symbol, -1):
                self.skipped += 1  # processed before the restart: expected, not an error
                return []
            reason = "an unknown symbol" if last is None else "not newer than the last bar"
            return [ev.EngineError(f"dropped bar {bar.symbol}@{bar.time}: {reason}")]
        self._last_time[bar.symbol] = bar.time
        out: list[ev.Event] = []
        # One transaction holds the bar's decisions: the venue's news, the strategy's
        # effects, its order intents and the cursor. Orders leave only after it commits.
        with self.orders.transaction():
            if self._pending_equity is not None:
                self._flush_equity()
            updates = await self.broker.on_bar(bar)
            if updates:
                self.orders.apply(updates, out)
            state.begin_bar(bar)
            self.bars += 1
            self.metrics.bar(bar.symbol, bar.time)
            out.append(ev.MarketData(bar))
            self._call_strategy(bar, out)
            # Events the host functions emitted during the call (placements, logs).
            if state.events:
                out.extend(state.events)
                state.events.clear()
            if self.journal is not None:
                journal_effects(self.journal, state, out)
                self.journal.cursor(bar.symbol, bar.time)
                self.journal.price(bar.symbol, bar.time, bar.close)
                crash_point("bar-journaled")  # (meaningful only with a journal)
        if state.outbox or state.cancels:
            await self.orders.send_queued(out)
        if self.journal is not None:
            # The bar's closing equity rides along with the next bar's transaction (or
            # the shutdown's), which saves an fsync per bar; a crash loses one point.
            account = state.book.account()
            self._pending_equity = (bar.time, account.equity, account.balance)
        limit = self.options.max_consecutive_strategy_errors
        if limit and self._consecutive_errors >= limit:
            raise EngineFailure(
                f"strategy failed on {self._consecutive_errors} consecutive bars "
                f"(spec.engine.maxConsecutiveStrategyErrors = {limit}); last error: "
                f"{self._last_error}"
            )
        return out

    def _flush_equity(self) -> None:
        if self.journal is not None and self._pending_equity is not None:
            self.journal.equity(*self._pending_equity)
        self._pending_equity = None

    @property
    def live(self) -> bool:
        """Ready and, for a network feed, connected: what /readyz answers."""
        return self.ready and (self.feed_health is None or self.feed_health.connected)

    def _feed_status(self) -> ev.ProviderStatus | None:
        """A ProviderStatus event when the feed's connection changed since the last look."""
        health = self.feed_health
        if health is None:
            return None
        seen = (health.connected, health.reconnects)
        if seen == self._feed_seen:
            return None
        self._feed_seen = seen
        return ev.ProviderStatus(
            provider=health.provider,
            connected=health.connected,
            reconnects=health.reconnects,
            lag_ms=health.lag_ms(int(time.time() * 1000)),
            last_error=health.last_error,
        )

    def _call_strategy(self, bar: Bar, out: list[ev.Event]) -> None:
        try:
            self.strategy.process_data(bar)
            self._consecutive_errors = 0
        except StrategyCallError as exc:
            self.strategy_errors += 1
            self._consecutive_errors += 1
            self._last_error = str(exc)
            self.metrics.strategy_error()
            out.append(ev.StrategyError(bar, self._last_error))
            if exc.trapped and exc.host_function is None:
                out.append(self._recover())

    def _recover(self) -> ev.Event:
        """Replace a strategy instance that trapped on its own.

        A trap raised by a host function leaves the guest sound, and the same
        instance serves the next bar (argo-trading semantics). A trap from the
        guest itself (a Go panic, an exit, a timeout, the memory cap) can leave
        its runtime broken for good: a Go program that panicked once dies on its
        next panic. Such an instance is replaced by a fresh one, initialized
        with the same config; the strategy's cache and the window survive, its
        in-memory state does not.
        """
        if self.new_strategy is None:
            return ev.EngineError("the strategy trapped; no way to restart it is configured")
        self.strategy.close()
        self.strategy = self.new_strategy()
        self.strategy_restarts += 1
        self._start_strategy()
        return ev.EngineError(
            f"strategy restarted after it trapped (restart {self.strategy_restarts}); "
            "its in-memory state was reset, its cache and market data window were kept"
        )

    async def _close(self) -> None:
        try:
            self.strategy.close()
        except Exception:
            log.exception("error while closing the strategy")
        if self.journal is not None:
            try:
                # A newer runner owns the journal now: this one writes nothing more.
                with contextlib.suppress(Fenced), self.orders.transaction():
                    self._flush_equity()
                self.journal.close()
            except Exception:
                log.exception("error while closing the journal")
        for close in (self.market_data.close, self.broker.close):
            try:
                await close()
            except Exception:
                log.exception("error while closing %s", close)

    # -- figures -----------------------------------------------------------------

    def summary(self) -> ev.Summary:
        book = self.state.book
        account = book.account()
        orders = book.orders.values()
        return ev.Summary(
            bars=self.bars,
            orders=len(orders),
            fills=len(book.fills),
            rejected=sum(
                1 for o in orders if o.status in (OrderStatus.REJECTED, OrderStatus.FAILED)
            ),
            realized_pnl=account.realized_pnl,
            unrealized_pnl=account.unrealized_pnl,
            equity=account.equity,
            strategy_errors=self.strategy_errors,
            duration_s=round(time.monotonic() - self._started, 3) if self._started else 0.0,
        )
