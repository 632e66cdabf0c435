"""Exponential backoff with jitter between reconnection attempts, shared by the network feeds.

The n-th consecutive failure waits `min(maxBackoff, initialBackoff * backoffFactor**(n-1))`
seconds, of which the upper half is random ("equal jitter"): many runners cut off
by the same venue outage then come back spread out instead of all at once, while
each still waits at least half the nominal delay. After `maxRetries` consecutive
failures the feed gives up; a connection that delivers data resets the count, so
a venue's routine disconnects (Binance closes every connection after 24 hours)
never add up to a give-up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Backoff", "BackoffPolicy", "CredentialsRefused", "TransientError"]


class _BackoffConfig(Protocol):
    """The backoff fields of a provider config (spec.marketData.config)."""

    @property
    def max_retries(self) -> int: ...
    @property
    def initial_backoff(self) -> float: ...
    @property
    def max_backoff(self) -> float: ...
    @property
    def backoff_factor(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    max_retries: int = 10  # consecutive failed attempts allowed; 0 gives up on the first failure
    initial: float = 1.0  # seconds before the first retry
    maximum: float = 60.0  # longest wait, seconds
    factor: float = 2.0  # each wait is the previous one times this

    @classmethod
    def from_config(cls, config: _BackoffConfig) -> BackoffPolicy:
        return cls(
            max_retries=config.max_retries,
            initial=config.initial_backoff,
            maximum=config.max_backoff,
            factor=config.backoff_factor,
        )

    def nominal(self, failures: int) -> float:
        """The delay before retrying after `failures` consecutive failures (>= 1), no jitter."""
        # Cap the exponent: factor**failures overflows a float long before it matters.
        exponent = min(failures - 1, 1000)
        try:
            delay = self.initial * self.factor**exponent
        except OverflowError:
            delay = self.maximum
        return min(self.maximum, delay)


@dataclass(slots=True)
class Backoff:
    """Counts consecutive failures and says how long to wait before the next attempt."""

    policy: BackoffPolicy
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def failed(self) -> float | None:
        """Record a failure; the seconds to wait before retrying, or None to give up."""
        self.failures += 1
        if self.failures > self.policy.max_retries:
            return None
        nominal = self.policy.nominal(self.failures)
        return nominal / 2 + self.rng.uniform(0, nominal / 2)

    def succeeded(self) -> None:
        """The venue answered with data: the next failure starts from the initial delay."""
        self.failures = 0


class TransientError(Exception):
    """A failure worth retrying after a pause: network trouble, a venue busy or restarting.

    Anything else a feed raises is permanent (a MarketDataError) and ends the stream.
    The message never contains a secret. ``retry_after`` is how long the venue asked us
    to stay away (its Retry-After header), in seconds: the pause is at least that long,
    since a venue that rate-limits bans clients that come back early (Binance: 429, then
    an IP ban with 418).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialsRefused(TransientError):
    """The venue refused credentials it had accepted earlier in this run.

    A key that worked a minute ago was not mistyped: the venue is more likely
    having a bad moment (Polygon answers auth_failed during its own incidents).
    It is retried like any transient failure and counted (FeedHealth.auth_refusals);
    a refusal that persists for `maxRetries` attempts in a row ends the session.
    A key refused on its first use is a MarketDataError instead: no retry helps.
    """
