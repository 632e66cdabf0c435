"""How a network market data feed is doing, as plain numbers for events, /readyz and metrics.

Every network provider exposes one `FeedHealth` as `provider.health` and keeps it
current as it runs; readers only look. Lag is left to the reader (`lag_ms(now)`)
because it is measured against the wall clock, which the provider never reads on
its decision path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FeedHealth"]


@dataclass(slots=True)
class FeedHealth:
    """Connection status and counters of one provider's stream."""

    provider: str
    connected: bool = False  # a websocket is open, subscribed and being read
    last_bar_close_ms: int | None = None  # close time of the newest bar delivered (ms, UTC)
    reconnects: int = 0  # connections opened after the first one
    malformed_frames: int = 0  # frames that could not be read as the venue's messages
    duplicates_dropped: int = 0  # bars or events for an interval already handled (repeats, late)
    backfilled_bars: int = 0  # bars delivered from the venue's REST API after a gap
    auth_refusals: int = 0  # refusals of credentials the venue had accepted before (retried)
    last_error: str = ""  # why the last connection ended or failed; never holds a secret

    def saw_bar(self, close_ms: int) -> None:
        # The newest bar, not the latest delivered: a backfilled bar of one symbol may
        # follow a live bar of another that closed later.
        if self.last_bar_close_ms is None or close_ms > self.last_bar_close_ms:
            self.last_bar_close_ms = close_ms

    def lag_ms(self, now_ms: int) -> int | None:
        """How far the stream is behind `now_ms`: now minus the newest bar's close time."""
        if self.last_bar_close_ms is None:
            return None
        return now_ms - self.last_bar_close_ms

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        """The fields as a dict, with `lag_ms` when `now_ms` is given (for /status, events)."""
        values = asdict(self)
        if now_ms is not None:
            values["lag_ms"] = self.lag_ms(now_ms)
        return values
