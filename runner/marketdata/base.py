"""The interface every market data provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from kubetrade.runner.domain import Bar


class MarketDataError(Exception):
    """A provider cannot go on: bad configuration, bad credentials, unreadable data.

    The message names what is wrong and how to fix it; it never contains secrets.
    """


class MarketDataProvider(Protocol):
    """A source of closed bars for the session's symbols, in bar-time order.

    `stream()` yields each closed bar once. Bars of different symbols may
    interleave, but for any one symbol bar times strictly increase.
    """

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        """Up to `count` closed bars of `symbol` with time < `end`, oldest first.

        Used to warm the window cache before streaming; a provider without
        history returns an empty list.
        """
        ...

    def stream(self) -> AsyncIterator[Bar]: ...

    async def close(self) -> None: ...
