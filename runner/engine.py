"""The streaming engine: bars in, strategy decisions, orders out, events reported.

For each closed bar, in order:
  1. drop it if it is for another symbol or not newer than the last bar of its
     symbol (a provider must never make the strategy see a bar twice);
  2. let the broker advance on it (a simulated venue fills resting orders);
  3. append it to the window cache and call the strategy with bar time as its
     clock;
  4. send the orders the strategy placed (already risk-checked) and the
     cancels it asked for, in the order it asked, once the session has made
     their intents durable;
  5. close the bar: its equity is recorded, and quiet bars are committed in
     groups (session/commit.py).
Nothing on this path reads the wall clock, so the same bars give the same
orders. The session (`state`) owns every piece of state and its journal; the
engine only says when. A stop request (SIGTERM) lets the current bar finish,
then the engine closes its providers and reports EngineStopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from bisect import bisect_left
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, replace
from time import perf_counter
from typing import Any, Protocol

from kubetrade.runner import collector
from kubetrade.runner import events as ev
from kubetrade.runner.brokers.base import Broker
from kubetrade.runner.domain import Bar, OrderStatus
from kubetrade.runner.marketdata.base import MarketDataProvider
from kubetrade.runner.marketdata.health import FeedHealth
from kubetrade.runner.session import JournalError, Resume, Session, StorageError
from kubetrade.runner.session.faults import ARMED as CRASH_POINTS_ARMED
from kubetrade.runner.session.faults import crash_point
from kubetrade.runner.session.fencing import Fenced
from kubetrade.runner.session.orders import OrderRouter
from kubetrade.runner.strategy.host import StrategyError as StrategyCallError
from kubetrade.runner.telemetry.metrics import SessionMetrics

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
        state: Session,
        strategy: Strategy,
        market_data: MarketDataProvider,
        broker: Broker,
        options: EngineOptions,
        metrics: SessionMetrics | None = None,
        new_strategy: Callable[[], Strategy] | None = None,
    ) -> None:
        self.state = state  # the session: every change of state goes through it
        self.orders = OrderRouter(
            session=state, broker=broker, metrics=metrics or SessionMetrics(session=state.name)
        )
        self.strategy = strategy
        # Makes a fresh instance after the strategy itself trapped (see _recover).
        self.new_strategy = new_strategy
        self.market_data = market_data
        self.broker = broker
        self.options = options
        self.metrics = self.orders.metrics
        self.metrics.watch_session(state)
        self._calls = self.metrics.strategy_calls  # timed inline on the bar path
        # Network feeds report their connection; replayed data has no such thing.
        self.feed_health: FeedHealth | None = market_data.health
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
        self.skipped = 0  # bars already processed before a restart
        self._stop_requested = False
        self._idle_commit: asyncio.TimerHandle | None = None
        self._idle_failure: BaseException | None = None  # a commit between bars failed
        self._waiting_task: asyncio.Task[Any] | None = None
        self._task: asyncio.Task[Any] | None = None  # the one running the bar loop
        self._started = 0.0

    # -- control -----------------------------------------------------------------

    def stop_after_bar(self) -> None:
        """Finish the bar in hand, then stop; a wait for the next bar is not interrupted.
        Safe anywhere, a Python signal handler included (it only sets a flag)."""
        self._stop_requested = True

    def request_stop(self) -> None:
        """Finish the bar in hand, then stop, interrupting a wait for the next bar. Call
        it from the event loop (`loop.add_signal_handler`, `call_soon_threadsafe`), never
        from a Python signal handler: that runs between any two bytecodes of the bar
        loop, also just after the wait returned a bar, and the cancel would then land on
        the bar's next await (a venue call) instead of the wait."""
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
            resume = self._restore()
            # The window as it was at the last processed bar (or the warm-up history),
            # and a simulated venue shown that bar, so a resent order prices as it would
            # have before the crash.
            await self._warm_up()
            settled = await self._remind_venue() if resume is not None else []
            # Then settle what the journal left open, so the venue's fills reach the
            # book; then compare the book with the venue's account, which wins.
            settled += await self.orders.resolve_open()
            if resume is not None:
                # Balances as they are after the orders just settled.
                await self.broker.refresh_account()
            settled += self._adopt_account(resume is not None)
            self.state.open_for_bars(resume)
            name = self._start_strategy()
            yield ev.EngineStarted(self.state.symbols, self.options.interval, name)
            for event in settled:
                yield event
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
                    if self._idle_failure is not None and task is not None:
                        task.uncancel()  # a commit between bars failed: that is the error
                        raise self._idle_failure from None
                    if not self.stopping or task is None:
                        raise
                    task.uncancel()  # our own stop request, not a cancellation from outside
                    break
                finally:
                    self._waiting_task = None
                for event in await self._on_bar(bar):
                    yield event
                if self._idle_commit is None and self.state.pending:
                    self._arm_idle_commit()
                if self.feed_health is not None:
                    status = self._feed_status()
                    if status is not None:
                        yield status
                if max_bars is not None and self.bars >= max_bars:
                    break
        except (EngineFailure, Fenced, StorageError, JournalError) as exc:
            error = str(exc)  # a newer runner took over, or the disk refused: say so, no trace
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

    def _restore(self) -> Resume | None:
        """Resume from the journal, if it holds a previous run."""
        resume = self.state.restore()
        if resume is None:
            return None
        self._last_time = dict(resume.cursor)
        self._resume_after = dict(resume.cursor)
        # A paced replay skips what was processed at once instead of waiting through it.
        self.market_data.resume_after(resume.cursor)
        return resume

    async def _remind_venue(self) -> list[ev.Event]:
        """Show a simulated venue the last bar processed of each symbol (it may have
        forgotten quiet bars it saw); bars it did see change nothing there. A real
        venue ignores them."""
        bars = [b for b in map(self.state.window.last, self.state.symbols) if b is not None]
        out: list[ev.Event] = []
        self.orders.apply(await self.broker.resume_market(bars), out)
        return out

    def _adopt_account(self, restored: bool) -> list[ev.Event]:
        """Take the venue's cash and holdings, which are the truth; report differences."""
        venue_positions = {s: replace(p) for s, p in self.broker.positions().items()}
        differences = self.state.adopt_account(
            self.broker.account().balance, venue_positions, restored=restored
        )
        return [ev.EngineError(f"reconciled with the venue: {d}") for d in differences]

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
                self.state.warm(bar)
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
        state.commit_before_venue()  # orders open there: the venue may report fills now
        updates = await self.broker.on_bar(bar)
        if updates:
            self.orders.apply(updates, out)
        state.begin_bar(bar)
        self.bars += 1
        metrics = self.metrics
        # Counted inline (a method call per bar costs more than the counting): every
        # symbol of the session is in both dicts from the start, and this bar's is one.
        metrics.bars[bar.symbol] += 1
        metrics.last_bar[bar.symbol] = bar.time
        out.append(ev.MarketData(bar))
        started = perf_counter()
        self._call_strategy(bar, out)
        metrics.processed_at = done = perf_counter()
        # The call's duration, observed inline: a method call would cost as much again.
        calls = self._calls
        took = done - started
        calls.counts[bisect_left(calls.bounds, took)] += 1
        calls.sum += took
        # Events the host functions emitted during the call (placements, logs).
        if state.events:
            events = state.take_events()
            metrics.strategy_events(events)  # risk refusals, withdrawals, halts
            out.extend(events)
        if state.outbox or state.cancels:
            state.commit_before_send()  # the intents are durable before anything leaves
            await self.orders.send_queued(out, tick=started)
            state.commit_after_send()  # (the paper venue: intents and venue together)
        state.end_bar(bar)
        if CRASH_POINTS_ARMED:  # (a test, not a call, on every bar)
            crash_point("bar-done")
        limit = self.options.max_consecutive_strategy_errors
        if limit and self._consecutive_errors >= limit:
            raise EngineFailure(
                f"strategy failed on {self._consecutive_errors} consecutive bars "
                f"(spec.engine.maxConsecutiveStrategyErrors = {limit}); last error: "
                f"{self._last_error}"
            )
        return out

    def _arm_idle_commit(self) -> None:
        """Commit the quiet bars of a group if no bar comes for a while (a live feed's
        next bar may be a minute away), so a crash meanwhile takes back nothing."""
        loop = asyncio.get_running_loop()
        self._idle_commit = loop.call_later(self.state.group.max_seconds, self._commit_idle)

    def _commit_idle(self) -> None:
        self._idle_commit = None
        waiting = self._waiting_task
        if waiting is None:  # mid-bar (an await on the venue): try again later
            if self.state.pending:
                self._arm_idle_commit()
            return
        try:
            self.state.commit()  # between bars: what is recorded is whole bars
        except Exception as exc:  # the bar loop raises it (see run)
            self._idle_failure = exc
            waiting.cancel()

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
            self.metrics.strategy_error(exc)
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
        self.metrics.strategy_restart()
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
        if self._idle_commit is not None:
            self._idle_commit.cancel()
            self._idle_commit = None
        try:
            # What the last bars recorded becomes durable; a runner a newer one took over,
            # or whose disk refused, writes nothing more (the error was reported).
            with contextlib.suppress(Fenced, StorageError, JournalError):
                self.state.close()
        except Exception:
            log.exception("error while closing the session's journal")
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
