"""The interface every market data provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.health import FeedHealth


class MarketDataError(Exception):
    """A provider cannot go on: bad configuration, bad credentials, unreadable data.

    The message names what is wrong and how to fix it; it never contains secrets.
    """


class MarketDataProvider(Protocol):
    """A source of closed bars for the session's symbols, in bar-time order.

    `stream()` yields each closed bar once. Bars of different symbols may
    interleave, but for any one symbol bar times strictly increase.

    Providers subclass this protocol: what only some can do is declared here as a
    capability with a default that suits a provider without it, so the engine uses
    each one unconditionally and never probes for it.
    """

    __slots__ = ()

    # A network feed's connection and counters, kept current as it runs (events,
    # /readyz, metrics); replayed and generated data have no connection.
    health: FeedHealth | None = None

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        """Up to `count` closed bars of `symbol` with time < `end`, oldest first.

        Used to warm the window cache before streaming; a provider without
        history returns an empty list.
        """
        ...

    def stream(self) -> AsyncIterator[Bar]: ...

    async def close(self) -> None: ...

    def resume_after(self, cursor: Mapping[str, int]) -> None:
        """After a restart: per symbol, the last bar processed before it. A paced stream
        passes over those bars at once instead of waiting through them again; a live
        feed delivers what is new anyway."""
        return None
